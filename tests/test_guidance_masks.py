"""Tests of guidance: mask loading, color snapping, label matching, guide channels, the check report."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from guidance import (
    MaskError,
    area_weights,
    check_masks,
    guide_channels,
    hard_labels_at,
    image_shape,
    load_mask_data,
    load_mask_files,
    load_masks,
    rotate_guides,
)

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "guided" / "louvre_to_house"
SAMPLE_COLORS = [(0, 0, 0), (0, 128, 0), (128, 0, 0), (128, 128, 0)]  # palette indices 0, 2, 1, 3

RED, GREEN, BLUE, YELLOW = (200, 0, 0), (0, 160, 0), (0, 0, 255), (230, 230, 0)


def save(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path, **options)
    return path


def paint(shape, *regions) -> np.ndarray:
    """uint8 (H, W, 3) mask: regions are (color, (y0, y1, x0, x1)) painted in order over RED."""
    rgb = np.empty((*shape, 3), np.uint8)
    rgb[:] = RED
    for color, (y0, y1, x0, x1) in regions:
        rgb[y0:y1, x0:x1] = color
    return rgb


def write_pair(folder: Path, content: np.ndarray, style: np.ndarray) -> Path:
    save(folder / "content.png", content)
    save(folder / "style.png", style)
    return folder


def random_labels(rng, shape, n_labels, unguided=0.0) -> np.ndarray:
    """int32 (H, W) blocky random labels (4x4 blobs, so cells mix a few labels), some -1."""
    coarse = rng.integers(0, n_labels, (shape[0] // 4 + 1, shape[1] // 4 + 1))
    labels = np.kron(coarse, np.ones((4, 4), int))[: shape[0], : shape[1]]
    labels = np.where(rng.random(shape) < 0.3, rng.integers(0, n_labels, shape), labels)
    return np.where(rng.random(shape) < unguided, -1, labels).astype(np.int32)


def upsampled_block_shares(labels, n_labels, out_hw) -> np.ndarray:
    """Brute-force area average: repeat each pixel out_h x out_w times, then average whole blocks.

    Returns float64 (n_labels + 1, h, w); row 0 is the unguided share.
    """
    (height, width), (h, w) = labels.shape, out_hw
    fine = np.repeat(np.repeat(labels, h, axis=0), w, axis=1)  # (H*h, W*w): cells are H x W blocks
    blocks = fine.reshape(h, height, w, width).transpose(0, 2, 1, 3)
    return np.stack([(blocks == label).mean(axis=(2, 3)) for label in range(-1, n_labels)])


# ----------------------------------------------------------------------------- the sample pair


def test_sample_pair_loads_with_four_matched_labels():
    pair = load_masks(SAMPLE, content_shape=(567, 633), style_shape=(540, 800))
    assert pair.content_source.name == "content_mask.png"  # not the content.png image beside it
    assert pair.n_labels == 4 and pair.warnings == []
    assert [label.color for label in pair.labels] == SAMPLE_COLORS
    assert [label.index for label in pair.labels] == [0, 1, 2, 3]
    # Areas and maps equal the palette indices of the PNGs (index order 0, 2, 1, 3 by color).
    for labels, name, area in ((pair.content, "content_mask.png", "content_area"),
                               (pair.style, "style_mask.png", "style_area")):
        expected = np.array([0, 2, 1, 3])[np.asarray(Image.open(SAMPLE / name))]
        np.testing.assert_array_equal(labels, expected)
        assert labels.dtype == np.int32
        np.testing.assert_allclose([getattr(label, area) for label in pair.labels],
                                   np.bincount(expected.ravel()) / expected.size)


def test_check_report_lists_labels_and_is_usable():
    report = check_masks(SAMPLE, SAMPLE / "content.png", SAMPLE / "style.png")
    assert report.usable and report.problems == []
    for color in ("#000000", "#008000", "#800000", "#808000"):
        assert color in report.text
    assert "OK: 4 labels" in report.text


# ----------------------------------------------------------------------------- errors


def test_wrong_aspect_names_file_and_size(tmp_path):
    with pytest.raises(MaskError, match=r"content_mask\.png is 633x567 .* export it at 700x567"):
        load_masks(SAMPLE, content_shape=(567, 700))
    save(tmp_path / "style.png", np.zeros((100, 100, 3)))
    report = check_masks(SAMPLE, style_path=tmp_path / "style.png")
    assert not report.usable
    (problem,) = report.problems
    assert "style_mask.png is 800x540" in problem and "style image is 100x100" in problem
    assert "cannot be used" in report.text


@pytest.mark.parametrize("shape", [567, (0, 0), (567.0, 633.0), (567, 633, 3), (True, 633), "567x633"])
def test_an_image_shape_that_is_no_h_w_pair_is_one_mask_error(shape):
    """load_masks(folder, 540, 633) failed with "'int' object is not subscriptable", (0, 0) with a ZeroDivisionError,
    and (567.0, 633.0) named the image '633.0x567.0' px."""
    for load in (lambda: load_masks(SAMPLE, content_shape=shape), lambda: load_masks(SAMPLE, style_shape=shape),
                 lambda: load_mask_files(SAMPLE / "content_mask.png", SAMPLE / "style_mask.png", shape)):
        with pytest.raises(MaskError, match=r"^(content|style)_shape must be \(H, W\) of the image in pixels, "
                                            r"e\.g\. image\.shape\[:2\], or None; got "):
            load()
    assert load_masks(SAMPLE, (np.int64(567), np.int64(633))).content.shape == (567, 633)  # the control


def test_same_aspect_is_resized_nearest_neighbour(tmp_path):
    content = paint((32, 48), (GREEN, (0, 16, 0, 20)), (BLUE, (20, 32, 30, 48)))
    small = load_masks(write_pair(tmp_path, content, content))
    large = load_masks(tmp_path, content_shape=(64, 96), style_shape=(96, 144))
    np.testing.assert_array_equal(large.content, np.kron(small.content, np.ones((2, 2), int)))
    np.testing.assert_array_equal(large.style, np.kron(small.style, np.ones((3, 3), int)))
    # Downsampling takes pixel centres: odd rows and columns for a factor 2 (boundaries at odd indices).
    write_pair(tmp_path, paint((64, 96), (GREEN, (0, 31, 0, 41)), (BLUE, (41, 64, 61, 96))), content)
    shrunk, full = load_masks(tmp_path, content_shape=(32, 48)), load_masks(tmp_path)
    np.testing.assert_array_equal(shrunk.content, full.content[1::2, 1::2])


def test_the_check_report_gives_a_resized_mask_its_own_size_and_the_one_it_takes(tmp_path):
    # It gave only the image's size, as if it had read another file than the 300x200 one in the folder.
    content = paint((20, 30), (GREEN, (0, 10, 0, 30)))
    write_pair(tmp_path, np.kron(content, np.ones((10, 10, 1), np.uint8)), content)
    image = save(tmp_path / "image.png", np.zeros((100, 150, 3), np.uint8))
    report = check_masks(tmp_path, image, tmp_path / "style.png")
    assert f"content: {tmp_path / 'content.png'} (color label map, 300x200, resized to 150x100)" in report.text
    assert f"style: {tmp_path / 'style.png'} (color label map, 30x20)" in report.text


def test_unknown_color_patch_is_reported_by_color(tmp_path):
    content = paint((128, 128), (GREEN, (0, 64, 0, 128)), (BLUE, (100, 103, 100, 103)))  # 9 px of blue
    pair = load_masks(write_pair(tmp_path, content, paint((128, 128), (GREEN, (64, 128, 0, 128)))))
    assert [label.name for label in pair.labels] == ["#00a000", "#c80000"]  # blue: too small for a label
    (warning,) = pair.warnings
    assert "#0000ff" in warning and "first at x=101, y=101" in warning and "snapped" in warning


@pytest.mark.parametrize("kind", ["noise", "airbrush"])
def test_unknown_colors_over_a_large_area_are_an_error(tmp_path, kind):
    content = paint((128, 128), (GREEN, (0, 64, 0, 128)))
    rng = np.random.default_rng(0)
    if kind == "noise":
        content[80:120, 10:50] = rng.integers(0, 256, (40, 40, 3))
    else:  # a smooth ramp from cyan to magenta: flat, and far from the labels and their blends
        ramp = np.linspace(0, 1, 40)[None, :, None]
        content[80:120, 10:50] = (1 - ramp) * (0, 255, 255) + ramp * (255, 0, 255)
    write_pair(tmp_path, content, content)
    with pytest.raises(MaskError, match=r"content\.png: .* neither a label color nor an edge blend .* "
                                        r"does not look like a label map"):
        load_masks(tmp_path)


def test_a_photo_is_not_a_label_map(tmp_path):
    photo = Image.open(SAMPLE / "content.png").convert("RGB").resize((96, 86))
    photo.save(tmp_path / "content.png")
    save(tmp_path / "style.png", paint((64, 64)))
    with pytest.raises(MaskError, match="does not look like a label map"):
        load_masks(tmp_path)


@pytest.mark.parametrize("photo_side", ["style", "content"])
def test_a_photo_beside_a_good_label_map_is_the_one_named(tmp_path, photo_side):
    """The palette is found in both masks together: a photo as style.png took the label map's black into
    its own (dropped) clusters, and the message blamed content.png, the good one."""
    good_side = "content" if photo_side == "style" else "style"
    label_map = Image.open(SAMPLE / f"{good_side}_mask.png").convert("RGB")
    label_map.save(tmp_path / f"{good_side}.png")
    Image.open(SAMPLE / "style.png").convert("RGB").resize((400, 270)).save(tmp_path / f"{photo_side}.png")
    with pytest.raises(MaskError, match="does not look like a label map") as refused:
        load_masks(tmp_path)
    assert str(refused.value).startswith(f"mask {tmp_path / photo_side}.png: "), refused.value
    label_map.save(tmp_path / f"{photo_side}.png")  # the control: the label map with itself loads
    assert load_masks(tmp_path).n_labels == 4


@pytest.mark.parametrize("layout, message", [
    ({}, r"no content mask in .*: add content\.png"),
    ({"content.png"}, r"no style mask in .*: add style\.png"),
    ({"content.png", "content.jpg", "style.png"}, r"several content masks \(content\.jpg, content\.png\)"),
    ({"content.png", "style/a.png"}, r"different forms"),
    ({"content/a.png", "style/notes.txt"}, r"region folder .*style holds no mask image"),
])
def test_missing_or_ambiguous_files(tmp_path, layout, message):
    for name in layout:
        if name.endswith(".txt"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("not a mask")
        else:
            save(tmp_path / name, np.full((32, 32, 3), 255))
    with pytest.raises(MaskError, match=message):
        load_masks(tmp_path)


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(MaskError, match="mask folder .*nowhere does not exist"):
        load_masks(tmp_path / "nowhere")
    with pytest.raises(MaskError, match=r"mask .*gone\.png does not exist"):
        load_mask_files(tmp_path / "gone.png", SAMPLE / "style_mask.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match=r"cannot read mask .*broken\.png"):
        load_mask_files(tmp_path / "broken.png", SAMPLE / "style_mask.png")
    report = check_masks(SAMPLE, content_path=tmp_path / "gone.jpg")
    assert not report.usable and "gone.jpg: no such file" in report.problems[0]


@pytest.mark.parametrize("empty", ["content.png", "style/sky.png"])
def test_an_empty_mask_file_says_it_is_empty(tmp_path, empty):
    """Was "cannot read mask ... (cannot identify image file ...): save it as PNG", as for a file in another format."""
    if empty == "content.png":
        write_pair(tmp_path, paint((32, 32)), paint((32, 32)))
    else:
        for side in ("content", "style"):
            save(tmp_path / side / "sky.png", np.full((32, 32), 255))
    (tmp_path / empty).write_bytes(b"")
    expected = f"mask {tmp_path / empty} is empty; give a PNG, JPEG, TIFF or WebP image"  # read_image's words
    with pytest.raises(MaskError) as from_folder:
        load_masks(tmp_path)
    with pytest.raises(MaskError) as from_bytes:  # an experiment's masks
        load_mask_data(folder_bytes(tmp_path), tmp_path)
    assert str(from_folder.value) == str(from_bytes.value) == expected
    assert check_masks(tmp_path).problems == [expected]


def test_empty_region_mask(tmp_path):
    save(tmp_path / "content" / "sky.png", np.full((32, 32), 255))
    save(tmp_path / "content" / "tree.png", np.full((32, 32), 100))  # below 0.5 everywhere
    save(tmp_path / "style" / "sky.png", np.full((32, 32), 255))
    with pytest.raises(MaskError, match=r"tree\.png is empty .* paint the region white or delete the file"):
        load_masks(tmp_path)


def test_no_shared_label(tmp_path):
    write_pair(tmp_path, np.full((32, 32, 3), GREEN, np.uint8), paint((32, 32), (BLUE, (0, 32, 0, 16))))
    message = r"no label of mask .*content\.png \(#00a000\) .*\(#0000ff, #c80000\)"
    with pytest.raises(MaskError, match=message):
        load_masks(tmp_path)


# ----------------------------------------------------------------------------- snapping


@pytest.mark.parametrize("quality", [50, 75, 90])
def test_jpeg_masks_snap_like_their_png(tmp_path, quality):
    png = load_masks(SAMPLE)
    for side in ("content", "style"):
        Image.open(SAMPLE / f"{side}_mask.png").convert("RGB").save(tmp_path / f"{side}.jpg", quality=quality)
    jpeg = load_masks(tmp_path)
    assert jpeg.n_labels == 4
    found = np.array([label.color for label in jpeg.labels])
    distance = np.abs(found[:, None] - np.array(SAMPLE_COLORS)[None]).max(axis=2)
    assert distance.min(axis=1).max() <= 3  # JPEG shifts the colors a little...
    as_png = distance.argmin(axis=1)  # ...which may reorder them: compare labels by color
    for a, b in ((png.content, as_png[jpeg.content]), (png.style, as_png[jpeg.style])):
        assert (a == b).mean() >= 0.99  # all pixels, no band excluded
        boundary = ndimage.maximum_filter(a, 3) != ndimage.minimum_filter(a, 3)  # 1 px each side
        np.testing.assert_array_equal(a[~boundary], b[~boundary])


def test_anti_aliased_edges_snap_to_a_side_silently(tmp_path):
    yy, xx = np.mgrid[0:512, 0:512] / 4.0  # 4x supersampled disk, averaged down to 128 px
    inside = ((yy - 60) ** 2 + (xx - 70) ** 2 < 40**2).astype(float)
    coverage = inside.reshape(128, 4, 128, 4).mean(axis=(1, 3))
    rgb = coverage[..., None] * np.array(BLUE) + (1 - coverage[..., None]) * np.array(YELLOW)
    write_pair(tmp_path, np.rint(rgb), np.rint(rgb))
    pair = load_masks(tmp_path)
    assert pair.warnings == [] and [label.name for label in pair.labels] == ["#0000ff", "#e6e600"]
    crisp = coverage.round() == coverage  # pixels the edge does not cross
    np.testing.assert_array_equal(pair.content[crisp], np.where(coverage[crisp] == 1, 0, 1))


def test_palette_and_rgb_png_give_identical_labels(tmp_path):
    for side in ("content", "style"):
        Image.open(SAMPLE / f"{side}_mask.png").convert("RGB").save(tmp_path / f"{side}.png")
    palette, rgb = load_masks(SAMPLE), load_masks(tmp_path)
    assert Image.open(SAMPLE / "content_mask.png").mode == "P"
    assert Image.open(tmp_path / "content.png").mode == "RGB"
    np.testing.assert_array_equal(palette.content, rgb.content)
    np.testing.assert_array_equal(palette.style, rgb.style)
    assert palette.labels == rgb.labels


@pytest.mark.parametrize("form", ["L", "I;16", "P"])
def test_index_maps_keep_every_value_as_a_label(tmp_path, form):
    # Label i stored as the grey value i (as segmentation tools write them): 0, 1, 2 are three
    # labels, not one near-black color (they were merged into one, and the guidance was lost).
    content = np.zeros((30, 40), np.uint8)
    content[10:20], content[20:] = 1, 2
    style = np.zeros((24, 36), np.uint8)
    style[:, 12:24], style[:, 24:] = 2, 1
    for side, values in (("content", content), ("style", style)):
        if form == "I;16":
            image = Image.fromarray(values.astype(np.uint16))
        elif form == "P":
            image = Image.fromarray(values).convert("P")  # a grey palette, index = value
        else:
            image = Image.fromarray(values)
        assert image.mode == form
        image.save(tmp_path / f"{side}.png")
    pair = load_masks(tmp_path, content_shape=(30, 40), style_shape=(24, 36))
    assert [label.name for label in pair.labels] == ["0", "1", "2"] and pair.n_labels == 3
    assert pair.warnings == []
    np.testing.assert_array_equal(pair.content, content)
    np.testing.assert_array_equal(pair.style, style)
    text = check_masks(tmp_path).text  # the report names the form it read
    assert f"content: {tmp_path / 'content.png'} (index map, 40x30)" in text and "color label map" not in text


def test_light_grey_label_maps_are_colors_not_indices(tmp_path):
    # Negative control: greys a person paints (0, 128, 255) stay color labels, named by color.
    content = np.zeros((30, 40), np.uint8)
    content[10:20], content[20:] = 128, 255
    write_pair(tmp_path, content, content[:, ::-1])
    assert [label.name for label in load_masks(tmp_path).labels] == ["#000000", "#808080", "#ffffff"]
    assert "(color label map, 40x30)" in check_masks(tmp_path).text


def test_a_dark_grey_jpeg_mask_is_a_painted_one_not_an_index_map(tmp_path):
    # Black and a dark grey (40) painted and saved as JPEG: its noise (values 0 .. ~50) is no labels.
    content = np.zeros((48, 64), np.uint8)
    content[24:] = 40
    for side in ("content", "style"):
        save(tmp_path / f"{side}.jpg", content, quality=70)
    names = [label.name for label in load_masks(tmp_path).labels]
    assert len(names) == 2 and all(name.startswith("#") for name in names), names  # two colors, as painted


def test_grey_region_folders(tmp_path):
    yy, xx = np.mgrid[0:64, 0:96]
    sky = np.clip((40.5 - yy) / 4, 0, 1)  # soft edge over rows 37..40, no value near 0.5
    ground = np.clip((yy - 43.5) / 4, 0, 1)  # rows 44..47; rows 39..45 are in neither region
    pond = (yy - 42) ** 2 + (xx - 20) ** 2 < 9  # in the gap
    save(tmp_path / "content" / "sky.png", sky * 255)
    save(tmp_path / "content" / "ground.jpg", ground * 255, quality=90)
    save(tmp_path / "content" / "pond.png", pond * 255)
    save(tmp_path / "style" / "sky.png", sky[::2, ::2] * 255)  # half size, same aspect
    save(tmp_path / "style" / "ground.png", ground[::2, ::2] * 255)
    pair = load_masks(tmp_path)
    assert [(label.name, label.index, label.color) for label in pair.labels] == [
        ("ground", 0, None), ("sky", 1, None), ("(rest)", 2, None), ("pond", -1, None)]
    expected = np.select([pond, sky >= 0.5, ground >= 0.5], [-1, 1, 0], 2)  # pond: no style counterpart
    np.testing.assert_array_equal(pair.content, expected)
    style_expected = np.where(expected == -1, 2, expected)[::2, ::2]  # half size; rest where the pond is
    np.testing.assert_array_equal(pair.style, style_expected)
    assert any("region 'pond'" in w and "matched against the whole style" in w for w in pair.warnings)


def test_grey_regions_covering_everything_have_no_rest_region(tmp_path):
    left = np.zeros((32, 32))
    left[:, :12] = 255
    for side in ("content", "style"):
        save(tmp_path / side / "left.png", left)
        save(tmp_path / side / "right.png", 255 - left)
    pair = load_masks(tmp_path)
    assert [label.name for label in pair.labels] == ["left", "right"] and pair.warnings == []
    np.testing.assert_array_equal(pair.style, (left == 0).astype(int))


def test_content_label_without_style_counterpart(tmp_path):
    content = paint((64, 64), (GREEN, (0, 32, 0, 64)), (BLUE, (40, 64, 0, 16)))
    style = paint((64, 64), (GREEN, (0, 16, 0, 64)), (YELLOW, (48, 64, 32, 64)))
    pair = load_masks(write_pair(tmp_path, content, style))
    blue = next(label for label in pair.labels if label.color == BLUE)
    assert blue.unguided and blue.index == -1 and blue.style_area == 0
    assert blue.content_area == pytest.approx(24 * 16 / 64**2)
    assert np.array_equal(pair.content == -1, (content == BLUE).all(axis=-1))
    yellow = next(label for label in pair.labels if label.color == YELLOW)
    assert not yellow.unguided and yellow.content_area == 0  # style-only labels keep a channel
    assert pair.n_labels == 3 and set(np.unique(pair.style)) == {0, 1, 2}
    unmatched = [w for w in pair.warnings if "content label #0000ff" in w]
    assert len(unmatched) == 1 and "matched against the whole style" in unmatched[0]
    assert sum("style label #e6e600" in w for w in pair.warnings) == 1
    report = check_masks(tmp_path)
    assert report.usable
    (row,) = [line for line in report.text.splitlines() if line.lstrip().startswith("-  #0000ff")]
    assert "no style counterpart: matched against the whole style" in row


def test_tiny_region_is_reported(tmp_path):
    content = paint((128, 128), (GREEN, (0, 64, 0, 128)), (YELLOW, (100, 104, 100, 104)))  # 16 px < 0.1 %
    style = paint((128, 128), (GREEN, (64, 128, 0, 128)), (YELLOW, (0, 32, 0, 32)))
    pair = load_masks(write_pair(tmp_path, content, style))
    yellow = next(label for label in pair.labels if label.color == YELLOW)
    assert yellow.index >= 0 and yellow.content_area == 16 / 128**2
    assert pair.warnings == ["label #e6e600 covers only 0.098% of the content mask: stray pixels?"]
    (row,) = [line for line in check_masks(tmp_path).text.splitlines() if line.split()[1:2] == ["#e6e600"]]
    assert row.endswith("under 0.1% of the content")


def test_image_shape_applies_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: displayed height is the stored width
    Image.new("RGB", (40, 30)).save(tmp_path / "rotated.jpg", exif=exif)
    Image.new("RGB", (40, 30)).save(tmp_path / "plain.jpg")
    assert image_shape(tmp_path / "rotated.jpg") == (40, 30)
    assert image_shape(tmp_path / "plain.jpg") == (30, 40)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_masks_are_read_upright_as_pillow_turns_them(tmp_path, orientation):
    from PIL import ImageOps

    from guidance.masks import _read_grey, _read_rgb

    exif = Image.Exif()
    exif[0x0112] = orientation
    rgb = paint((6, 10), (GREEN, (0, 2, 0, 3)), (BLUE, (4, 6, 7, 10)))  # asymmetric under every flip
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    for path, array, read in ((tmp_path / "map.png", rgb, _read_rgb), (tmp_path / "region.png", grey, _read_grey)):
        save(path, array, exif=exif)
        with Image.open(path) as image:
            upright = np.asarray(ImageOps.exif_transpose(image))
        expected = upright if read is _read_rgb else upright.astype(np.float32) / 255
        assert np.array_equal(read(path), expected)


# ----------------------------------------------------------------------------- masks from bytes


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """A mask folder as an experiment's task carries it: ``{relative path: bytes}``."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_layout(folder: Path, layout: str) -> Path:
    folder.mkdir()
    if layout == "sample":
        for p in SAMPLE.iterdir():
            (folder / p.name).write_bytes(p.read_bytes())
    elif layout == "color maps":
        write_pair(folder, paint((32, 48), (GREEN, (0, 16, 0, 20))), paint((32, 48), (BLUE, (20, 32, 30, 48))))
    elif layout == "regions":  # with a JPEG, a label on one side only and the rest region
        yy = np.mgrid[0:64, 0:96][0]
        save(folder / "content" / "sky.png", (yy < 30) * 255)
        save(folder / "content" / "ground.jpg", (yy > 40) * 255, quality=90)
        save(folder / "content" / "pond.png", (yy == 35) * 255)
        save(folder / "style" / "sky.png", (yy[::2, ::2] < 30) * 255)
        save(folder / "style" / "ground.png", (yy[::2, ::2] > 40) * 255)
    elif layout == "rotated":
        exif = Image.Exif()
        exif[0x0112] = 6
        save(folder / "content.png", paint((6, 10), (GREEN, (0, 2, 0, 3))), exif=exif)
        save(folder / "style.png", paint((10, 6), (GREEN, (0, 2, 0, 3))))
    return folder


@pytest.mark.parametrize("layout, shapes", [
    ("sample", ((567, 633), (540, 800))), ("sample", (None, None)), ("color maps", ((64, 96), None)),
    ("regions", (None, (64, 96))), ("rotated", (None, None)),
])
def test_mask_bytes_load_as_their_folder(tmp_path, layout, shapes):
    folder = make_layout(tmp_path / "masks", layout)
    expected = load_masks(folder, *shapes)
    pair = load_mask_data(folder_bytes(folder), folder, *shapes)
    np.testing.assert_array_equal(pair.content, expected.content)
    np.testing.assert_array_equal(pair.style, expected.style)
    assert pair.labels == expected.labels and pair.warnings == expected.warnings
    assert (pair.content_source, pair.style_source) == (expected.content_source, expected.style_source)
    assert expected.n_labels >= 1 and pair.content.dtype == np.int32


def _broken(folder: Path) -> None:
    write_pair(folder, paint((32, 32)), paint((32, 32)))
    (folder / "style.png").write_bytes(b"not a png")


@pytest.mark.parametrize("make", [
    lambda folder: None,
    lambda folder: save(folder / "content.png", np.full((32, 32, 3), 255)),
    lambda folder: [save(folder / name, np.full((32, 32, 3), 255)) for name in ("content.png", "content.jpg")],
    lambda folder: [save(folder / name, np.full((32, 32, 3), 255)) for name in ("content.png", "style/a.png")],
    lambda folder: (save(folder / "content" / "a.png", np.full((8, 8), 255)),
                    (folder / "style").mkdir(), (folder / "style" / "notes.txt").write_text("not a mask")),
    lambda folder: write_pair(folder, paint((32, 32)), paint((32, 64))),  # wrong aspect for the shapes below
    lambda folder: (save(folder / "content" / "sky.png", np.full((8, 8), 255)),
                    save(folder / "style" / "sky.png", np.full((8, 8), 10))),  # empty region
    _broken,
], ids=["empty", "no style", "two contents", "two forms", "no region image", "aspect", "empty region", "broken"])
def test_mask_bytes_fail_as_their_folder_naming_the_given_folder(tmp_path, make):
    folder = tmp_path / "masks"
    folder.mkdir()
    make(folder)
    with pytest.raises(MaskError) as from_folder:
        load_masks(folder, (32, 32), (32, 32))
    with pytest.raises(MaskError) as from_bytes:
        load_mask_data(folder_bytes(folder), folder, (32, 32), (32, 32))
    assert str(from_bytes.value) == str(from_folder.value)
    with pytest.raises(MaskError) as shown:
        load_mask_data(folder_bytes(folder), "my/masks", (32, 32), (32, 32))
    assert "my/masks" in str(shown.value) and str(tmp_path) not in str(shown.value)


# ----------------------------------------------------------------------------- guide channels


def test_full_resolution_guides_are_exact_one_hot():
    labels = random_labels(np.random.default_rng(1), (37, 53), 5, unguided=0.1)
    channels = guide_channels(labels, 5, labels.shape)
    assert channels.dtype == np.float32 and channels.shape == (5, 37, 53)
    np.testing.assert_array_equal(channels, (labels[None] == np.arange(5)[:, None, None]).astype(np.float32))


@pytest.mark.parametrize("shape, out_hw", [((64, 96), (16, 24)), ((61, 83), (15, 20)), ((30, 40), (7, 13)),
                                           ((12, 10), (30, 25))])
def test_coarse_guides_equal_brute_force_area_average(shape, out_hw):
    labels = random_labels(np.random.default_rng(2), shape, 4, unguided=0.05)
    channels = guide_channels(labels, 4, out_hw)
    shares = upsampled_block_shares(labels, 4, out_hw)
    np.testing.assert_allclose(channels, shares[1:], atol=1e-6)
    guided = shares[0] == 0
    assert guided.any() and (~guided).any()
    np.testing.assert_allclose(channels.sum(axis=0)[guided], 1.0, atol=1e-6)
    np.testing.assert_allclose(channels.sum(axis=0), 1.0 - shares[0], atol=1e-6)


def test_integer_factor_guides_are_block_means():
    labels = random_labels(np.random.default_rng(3), (32, 48), 3)
    blocks = (labels[None] == np.arange(3)[:, None, None]).reshape(3, 8, 4, 12, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(guide_channels(labels, 3, (8, 12)), blocks, atol=1e-7)


@pytest.mark.parametrize(("labels", "n_labels", "out_hw", "message"), [
    (np.zeros((4, 6), np.int32), 1, (0, 10), r"out_hw must be \(h, w\) .* got \(0, 10\)"),  # ZeroDivisionError
    (np.zeros((4, 6), np.int32), 1, 3, r"out_hw .* got 3"),
    (np.full((4, 6), 2, np.int32), 2, (2, 3), "labels go up to 2, but n_labels is 2"),  # ignored: no channel had it
    (np.full((4, 6), -2, np.int32), 2, (2, 3), "-1 \\(unguided\\) .* got -2"),
    (np.zeros((4, 6)), 1, (2, 3), "must hold integers .* got float64"),
    (np.zeros((0, 6), np.int32), 1, (2, 3), r"\(H, W\) label map, got shape \(0, 6\)"),
    (np.zeros((4, 6), np.int32), 1.0, (2, 3), "n_labels must be an integer"),
])
def test_guide_channels_refuse_what_is_no_label_map_grid_or_count(labels, n_labels, out_hw, message):
    with pytest.raises(MaskError, match=message):
        guide_channels(labels, n_labels, out_hw)


def test_hard_labels_refuse_an_empty_grid_and_labels_below_minus_one():
    labels = np.zeros((4, 6), np.int32)
    with pytest.raises(MaskError, match="out_hw"):
        hard_labels_at(labels, (2, 0))
    with pytest.raises(MaskError, match="got -3"):
        hard_labels_at(labels - 3, (2, 3))


def test_area_weights_rows_sum_to_one():
    for n_in, n_out in ((10, 10), (10, 3), (7, 4), (3, 7), (1000, 250)):
        weights = area_weights(n_in, n_out).toarray()
        assert weights.min() >= 0
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(weights.sum(axis=0), n_out / n_in, atol=1e-12)  # every pixel counted once
    np.testing.assert_array_equal(area_weights(9, 9).toarray(), np.eye(9))


@pytest.mark.parametrize("shape, out_hw", [((32, 48), (8, 12)), ((45, 38), (9, 7)), ((20, 20), (20, 20))])
def test_hard_labels_are_the_brute_force_majority(shape, out_hw):
    labels = random_labels(np.random.default_rng(4), shape, 3, unguided=0.2)
    shares = upsampled_block_shares(labels, 3, out_hw)  # exact fractions: ties stay ties
    np.testing.assert_array_equal(hard_labels_at(labels, out_hw), shares.argmax(axis=0) - 1)


def test_hard_label_ties_go_to_unguided_then_lower_label():
    labels = np.array([[-1, 2, 1, 2, 0, 1]])
    np.testing.assert_array_equal(hard_labels_at(labels, (1, 3)), [[-1, 1, 0]])


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotated_guides_match_guides_of_the_rotated_labels(k):
    labels = random_labels(np.random.default_rng(5), (45, 62), 4, unguided=0.1)
    out_hw = (11, 17)
    rotated_hw = out_hw if k % 2 == 0 else out_hw[::-1]
    expected = guide_channels(np.rot90(labels, k), 4, rotated_hw)
    rotated = rotate_guides(guide_channels(labels, 4, out_hw), k)
    assert rotated.flags.c_contiguous
    np.testing.assert_allclose(rotated, expected, atol=1e-6)
    np.testing.assert_array_equal(rotate_guides(labels, k), np.rot90(labels, k))
