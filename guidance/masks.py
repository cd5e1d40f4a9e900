"""Load a content/style mask pair as label maps whose labels correspond.

Two forms, found in a mask folder (:func:`load_masks`; :func:`load_mask_data` reads the same
folder from a ``{relative path: bytes}`` mapping, as an experiment's tasks carry it) or given as
files (:func:`load_mask_files`):

color label maps
    ``content.png`` and ``style.png``, or ``content_mask.png`` and ``style_mask.png`` (these win,
    so a folder holding ``content.png`` *images* beside their masks works): RGB or palette images
    in any format Pillow reads, JPEG included. Pixels of the same color correspond. Colors are
    snapped to the palette the two masks share (:mod:`guidance.palette`); labels are named and
    ordered by color. A grey image whose values are all below :data:`MAX_LABELS` is an *index map*
    (label ``i`` stored as the value ``i``, as segmentation tools write them): each value is a
    label, named by it.
grey region masks
    folders ``content/`` and ``style/`` with one grey image per region, white inside, matched by
    file name (``content/sky.png`` with ``style/sky.png``); labels are ordered by name. Each pixel
    takes the region whose mask is brightest there when that reaches :data:`GREY_THRESHOLD`
    (ties: the first name), else the implicit region :data:`REST_REGION`, which corresponds
    across the two sides like the named ones: what is outside the painted regions of the content
    is guided to what is outside them in the style. Soft edges are thus made hard here, and
    become soft again when the guide channels are averaged down to the feature grid.

Label semantics (``MaskPair``):

* a label on both sides guides the transfer: it gets a guide channel ``0 .. n_labels - 1``;
* a content-only label has no style to be guided to: its content pixels become ``-1``
  (unguided, matched against the whole style) and a warning names it. The style map never
  holds ``-1``, so an unguided content pixel is equally far, in guide distance, from every
  style pixel;
* a style-only label keeps its own channel in the style map, with a warning. Guided content
  pixels then pay for it like for any other wrong label, and with ``--guide-mode hard`` only
  unguided content pixels reach it. Unguiding it instead would give guided content pixels a
  cheaper distance to it (1) than to the other labels (2), pulling them there.

A mask of another size than its image is resized with nearest-neighbour sampling when the
aspect ratios agree within :data:`ASPECT_TOLERANCE`. Every problem that makes masks unusable
raises :class:`~guidance.errors.MaskError` naming the file and the fix; suspicious but usable
input adds a line to ``MaskPair.warnings``. Sizes in messages are width x height, positions x, y.
"""

import fnmatch
import io
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from guidance.errors import MaskError
from guidance.palette import MIN_LABEL_SHARE, find_palette, flat_pixels, snap_to_palette
from nnst_hr.errors import path_refused
from nnst_hr.files import apply_orientation, bytes_file, empty_file_message, exif_orientation, special_file_kind

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
ASPECT_TOLERANCE = 0.01  # relative difference of width / height allowed between a mask and its image
GREY_THRESHOLD = 0.5  # a grey region mask holds a pixel from this value up
REST_REGION = "(rest)"  # the implicit region of pixels in no region mask
MAX_LABELS = 64  # more colors than this: not a label map
UNKNOWN_WARN_SHARE = 1e-5  # stray flat patches of unknown colors on more of a mask than this are reported
UNKNOWN_ERROR_SHARE = 1e-2  # unknown colors on more of a mask than this make it unusable
SHOWN_COLORS = 3  # unknown colors named in a message
PAINT_HINT = "Paint each region in one flat color with a hard-edged brush."


@dataclass(frozen=True)
class Label:
    """One label of a mask pair.

    Attributes
    ----------
    index : int
        Guide channel (the value in the label maps), or ``-1`` for a content label without a
        style counterpart, whose pixels are unguided (or a label that no pixel keeps once the
        masks are resized to their images).
    name : str
        ``"#rrggbb"`` for a color label, the file stem for a grey region mask.
    color : (r, g, b) or None
        8-bit color of a color label; ``None`` for a region mask.
    content_area, style_area : float
        Share of the content / style label map covered by the label, in [0, 1].
    """

    index: int
    name: str
    color: tuple[int, int, int] | None
    content_area: float
    style_area: float

    @property
    def unguided(self) -> bool:
        """True for a content label matched against the whole style (no style counterpart)."""
        return self.index < 0

    def describe(self) -> str:
        """``"label #rrggbb"`` or ``"region 'name'"``, for messages."""
        return f"label {self.name}" if self.color is not None else f"region '{self.name}'"


@dataclass
class MaskPair:
    """Content and style label maps with corresponding labels.

    Attributes
    ----------
    content : int32 (Hc, Wc)
        Guide channel per content pixel, ``-1`` = unguided (matched against the whole style).
    style : int32 (Hs, Ws)
        Guide channel per style pixel; never ``-1``.
    labels : list of Label
        Every label found: guided ones by index, then the unguided ones (content-only labels,
        and labels that covered no pixel once resized to the image size).
    warnings : list of str
        Suspicious but usable input: unmatched labels, tiny regions, unknown colors.
    content_source, style_source : Path
        The mask files, or the region folders.
    """

    content: np.ndarray
    style: np.ndarray
    labels: list[Label]
    warnings: list[str]
    content_source: Path
    style_source: Path

    @property
    def n_labels(self) -> int:
        """Number of guide channels: labels present in the style mask."""
        return sum(not label.unguided for label in self.labels)


class _Disk:
    """A mask folder's files on the filesystem."""

    @staticmethod
    def glob(folder: Path, pattern: str) -> list[Path]:
        return list(folder.glob(pattern))

    @staticmethod
    def iterdir(folder: Path) -> list[Path]:
        return list(folder.iterdir())

    @staticmethod
    def is_dir(path: Path) -> bool:
        return path.is_dir()

    @staticmethod
    def is_file(path: Path) -> bool:
        return path.is_file()

    @staticmethod
    def size(path: Path) -> int:
        return path.stat().st_size

    @staticmethod
    def open(path: Path) -> Path:
        return path


class _Memory:
    """A mask folder's files as ``{relative path: bytes}``, seen under the folder name ``root``.

    Paths are ``root / relative path``, so every message names the file as the user knows it.
    """

    def __init__(self, root: Path, files: Mapping[str, bytes]):
        self.root = root
        # keys read on Windows carry backslashes; the lookups below split on "/"
        self.files = {PurePosixPath(str(rel).replace("\\", "/")): data for rel, data in files.items()}

    def _rel(self, path: Path) -> PurePosixPath:
        return PurePosixPath(path.relative_to(self.root).as_posix())

    def _children(self, folder: Path) -> set[str]:
        """Names of the files and folders directly in ``folder``."""
        parts = self._rel(folder).parts
        return {key.parts[len(parts)] for key in self.files
                if len(key.parts) > len(parts) and key.parts[:len(parts)] == parts}

    def glob(self, folder: Path, pattern: str) -> list[Path]:
        return [folder / name for name in self._children(folder) if fnmatch.fnmatchcase(name, pattern)]

    def iterdir(self, folder: Path) -> list[Path]:
        return [folder / name for name in self._children(folder)]

    def is_dir(self, path: Path) -> bool:
        return path == self.root or (path.is_relative_to(self.root) and bool(self._children(path)))

    def is_file(self, path: Path) -> bool:
        return path.is_relative_to(self.root) and self._rel(path) in self.files

    def size(self, path: Path) -> int:
        return len(self.files[self._rel(path)])

    def open(self, path: Path) -> io.BytesIO:
        return bytes_file(self.files[self._rel(path)], path)


_DISK = _Disk()


def load_masks(mask_dir, content_shape=None, style_shape=None) -> MaskPair:
    """Load the mask pair of a mask folder, in either form (see the module docstring).

    Parameters
    ----------
    mask_dir : str or Path
        Folder holding ``content_mask.*`` / ``style_mask.*``, ``content.*`` / ``style.*`` or
        ``content/`` / ``style/``.
    content_shape, style_shape : (H, W) or None
        Shapes of the (EXIF-oriented) images; label maps are resized to them. ``None`` keeps the
        mask's own size (the first region file's for grey region masks).

    Raises
    ------
    MaskError
        Missing or ambiguous files, unreadable images, wrong aspect ratio, not a label map,
        empty region masks, no label shared by the two masks.

    Examples
    --------
    >>> pair = load_masks("samples/guided/louvre_to_house", content_shape=(567, 633))
    >>> pair.n_labels, pair.content.shape, pair.style.shape
    (4, (567, 633), (540, 800))
    """
    return _load_folder(mask_folder(mask_dir), _DISK, content_shape, style_shape)


def mask_folder(mask_dir) -> Path:
    """``mask_dir`` as a Path, once it is known to be a folder.

    Raises
    ------
    MaskError
        ``mask_dir`` is missing, or a file.
    """
    mask_dir = Path(mask_dir)
    if mask_dir.exists() and not mask_dir.is_dir():
        raise MaskError(f"{mask_dir} is a file, not a mask folder: give the folder that holds "
                        f"content.png and style.png (or content/ and style/)")
    if not mask_dir.is_dir():
        refused = path_refused(mask_dir)  # a link loop said "does not exist"
        if refused is not None:
            raise MaskError(f"mask folder {refused}")
        raise MaskError(f"mask folder {mask_dir} does not exist: give the folder that holds "
                        f"content.png and style.png (or content/ and style/)")
    return mask_dir


def load_mask_data(files: Mapping[str, bytes], mask_dir, content_shape=None, style_shape=None) -> MaskPair:
    """Load the mask pair of a mask folder given as its files' bytes, as :func:`load_masks` would.

    Parameters
    ----------
    files : mapping of str to bytes
        ``{path relative to the folder: file bytes}`` (``"content.png"``, ``"style/sky.png"``).
    mask_dir : str or Path
        The folder's path as the user gave it: only messages name it (``mask_dir/content.png``).
    content_shape, style_shape : (H, W) or None
        As in :func:`load_masks`.

    Raises
    ------
    MaskError
        As :func:`load_masks`, naming the files under ``mask_dir``.

    Examples
    --------
    >>> folder = Path("samples/guided/louvre_to_house")
    >>> files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    >>> load_mask_data(files, folder).n_labels == load_masks(folder).n_labels
    True
    """
    return _load_folder(Path(mask_dir), _Memory(Path(mask_dir), files), content_shape, style_shape)


def _check_shape(shape, name: str) -> None:
    """Refuse an image shape that is not None or ``(H, W)`` of positive integers: a bare number failed with
    "'int' object is not subscriptable", a zero side with a ZeroDivisionError, and a float one named
    "800.0x540.0" px."""
    if shape is None:
        return
    ok = (isinstance(shape, tuple | list) and len(shape) == 2
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in shape))
    if not ok:
        raise MaskError(f"{name} must be (H, W) of the image in pixels, e.g. image.shape[:2], or None; got {shape!r}")


def _load_folder(mask_dir: Path, fs, content_shape, style_shape) -> MaskPair:
    """:func:`load_masks` of a folder read through ``fs`` (:class:`_Disk` or :class:`_Memory`)."""
    _check_shape(content_shape, "content_shape")
    _check_shape(style_shape, "style_shape")
    content, style = _find_source(mask_dir, "content", fs), _find_source(mask_dir, "style", fs)
    if fs.is_dir(content) != fs.is_dir(style):
        raise MaskError(f"{content} and {style} are of different forms: use two color label maps "
                        f"(content.png, style.png) or two folders of region masks (content/, style/)")
    if fs.is_dir(content):
        return _load_region_folders(content, style, content_shape, style_shape, fs)
    return _load_mask_files((content, style), content_shape, style_shape, fs)


def load_mask_files(content_mask, style_mask, content_shape=None, style_shape=None) -> MaskPair:
    """Load two color label maps given as files.

    Parameters
    ----------
    content_mask, style_mask : str or Path
        Color-coded label maps (RGB or palette images; pixels of the same color correspond).
    content_shape, style_shape : (H, W) or None
        As in :func:`load_masks`.

    Raises
    ------
    MaskError
        As :func:`load_masks`.
    """
    _check_shape(content_shape, "content_shape")
    _check_shape(style_shape, "style_shape")
    return _load_mask_files((Path(content_mask), Path(style_mask)), content_shape, style_shape, _DISK)


def _load_mask_files(paths: tuple[Path, Path], content_shape, style_shape, fs) -> MaskPair:
    """:func:`load_mask_files` of two files read through ``fs``."""
    rgbs, indexed = zip(*(_read_label_map(path, fs) for path in paths), strict=True)
    flats = [flat_pixels(rgb) for rgb in rgbs]
    colors, shares = find_palette(rgbs, flats, MAX_LABELS)
    present = shares > 0
    if len(colors) > MAX_LABELS:
        raise MaskError(f"mask {paths[np.argmax(present.sum(axis=1))]} has more than {MAX_LABELS} "
                        f"flat colors: it does not look like a label map. {PAINT_HINT}")
    warnings: list[str] = []
    maps, errors = [], []
    for side, path, rgb, flat, shape, here in zip(("content", "style"), paths, rgbs, flats,
                                                  (content_shape, style_shape), present, strict=True):
        try:
            if not here.any():
                raise MaskError(_no_label_message(path))
            snapped, unknown = snap_to_palette(rgb, flat, colors[here])
            warnings += _check_unknown(path, rgb, flat, unknown)
        except MaskError as err:
            errors.append(err)
            continue
        maps.append(_fit(np.flatnonzero(here)[snapped], shape, path, side))
    if errors:
        raise _blamed(errors, paths, rgbs, flats)
    # index maps' labels are named by their values, as the tool that wrote them numbered them
    names = [(all(indexed) and _index_name(c)) or _hex(c) for c in colors]
    return _pair(*maps, names, [tuple(c) for c in colors.tolist()], paths, warnings)


def _no_label_message(path: Path) -> str:
    return (f"mask {path} has no region of one flat color covering {MIN_LABEL_SHARE:.1%} of it: it does not "
            f"look like a label map. {PAINT_HINT}")


def _blamed(errors: list[MaskError], paths, rgbs, flats) -> MaskError:
    """The error to raise when a mask does not fit the palette the two share: that of a mask that is
    not a label map on its own, where one is not, else the first error.

    The palette is found in both masks together, so a photo given as one of them takes label colors
    of the other into its own clusters (which it then drops as not peaked): the good label map was
    blamed, for "colors that are neither a label color nor an edge blend".
    """
    for path, rgb, flat in zip(paths, rgbs, flats, strict=True):
        own = find_palette([rgb], [flat], MAX_LABELS)[0]
        if len(own) > MAX_LABELS:
            return MaskError(f"mask {path} has more than {MAX_LABELS} flat colors: it does not look like a "
                             f"label map. {PAINT_HINT}")
        if len(own) == 0:
            return MaskError(_no_label_message(path))
        try:
            _check_unknown(path, rgb, flat, snap_to_palette(rgb, flat, own)[1])
        except MaskError as err:
            return err
    return errors[0]


def _find_source(mask_dir: Path, side: str, fs) -> Path:
    """The mask file or region folder of one side (``"content"`` or ``"style"``)."""
    others = []  # files of another format: named when no mask is found
    for stem in (f"{side}_mask", side):
        named = sorted(fs.glob(mask_dir, f"{stem}.*"))
        others += [p.name for p in named if p.suffix.lower() not in MASK_SUFFIXES and fs.is_file(p)]
        files = [p for p in named if p.suffix.lower() in MASK_SUFFIXES]
        for path in files:
            if fs.is_dir(path):  # was taken for a folder of region masks: "of different forms"
                raise MaskError(f"{path} is a folder, not a mask image: give {side}.png (a color label map) "
                                f"or a folder {side}/ of grey region masks")
        if len(files) > 1 or (files and stem == side and fs.is_dir(mask_dir / side)):
            found = ", ".join(p.name for p in files) + (f", {side}/" if fs.is_dir(mask_dir / side) else "")
            raise MaskError(f"{mask_dir} holds several {side} masks ({found}): keep one")
        if files:
            return files[0]
    if fs.is_dir(mask_dir / side):
        return mask_dir / side
    unread = f" ({', '.join(others)}: not a mask format; save it as PNG)" if others else ""
    raise MaskError(f"no {side} mask in {mask_dir}{unread}: add {side}.png (a color label map, or "
                    f"{side}_mask.png) or a folder {side}/ of grey region masks")


def _open(path: Path, fs=_DISK) -> tuple[Image.Image, int]:
    """A decoded image as stored, and its EXIF orientation (the readers below apply it)."""
    if not fs.is_file(path):
        special = special_file_kind(path) if fs is _DISK else None  # a FIFO "does not exist"
        if special is not None:
            raise MaskError(f"mask {path} is {special}, not a file; save the mask to a file there")
        raise MaskError(f"mask {path} does not exist: check the path")
    if fs.size(path) == 0:  # Pillow's "cannot identify image file" said nothing of it
        raise MaskError(empty_file_message(f"mask {path}"))
    try:
        with Image.open(fs.open(path)) as image:
            image.load()
            return image, exif_orientation(image)
    except Image.DecompressionBombError as err:  # was a traceback
        raise MaskError(f"mask {path} has too many pixels ({err}): downscale it") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise MaskError(f"cannot read mask {path} ({err}): save it as PNG") from err


def _read_rgb(path: Path, fs=_DISK) -> np.ndarray:
    """uint8 (H, W, 3) colors of a color label map, upright; alpha is ignored."""
    return _read_label_map(path, fs)[0]


def _read_label_map(path: Path, fs=_DISK) -> tuple[np.ndarray, bool]:
    """:func:`_read_rgb`'s colors, and whether the file is an index map (:func:`_index_values`).

    An index map comes back in :func:`index_colors`: its labels 0, 1, 2, ... are near-black greys
    that the palette would take for one color with JPEG noise.
    """
    image, orientation = _open(path, fs)
    values = _index_values(image)
    rgb = index_colors(values) if values is not None else np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(apply_orientation(rgb, orientation)), values is not None


def _index_values(image: Image.Image) -> np.ndarray | None:
    """The label of each pixel of an index map, int (H, W); None for any other image.

    An index map is a grey image (8 or 16 bits, or a palette image whose palette is the grey ramp)
    whose values are all below :data:`MAX_LABELS`, in a lossless format: segmentation tools write
    label ``i`` as the value ``i``. Nobody paints regions in greys that dark and that close to each
    other; a JPEG's are a painted mask's, whose noise would make labels of its own.
    """
    if image.format == "JPEG":
        return None
    if image.mode in ("L", "I", "I;16", "I;16B", "I;16L"):
        values = np.asarray(image)
    elif image.mode == "P":
        values = np.asarray(image)
        grey = np.asarray(image.convert("RGB"))
        if not (grey == values[..., None]).all():
            return None
    else:
        return None
    return values.astype(np.int32) if values.size and 0 <= values.min() and values.max() < MAX_LABELS else None


def index_colors(values: np.ndarray) -> np.ndarray:
    """uint8 (..., 3): index-map label ``i`` (0 <= i < :data:`MAX_LABELS`) as the ``i``-th color of the
    4 x 4 x 4 grid of RGB levels 0, 85, 170, 255, whose colors lie farther apart than the palette's
    merge radius (:data:`~guidance.palette.MERGE_RADIUS`) twice over.

    Examples
    --------
    >>> index_colors(np.array([0, 1, 63])).tolist()
    [[0, 0, 0], [0, 0, 85], [255, 255, 255]]
    """
    values = np.asarray(values)
    return (np.stack([values // 16, values // 4 % 4, values % 4], axis=-1) * 85).astype(np.uint8)


def _index_name(color) -> str | None:
    """The label value whose :func:`index_colors` color ``color`` is; None for another color."""
    r, g, b = (int(c) for c in color)
    if any(c % 85 for c in (r, g, b)):
        return None
    return str(r // 85 * 16 + g // 85 * 4 + b // 85)


def _read_grey(path: Path, fs=_DISK) -> np.ndarray:
    """float32 (H, W) values in [0, 1] of a grey region mask, upright; transparent pixels count as 0."""
    image, orientation = _open(path, fs)
    if image.mode.startswith("I"):  # 16-bit PNG and TIFF
        grey = np.clip(np.asarray(image, np.float32) / 65535, 0, 1)
    elif image.mode == "F":
        grey = np.clip(np.asarray(image, np.float32), 0, 1)
    else:
        grey = np.asarray(image.convert("L"), np.float32) / 255
        if "A" in image.getbands() or "transparency" in image.info:
            grey *= np.asarray(image.convert("RGBA"), np.float32)[..., 3] / 255
    return np.ascontiguousarray(apply_orientation(grey, orientation))


def _fit(array: np.ndarray, shape, path: Path, side: str) -> np.ndarray:
    """``array`` (h, w) resized to ``shape`` (H, W) by nearest-neighbour sampling of pixel centres."""
    if shape is None or array.shape == tuple(shape[:2]):
        return array
    (h, w), (height, width) = array.shape, shape[:2]
    if abs((w / h) / (width / height) - 1) > ASPECT_TOLERANCE:
        raise MaskError(f"mask {path} is {w}x{h} (aspect {w / h:.3f}) but the {side} image is "
                        f"{width}x{height} (aspect {width / height:.3f}): a mask must have the "
                        f"aspect ratio of its image; export it at {width}x{height}")
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.intp), w - 1)
    return array[rows[:, None], cols[None, :]]


def _check_unknown(path: Path, rgb: np.ndarray, flat: np.ndarray, unknown: np.ndarray) -> list[str]:
    """A MaskError for many pixels of unknown colors; a warning for stray flat patches of them.

    JPEG ringing leaves a few unknown pixels along boundaries; they are never flat, so only flat
    unknown pixels (the inside of a stray patch) are worth a warning.
    """
    if unknown.mean() > UNKNOWN_ERROR_SHARE:
        raise MaskError(f"mask {path}: {_describe_unknown(rgb, unknown)}: it does not look like a "
                        f"label map. {PAINT_HINT}")
    stray = unknown & flat
    if stray.mean() > UNKNOWN_WARN_SHARE:
        return [f"mask {path}: {_describe_unknown(rgb, stray)}; they were snapped to the nearest label"]
    return []


def _describe_unknown(rgb: np.ndarray, unknown: np.ndarray) -> str:
    colors, counts = np.unique(rgb[unknown], axis=0, return_counts=True)
    common = ", ".join(_hex(c) for c in colors[np.argsort(-counts, kind="stable")[:SHOWN_COLORS]])
    y, x = np.argwhere(unknown)[0]
    return (f"{unknown.mean():.2%} of the pixels have colors that are neither a label color nor an "
            f"edge blend of two (most common {common}; first at x={x}, y={y})")


def _hex(color) -> str:
    """``"#rrggbb"`` of an 8-bit RGB triple."""
    r, g, b = (int(c) for c in color)
    return f"#{r:02x}{g:02x}{b:02x}"


def _load_region_folders(content_dir: Path, style_dir: Path, content_shape, style_shape, fs) -> MaskPair:
    """Grey region masks in two folders -> a MaskPair labelled by file name."""
    files = [_region_files(content_dir, fs), _region_files(style_dir, fs)]
    names = sorted(set(files[0]) | set(files[1]))
    maps = [_regions_to_labels(found, names, shape, side, fs)
            for found, shape, side in zip(files, (content_shape, style_shape), ("content", "style"), strict=True)]
    if any((labels == len(names)).any() for labels in maps):
        names.append(REST_REGION)
    return _pair(*maps, names, [None] * len(names), (content_dir, style_dir), [])


def _region_files(folder: Path, fs) -> dict[str, Path]:
    """Region name (file stem) -> grey mask file of a region folder."""
    files = sorted(p for p in fs.iterdir(folder) if p.suffix.lower() in MASK_SUFFIXES)
    if not files:
        raise MaskError(f"region folder {folder} holds no mask image ({', '.join(MASK_SUFFIXES)}): "
                        f"add one grey mask per region, white inside")
    found: dict[str, Path] = {}
    for path in files:
        if path.stem in found:
            raise MaskError(f"region '{path.stem}' has two masks in {folder} ({found[path.stem].name}, "
                            f"{path.name}): keep one")
        found[path.stem] = path
    return found


def _regions_to_labels(files: dict[str, Path], names: list[str], shape, side: str, fs) -> np.ndarray:
    """int32 (H, W) index into ``names`` of the brightest region mask per pixel, ``len(names)`` if none."""
    stack = []
    for path in files.values():
        grey = _read_grey(path, fs)
        if grey.max() < GREY_THRESHOLD:
            raise MaskError(f"region mask {path} is empty (no pixel reaches {GREY_THRESHOLD:g}): "
                            f"paint the region white or delete the file")
        shape = grey.shape if shape is None else shape
        stack.append(_fit(grey, shape, path, side))
    stack = np.stack(stack)
    index = np.array([names.index(name) for name in files], np.int32)
    inside = stack.max(axis=0) >= GREY_THRESHOLD
    return np.where(inside, index[stack.argmax(axis=0)], len(names)).astype(np.int32)


def _pair(content: np.ndarray, style: np.ndarray, names: list[str], colors: list, sources,
          warnings: list[str]) -> MaskPair:
    """Match the labels of two maps (int (H, W) indices into ``names``) and give guide channels."""
    count = len(names)
    areas = [np.bincount(m.ravel(), minlength=count) / m.size for m in (content, style)]
    in_content, in_style = areas[0] > 0, areas[1] > 0
    if not (in_content & in_style).any():
        found = [", ".join(n for n, here in zip(names, side, strict=True) if here) or "none"
                 for side in (in_content, in_style)]
        raise MaskError(f"no label of mask {sources[0]} ({found[0]}) appears in mask {sources[1]} "
                        f"({found[1]}): regions correspond by color (or file name); use the same "
                        f"ones on both sides")
    channel = np.where(in_style, np.cumsum(in_style) - 1, -1).astype(np.int32)
    labels = [Label(int(channel[i]), names[i], colors[i], float(areas[0][i]), float(areas[1][i]))
              for i in np.argsort(np.where(in_style, channel, count + np.arange(count)))]
    warnings = warnings + [w for label in labels for w in _label_warnings(label)]
    return MaskPair(channel[content], channel[style], labels, warnings, Path(sources[0]), Path(sources[1]))


def _label_warnings(label: Label) -> list[str]:
    """Warnings about one label: unmatched on a side, or a tiny region."""
    if label.content_area == label.style_area == 0:
        return [f"{label.describe()} covers no pixel of either mask at the image sizes"]
    out = []
    if label.style_area == 0:
        out.append(f"content {label.describe()} ({label.content_area:.1%} of the content) has no "
                   f"counterpart in the style mask: it is matched against the whole style")
    if label.content_area == 0:
        out.append(f"style {label.describe()} ({label.style_area:.1%} of the style) is not in the "
                   f"content mask: only unguided content pixels match it freely")
    for side, area in (("content", label.content_area), ("style", label.style_area)):
        if 0 < area < MIN_LABEL_SHARE:
            out.append(f"{label.describe()} covers only {area:.3%} of the {side} mask: stray pixels?")
    return out
