"""The poster stage: field mapping into the atlas, output format, resume, guided regions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from nnst_hr import poster
from nnst_hr import run as run_module
from nnst_hr.config import NNSTConfig, PosterConfig
from nnst_hr.files import read_image
from nnst_hr.poster import Layout, build_atlas, field_to_atlas, render, search_factor, upsample_field
from nnst_hr.run import RunOptions, run_files
from nnst_hr.tensors import resize_image


def smooth_style(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([yy / h, xx / w, 0.5 + 0.5 * np.sin(xx / 7.0) * np.cos(yy / 5.0)], -1).astype(np.float32)


@pytest.mark.parametrize("scale", [1, 2])
def test_atlas_coordinates_point_at_the_same_style_content(scale):
    style = smooth_style(40, 56)
    rng = np.random.default_rng(0)
    nnf = np.zeros((12, 15, 3), np.int32)
    nnf[..., 0] = rng.integers(0, 4, nnf.shape[:2])
    for k in range(4):
        sel = nnf[..., 0] == k
        h, w = np.rot90(style, k).shape[:2]
        nnf[sel, 1] = rng.integers(0, h, sel.sum())
        nnf[sel, 2] = rng.integers(0, w, sel.sum())
    exemplar = resize_image(style, (40 * scale, 56 * scale))
    atlas = build_atlas(exemplar, exemplar[..., :1], [0, 1, 2, 3])
    at = field_to_atlas(nnf, atlas, scale)
    assert atlas.mask[at[..., 0], at[..., 1]].all()  # never in a gutter
    for k in range(4):
        sel = nnf[..., 0] == k
        expected = np.rot90(style, k)[nnf[sel, 1], nnf[sel, 2]]
        found = atlas.image[at[sel][:, 0], at[sel][:, 1]]
        # scale 1 is exact; at scale 2 the exemplar is an interpolation of a smooth image
        assert np.abs(found - expected).max() < (1e-6 if scale == 1 else 0.08)


def random_atlas_field(layout, shape, rng):
    """Random atlas coordinates ``shape + (2,)`` inside the copies of ``layout``."""
    copy = rng.integers(0, len(layout.shapes), shape)
    heights = np.array([h for h, _ in layout.shapes])[copy]
    widths = np.array([w for _, w in layout.shapes])[copy]
    i = (rng.random(shape) * heights).astype(np.int32)
    j = (rng.random(shape) * widths).astype(np.int32) + np.array(layout.offsets)[copy]
    return np.stack([i, j], -1).astype(np.int32)


def test_layout_maps_atlas_pixels_back_to_the_unrotated_exemplar():
    exemplar = np.random.default_rng(1).random((13, 21, 3)).astype(np.float32)
    atlas = build_atlas(exemplar, exemplar[..., :1], [0, 1, 2, 3])
    field = random_atlas_field(atlas.layout, (30, 40), np.random.default_rng(2))
    rows, cols = atlas.layout.to_exemplar(*atlas.layout.local(field))
    assert np.array_equal(exemplar[rows, cols], atlas.image[field[..., 0], field[..., 1]])


def test_vote_render_equals_a_brute_force_patch_average(monkeypatch):
    monkeypatch.setattr(poster, "RENDER_ROWS", 4)  # three bands: patches cross band edges
    rng = np.random.default_rng(3)
    exemplar = rng.random((11, 17, 3)).astype(np.float32)
    atlas = build_atlas(exemplar, exemplar[..., :1], [0, 1, 2, 3])
    layout = atlas.layout
    field = random_atlas_field(layout, (9, 12), rng)
    expected = np.zeros((9, 12, 3), np.float32)
    for y in range(9):
        for x in range(12):
            values = []
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    if 0 <= y + dy < 9 and 0 <= x + dx < 12:
                        copy, i, j = (int(v) for v in layout.local(field[y + dy, x + dx]))
                        h, w = layout.shapes[copy]
                        i, j = min(max(i - dy, 0), h - 1), min(max(j - dx, 0), w - 1)
                        values.append(atlas.image[i, j + layout.offsets[copy]])
            expected[y, x] = np.mean(values, 0)
    assert np.allclose(render(field, exemplar, layout, "vote", 5), expected, atol=1e-6)
    assert np.array_equal(render(field, exemplar, layout, "copy", 5), atlas.image[field[..., 0], field[..., 1]])


def test_upsampled_field_points_at_the_same_content_at_twice_the_scale():
    style = smooth_style(40, 56)
    small, large = resize_image(style, (20, 28)), resize_image(style, (40, 56))
    coarse, fine = Layout.of((20, 28), [0, 1, 2, 3]), Layout.of((40, 56), [0, 1, 2, 3])
    field = random_atlas_field(coarse, (15, 18), np.random.default_rng(4))
    up = upsample_field(field, 2, coarse, fine, (30, 36))
    copy, i, j = fine.local(up)
    heights, widths = np.array([h for h, _ in fine.shapes])[copy], np.array([w for _, w in fine.shapes])[copy]
    assert ((i >= 0) & (i < heights) & (j >= 0) & (j < widths)).all()  # never in a gutter
    ccopy, ci, cj = coarse.local(field)
    assert np.array_equal(copy, np.repeat(np.repeat(ccopy, 2, 0), 2, 1))
    # each pixel keeps its block's patch, shifted by its place in the block
    assert np.array_equal(i[::2, ::2], 2 * ci)
    assert np.array_equal(j[1::2, 1::2], np.minimum(2 * cj + 1, widths[1::2, 1::2] - 1))
    found = large[fine.to_exemplar(copy, i, j)][::2, ::2]
    expected = small[coarse.to_exemplar(ccopy, ci, cj)]
    assert np.abs(found - expected).max() < 0.08


def test_search_factor_is_the_smallest_power_of_two():
    assert [search_factor(n, 4096) for n in (1536, 4096, 4097, 8192, 9000)] == [1, 1, 2, 2, 4]


def write(path, image):
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(path)


def tiny_options(tmp_path, **poster):
    nnst = NNSTConfig(size=64, steps=4, split_steps=2, seed=1, device="cpu")
    return RunOptions(nnst=nnst, poster=PosterConfig(out_size=192, search_vote_iters=1, patchmatch_iters=1, **poster),
                      quiet=True)


@pytest.fixture()
def pair(tmp_path):
    rng = np.random.default_rng(2)
    content = smooth_style(48, 64)[..., ::-1]
    style = np.clip(smooth_style(96, 96) + 0.1 * rng.random((96, 96, 3)), 0, 1)
    write(tmp_path / "c.png", content)
    write(tmp_path / "s.png", style)
    return tmp_path / "c.png", tmp_path / "s.png"


def test_poster_size_bit_depth_and_tiff_tags(tmp_path, pair):
    out = tmp_path / "poster.tif"
    run_files(*pair, out, tiny_options(tmp_path))
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.shape == (144, 192, 3) and page.dtype == np.uint16
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.tags["XResolution"].value == (300, 1)
    folder = tmp_path / "poster.run"
    for name in ("config.json", "nnst.png", "nnst_raw.png", "nnf.npz", "timings.json"):
        assert (folder / name).exists()
    assert json.loads((folder / "config.json").read_text())["poster_key"]["poster"]["out_size"] == 192


def test_a_large_patch_is_synthesized_on_levels_it_fits(tmp_path, pair):
    """The synthesis pyramid kept its coarsest side at 11 px whatever the patch: a plan's patch_size 51
    left no patch inside the exemplar's mask there, a failure met only after NNST had run."""
    out = tmp_path / "poster.png"
    run_files(*pair, out, tiny_options(tmp_path, patch_size=51))
    poster = read_image(out)
    assert poster.shape == (144, 192, 3) and np.isfinite(poster).all()


def test_copy_render_takes_every_pixel_from_the_exemplar(tmp_path, pair):
    out = tmp_path / "copy.png"
    options = tiny_options(tmp_path)
    options.nnst.color = False
    run_files(*pair, out, options)
    with np.load(tmp_path / "copy.run" / "poster_state.npz") as state:
        image, field = state["image"], state["field"]
    # the 96 px style at NNST's 64 px, times the poster scale 192 / 64
    exemplar = resize_image(read_image(pair[1]), (192, 192))
    atlas = build_atlas(exemplar, exemplar[..., :1], [0, 1, 2, 3])
    assert np.array_equal(image, atlas.image[field[..., 0], field[..., 1]])


def test_poster_above_max_search_size_is_searched_smaller_and_rendered_at_full_size(tmp_path, pair):
    out = tmp_path / "big.png"
    options = tiny_options(tmp_path, max_search_size=96)
    options.nnst.color = False
    run_files(*pair, out, options)
    with np.load(tmp_path / "big.run" / "poster_state.npz") as state:
        image, field = state["image"], state["field"]
    assert image.shape == (144, 192, 3) and field.shape == (144, 192, 2)
    # searched at 96 px, rendered from the exemplar at the poster's scale (192 px)
    exemplar = resize_image(read_image(pair[1]), (192, 192))
    atlas = build_atlas(exemplar, exemplar[..., :1], [0, 1, 2, 3])
    assert atlas.mask[field[..., 0], field[..., 1]].all()
    assert np.array_equal(image, atlas.image[field[..., 0], field[..., 1]])
    # 2x2 blocks share one searched patch: the pixel at (1, 1) in a block is one step diagonal
    step = field[1::2, 1::2] - field[::2, ::2]
    assert (step == 1).all(-1).mean() > 0.95


def test_interrupted_run_resumes_without_redoing_nnst(tmp_path, pair, monkeypatch):
    out = tmp_path / "poster.png"
    options = tiny_options(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    import nnst_hr.poster

    monkeypatch.setattr(nnst_hr.poster, "synthesize_poster_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_files(*pair, out, options)
    assert not out.exists() and (tmp_path / "poster.run" / "nnf.npz").exists()
    monkeypatch.undo()

    def no_nnst(*args, **kwargs):
        raise AssertionError("NNST was recomputed")

    monkeypatch.setattr(run_module, "synthesize_nnst", no_nnst)
    run_files(*pair, out, options)
    assert read_image(out).shape == (144, 192, 3)
    # a changed NNST parameter must recompute NNST
    options.nnst.alpha = 0.5
    options.overwrite = True
    with pytest.raises(AssertionError, match="recomputed"):
        run_files(*pair, out, options)


def test_poster_stage_starts_after_nnst_left_nothing_behind(tmp_path, pair, monkeypatch):
    """No tensor of the NNST stage is alive and its freed heap is released when the poster stage starts."""
    import gc

    import torch

    def tensors() -> int:
        return sum(issubclass(type(obj), torch.Tensor) for obj in gc.get_objects())  # type(): no deprecated getters

    gc.collect()
    events, before = [], tensors()
    real_nnst, real_poster = run_module.synthesize_nnst, poster.synthesize_poster_stage

    def nnst(*args, **kwargs):
        result = real_nnst(*args, **kwargs)
        events.append("nnst")
        return result

    def poster_stage(*args, **kwargs):
        events.append(("poster", tensors() - before))  # no gc.collect: freed by reference counts alone
        return real_poster(*args, **kwargs)

    monkeypatch.setattr(run_module, "synthesize_nnst", nnst)
    monkeypatch.setattr(run_module, "release_freed_memory", lambda: events.append("release"))
    monkeypatch.setattr(poster, "synthesize_poster_stage", poster_stage)
    run_files(*pair, tmp_path / "poster.png", tiny_options(tmp_path))
    assert events == ["nnst", "release", ("poster", 0)]


def test_guided_poster_draws_from_matching_style_regions(tmp_path):
    # content: left half label A (red in the mask), right half B (blue)
    content = np.full((48, 64, 3), 0.5, np.float32)
    content[:, :, 0] = np.linspace(0.3, 0.7, 64)[None, :]
    # style: top region is A-textured (green stripes), bottom is B (dark dots)
    yy, xx = np.mgrid[0:96, 0:96]
    style = np.zeros((96, 96, 3), np.float32)
    style[:48, :, 1] = 0.5 + 0.4 * np.sin(xx[:48] / 2.0)
    style[48:, :, 2] = 0.3 + 0.3 * (np.sin(xx[48:]) * np.sin(yy[48:]) > 0)
    write(tmp_path / "c.png", content)
    write(tmp_path / "s.png", style)
    masks = tmp_path / "masks"
    masks.mkdir()
    cm = np.zeros((48, 64, 3), np.uint8)
    cm[:, :32] = (255, 0, 0)
    cm[:, 32:] = (0, 0, 255)
    sm = np.zeros((96, 96, 3), np.uint8)
    sm[:48] = (255, 0, 0)
    sm[48:] = (0, 0, 255)
    Image.fromarray(cm).save(masks / "content.png")
    Image.fromarray(sm).save(masks / "style.png")
    options = tiny_options(tmp_path)
    options.nnst.rotate = False
    options.nnst.guide_weight = 0.9
    options.guide = masks
    out = tmp_path / "guided.png"
    run_files(tmp_path / "c.png", tmp_path / "s.png", out, options)
    with np.load(tmp_path / "guided.run" / "poster_state.npz") as state:
        field = state["field"]
    # the atlas holds one unrotated copy at the poster's scale: NNST's 64 px style x 3 = 192 px
    row = field[..., 0] / 192.0
    left, right = row[:, : field.shape[1] // 2 - 8], row[:, field.shape[1] // 2 + 8:]
    assert (left < 0.5).mean() > 0.95
    assert (right >= 0.5).mean() > 0.95


def test_synthesis_fraction_weights_levels_by_area():
    levels, iterations = 4, 3
    areas = [(32 * 2**j) * (18 * 2**j) for j in range(levels)]  # each level doubles both sides
    done, fractions = 0.0, []
    for level in range(1, levels + 1):
        for iteration in range(1, iterations + 1):
            done += areas[level - 1] / iterations
            fractions.append(poster.synthesis_fraction(level, levels, iteration, iterations))
            assert fractions[-1] == pytest.approx(done / sum(areas))
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
