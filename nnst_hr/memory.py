"""Peak memory of a run, estimated from the sizes, and a refusal before it cannot fit.

A run that does not fit is killed by the kernel (or fails with CUDA out of memory) after
minutes of work. A run's sizes are a :class:`RunSizes`; :func:`check_fits` compares its
estimate (:meth:`RunSizes.peak`, :func:`estimate_peak_bytes`) with the memory available now and
refuses with the largest ``--size`` / ``--out-size`` that would fit. Under ``ulimit -v`` the
estimate is taken ``VIRTUAL_PER_RESIDENT`` times: the limit is on address space, which a run maps
more of than it keeps resident.

The model (bytes; every coefficient fitted to peak RSS measured by ``bench/memory.py``):

- NNST stage: ``BASE + inputs + NNST_LOADED + NNST_KEY_FACTOR * keys + NNST_PIXEL_BYTES *
  pixels``, where ``keys`` is the style hypercolumn matrix (rotations x style cells x 2688
  float32: the largest single tensor) and ``pixels`` the NNST output's pixels (VGG activations
  and their gradients during the optimization). ``NNST_LOADED`` (VGG16, torch's autograd and
  optimizer modules) stays loaded for the rest of the process.
- Poster stage: the larger of the synthesis (``POSTER_SOURCE_BYTES`` per atlas pixel:
  every rotation of the exemplar at the search scale with its guides, pyramids and
  patchsynth's records; ``POSTER_TARGET_BYTES`` per searched poster pixel) and the render +
  colour stage at the full poster size (``POSTER_RENDER_BYTES`` per poster pixel, plus the
  float32 exemplar at the poster's scale when the search ran smaller), plus ``BASE + inputs``
  and, after NNST in the same process, ``NNST_LOADED``.
- ``inputs``: both images as read, float32 RGB, held for the whole run.
- ``--cmyk`` (``press_bits``): writing the output separated into a press's ink holds the final
  float32 image, the ink's code values (4 channels of 8 or 16 bits: 8 bytes per pixel where a
  16-bit sRGB TIFF holds 6) and the separation's float bands (:func:`press_write_bytes`), after
  the stage that made the image, in the same process: the run's peak is the larger of the two.
  Under a poster's colour stage (``POSTER_RENDER_BYTES``) for all but posters of a few hundred
  rows, whose bands weigh more than their pixels.

The two NNST terms are told apart by runs with and without rotations (the keys grow with
them, the pixels do not), the poster's by its search and render sizes; the fit and its
accuracy are in notes/measurements.md ("Memory model").

A resumed run counts only the stages it will run (``nnst_done``, ``synthesis_done``): with the
NNST stage's result in the run folder the NNST part is ``BASE + inputs`` and nothing of NNST is
loaded; with the poster's synthesis there too, the poster part is the render term alone (an
upper bound of the colour stage, the only part left).

On CUDA the NNST stage's tensors live in GPU memory (checked against
``torch.cuda.mem_get_info``); the poster stage always runs on the CPU.

Examples
--------
>>> est = estimate_peak_bytes((900, 1600), (2341, 3200), size=512)
>>> round(est.nnst / 2**30, 1) > 1
True
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from .disk import format_bytes
from .errors import InputError

GiB = 2**30
HYPERCOLUMN_BYTES = 2688 * 4  # one float32 hypercolumn
STRIDE = 4  # feature grid stride (features.FEATURE_STRIDE)
GUTTER = 8  # poster atlas gutter (poster.GUTTER)

BASE_BYTES = 710 * 2**20  # Python, torch, numba and the allocator's reserve (fitted: poster stages run alone)
NNST_LOADED_BYTES = 380 * 2**20  # VGG16, torch's autograd and optimizer modules: loaded by NNST, kept to the end
NNST_KEY_FACTOR = 1.05  # the keys and the scratch of a search, per key byte (fitted: runs with and without rotations)
NNST_PIXEL_BYTES = 3300  # VGG16 activations + gradients per NNST output pixel (fitted, with the above)
NNST_REUSE_PIXEL_BYTES = 1400  # more per NNST output pixel where its loops reuse the heap (heap_reuse; 768-1024 px)
FIRST_LAYER_CHANNELS = 64  # VGG16's conv1 (hypercolumns.LAYER_CHANNELS[0]): a step's largest blocks
POSTER_SOURCE_BYTES = 115  # per atlas pixel: exemplar, guides, their pyramids, patchsynth records (fitted)
POSTER_TARGET_BYTES = 80  # per searched poster pixel: target guides, fields, image, votes (counted, not fitted)
POSTER_RENDER_BYTES = 40  # per final poster pixel: field, render bands, colour transfer at full size (fitted)
OUTPUT_IMAGE_BYTES = 12  # per output pixel: the final float32 RGB image, held while it is written
SEPARATE_ROWS = 256  # rows of the output separated into ink at a time (icc.SEPARATE_ROWS)
PRESS_BAND_BYTES = 48  # per pixel of a band separated into ink: LittleCMS's float32 CMYK and two temporaries of it
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20  # blocks above it are always mapped on their own (64-bit glibc)
GLIBC_TRIM_THRESHOLD = 128 * 2**10  # glibc's default (DEFAULT_TRIM_THRESHOLD)
GLIBC_MMAP_MAX = 65536  # glibc's default (DEFAULT_MMAP_MAX)
REUSE_TRIM_THRESHOLD = 2**31 - 1  # within heap_reuse: the largest (an int), the heap's free end stays
HEADROOM = 1.1  # refuse unless the estimate times this fits: the model's error and the allocator's
# address space a run maps beyond what it had mapped at the check, per byte of its estimated peak resident memory
# (thread stacks and malloc arenas, blocks mapped before they are touched): fitted to VmPeak, notes/measurements.md
VIRTUAL_PER_RESIDENT = 1.2
PROC_MEMINFO = "/proc/meminfo"  # the machine's MemAvailable
PROC_CGROUP = "/proc/self/cgroup"  # the control groups this process is in
CGROUP_ROOT = "/sys/fs/cgroup"  # where they are mounted (v2: one tree; v1: one per controller, memory/)


@dataclass
class PeakEstimate:
    """Estimated peak bytes of each stage; ``gpu`` is the NNST stage's part on CUDA (else 0).

    A stage resumed from the run folder counts what the process holds meanwhile (see
    :func:`estimate_peak_bytes`); ``poster`` is 0 without a poster stage.
    """

    nnst: int
    poster: int
    gpu: int = 0

    @property
    def ram(self) -> int:
        """Peak resident memory of the whole run."""
        return max(self.nnst if not self.gpu else self.nnst - self.gpu, self.poster)


def long_side_shape(shape: tuple[int, int], long_side: float) -> tuple[int, int]:
    """``shape`` resized so that its long side is ``long_side``, as :func:`nnst_hr.tensors.resize_long_side` does.

    Examples
    --------
    >>> long_side_shape((900, 1600), 512)
    (288, 512)
    """
    scale = long_side / max(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


@dataclass(frozen=True)
class RunSizes:
    """What a run's peak memory depends on: :meth:`peak` estimates it, :func:`check_fits` refuses it.

    A resumed run counts only the stages it will run (``nnst_done``, ``synthesis_done``; see the
    module docstring).
    """

    content_shape: tuple[int, int]  # (H, W) of the content as NNST reads it (a print's: fitted to it)
    style_shape: tuple[int, int]  # (H, W) of the style as read
    size: int  # NNST's long side (--size)
    out_size: int | None = None  # the poster's long side (--out-size); None: no poster stage
    rotate: bool = True  # the style is matched in 4 rotations (else 1)
    device: str = "cpu"  # where the NNST stage runs: "cpu" or "cuda"
    max_search_size: int = 4096  # PosterConfig.max_search_size
    nnst_done: bool = False  # the NNST stage's result is resumed from the run folder (it does not run)
    synthesis_done: bool = False  # the poster's synthesis is resumed too (only its colour stage runs)
    press_bits: int | None = None  # --cmyk: the output is separated into a press's ink of 8 or 16 bits; None: sRGB

    def peak(self) -> PeakEstimate:
        """Estimated peak memory of the run, per stage."""
        content_shape, style_shape, size, out_size = self.content_shape, self.style_shape, self.size, self.out_size
        rotations = 4 if self.rotate else 1
        inputs = 12 * (content_shape[0] * content_shape[1] + style_shape[0] * style_shape[1])
        ch, cw = long_side_shape(content_shape, size)
        sh, sw = long_side_shape(style_shape, size)
        keys = rotations * (sh // STRIDE) * (sw // STRIDE) * HYPERCOLUMN_BYTES
        # fast mode's bf16 blocks; an exact run reuses the heap from smaller sizes, within the headroom
        reuse = NNST_REUSE_PIXEL_BYTES if self.device == "cpu" and reuses_heap((ch, cw)) else 0
        tensors = 0 if self.nnst_done else NNST_KEY_FACTOR * keys + (NNST_PIXEL_BYTES + reuse) * ch * cw
        loaded = 0 if self.nnst_done else NNST_LOADED_BYTES
        nnst = BASE_BYTES + inputs + loaded + tensors
        poster = 0
        if out_size and out_size != max(ch, cw):
            scale = out_size / max(ch, cw)
            oh, ow = max(1, round(ch * scale)), max(1, round(cw * scale))
            factor = 1
            while max(oh, ow) > self.max_search_size * factor:
                factor *= 2
            search = math.ceil(oh / factor) * math.ceil(ow / factor)
            eh, ew = max(1, round(sh * scale / factor)), max(1, round(sw * scale / factor))
            atlas = rotations * eh * ew + (rotations - 1) * GUTTER * max(eh, ew)
            synthesis = POSTER_SOURCE_BYTES * atlas + POSTER_TARGET_BYTES * search
            rendering = POSTER_RENDER_BYTES * oh * ow + (12 * sh * sw * scale * scale if factor > 1 else 0)
            poster = BASE_BYTES + inputs + loaded + (rendering if self.synthesis_done else max(synthesis, rendering))
            if self.press_bits:  # the poster written as ink, after its colour stage
                poster = max(poster, BASE_BYTES + inputs + loaded + press_write_bytes((oh, ow), self.press_bits))
        elif self.press_bits:  # the NNST result written as ink, after the NNST stage
            nnst = max(nnst, BASE_BYTES + inputs + loaded + press_write_bytes((ch, cw), self.press_bits))
        return PeakEstimate(nnst=int(nnst), poster=int(poster), gpu=int(tensors) if self.device == "cuda" else 0)


def press_write_bytes(shape: tuple[int, int], bits: int) -> int:
    """Bytes that writing an output of ``shape`` (H, W) as a press's ink of ``bits`` (8 or 16) holds: the final
    float32 image, the ink's code values (:func:`nnst_hr.icc.srgb_to_cmyk`) and its float bands of
    ``SEPARATE_ROWS`` rows (fitted to the peak RSS of ``srgb_to_cmyk`` + ``write_cmyk_tiff``; notes/measurements.md).

    Examples
    --------
    >>> round(press_write_bytes((4961, 7016), 16) / 2**30, 2)  # A2, 300 dpi: image 0.39 GiB, ink 0.26, bands 0.08
    0.73
    """
    height, width = shape
    codes = 4 * bits // 8
    return (OUTPUT_IMAGE_BYTES + codes) * height * width + PRESS_BAND_BYTES * min(height, SEPARATE_ROWS) * width


def estimate_peak_bytes(content_shape: tuple[int, int], style_shape: tuple[int, int], size: int,
                        out_size: int | None = None, **options) -> PeakEstimate:
    """Estimated peak memory of a run, per stage: :meth:`RunSizes.peak` of ``RunSizes(content_shape,
    style_shape, size, out_size, **options)`` (``options``: its other fields, by name)."""
    return RunSizes(content_shape, style_shape, size, out_size, **options).peak()


def available_ram_bytes() -> int | None:
    """Memory available to a new allocation now: the machine's ``MemAvailable``, or less where this
    process's memory cgroup (a container's ``--memory``, a batch job's ``--mem``) leaves less
    (:func:`cgroup_room_bytes`); None where unknown.

    ``MemAvailable`` alone is the host's: a run in an 8 GB container on a 128 GB machine passed the
    check and was killed by the kernel's OOM killer (SIGKILL, no message).
    """
    machine = None
    try:
        with open(PROC_MEMINFO) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    machine = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if machine is None:
        try:
            import psutil

            machine = int(psutil.virtual_memory().available)
        except ImportError:
            pass
    room = cgroup_room_bytes()
    return min(v for v in (machine, room) if v is not None) if (machine, room) != (None, None) else None


def process_limit_room() -> tuple[int, str, float] | None:
    """Room left under this process's own limits: ``(bytes, the option that sets the limit, bytes it
    takes per byte of estimated resident memory)`` of the one that leaves the least; None where
    neither ``ulimit -v`` nor ``ulimit -d`` is set (or psutil cannot tell what is used).

    ``ulimit -v`` (``RLIMIT_AS``) limits the address space, less what is mapped now: a run maps
    ``VIRTUAL_PER_RESIDENT`` times its resident peak (torch's threads and blocks mapped before they
    are used): compared with the resident estimate alone, runs under it passed the check and failed
    in torch's allocator. ``ulimit -d`` (``RLIMIT_DATA``) limits the data segment, less its size now.
    Neither is in ``MemAvailable`` or a cgroup. A limit is the process's own, so it bounds one stage,
    not several workers together (each worker process has its own).
    """
    import resource

    try:
        import psutil

        used = psutil.Process().memory_info()
    except (ImportError, OSError):
        return None
    rooms = []
    for name, field, option, per_resident in (("RLIMIT_AS", "vms", "ulimit -v", VIRTUAL_PER_RESIDENT),
                                              ("RLIMIT_DATA", "data", "ulimit -d", 1.0)):
        limit = resource.getrlimit(getattr(resource, name))[0] if hasattr(resource, name) else resource.RLIM_INFINITY
        if limit != resource.RLIM_INFINITY and hasattr(used, field):
            rooms.append((max(0, limit - getattr(used, field)), option, per_resident))
    return min(rooms, key=lambda room: room[0] / room[2]) if rooms else None


def _read(path) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _stat(text: str | None, key: str) -> int:
    """``key``'s value in a ``memory.stat`` text (0 where absent)."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def cgroup_room_bytes() -> int | None:
    """Bytes this process's memory cgroup lets it still allocate: the tightest of its group's and its
    ancestors' limits, less their usage (page cache that can be reclaimed, ``inactive_file``, not
    counted as used); None without a limit or a readable cgroup.

    cgroup v2 (``0::/path`` in ``/proc/self/cgroup``): ``memory.max`` and ``memory.current``;
    v1 (``N:memory:/path``): ``memory.limit_in_bytes`` and ``memory.usage_in_bytes``. Inside a
    container the group is often mounted as the root itself (its path is the host's): then the
    root's own files are read.
    """
    from pathlib import Path

    membership = _read(PROC_CGROUP)
    if membership is None:
        return None
    rooms = []
    for line in membership.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2
            top, limit_file, usage_file, cache_key = Path(CGROUP_ROOT), "memory.max", "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):  # v1
            top = Path(CGROUP_ROOT) / "memory"
            limit_file, usage_file, cache_key = "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
        else:
            continue
        group = top / path.lstrip("/")
        if not (group / limit_file).is_file():
            group = top  # a namespaced mount: the group is the root
        for level in (group, *group.parents):
            limit, usage = _read(level / limit_file), _read(level / usage_file)
            if limit is not None and limit.isdigit() and usage is not None and usage.isdigit():
                if int(limit) < 2**60:  # v1 writes "no limit" as a number near 2^63
                    cache = _stat(_read(level / "memory.stat"), cache_key)
                    rooms.append(max(0, int(limit) - int(usage) + cache))
            if level == top:
                break
    return min(rooms) if rooms else None


def release_freed_memory() -> bool:
    """Give the pages that the C heap holds free back to the operating system.

    glibc's ``malloc`` keeps freed blocks smaller than its mmap threshold (which grows as
    large blocks are freed) in its heaps for reuse, and returns only the free end of a heap:
    the NNST stage's freed tensors, scattered between live blocks, stayed resident and the
    poster stage's peak came on top of them (figures in notes/measurements.md).
    ``malloc_trim(0)`` releases the free pages inside the heaps too; it changes no setting.

    Returns
    -------
    bool
        Whether ``malloc_trim`` was called (False where the C library has none: not glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # musl and other C libraries without malloc_trim
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def reuses_heap(shape: tuple[int, int], value_bytes: int = 2) -> bool:
    """Whether NNST's optimization loops at ``shape`` (H, W) run under :func:`heap_reuse` (on the CPU).

    They do where a step's largest blocks, VGG16's first-layer maps of ``value_bytes`` per value
    (2 in bf16, 4 in fp32), are larger than glibc's largest mmap threshold: blocks glibc would
    map and unmap at every step. Smaller ones it keeps in its heap anyway.

    Examples
    --------
    >>> reuses_heap((288, 512)), reuses_heap((576, 1024)), reuses_heap((288, 512), value_bytes=4)
    (False, True, True)
    """
    return FIRST_LAYER_CHANNELS * shape[0] * shape[1] * value_bytes > GLIBC_MMAP_THRESHOLD_MAX


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, None elsewhere (musl's is a stub, other systems have none)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only)
        mallopt = libc.mallopt
    except (AttributeError, OSError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def startup_malloc_settings(environ: bytes | None = None) -> dict[int, int]:
    """glibc's trim threshold and mmap maximum as this process started with them: ``{param: value}``.

    glibc reads ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_MAX_`` and ``GLIBC_TUNABLES`` once, from
    the environment the process was started with (``/proc/self/environ``; Dask's nanny, for one,
    starts its workers with a trim threshold), not from ``os.environ`` as it is later.

    Parameters
    ----------
    environ : bytes, optional
        A starting environment as ``/proc/self/environ`` holds it (NUL-separated); default this
        process's.

    Examples
    --------
    >>> startup_malloc_settings(b"HOME=/root\\0MALLOC_TRIM_THRESHOLD_=65536\\0") == {
    ...     M_TRIM_THRESHOLD: 65536, M_MMAP_MAX: GLIBC_MMAP_MAX}
    True
    """
    if environ is None:
        try:
            with open("/proc/self/environ", "rb") as file:
                environ = file.read()
        except OSError:
            environ = b""
    env = dict(item.decode(errors="replace").split("=", 1) for item in environ.split(b"\0") if b"=" in item)
    tunables = dict(part.split("=", 1) for part in env.get("GLIBC_TUNABLES", "").split(":") if "=" in part)
    settings = {M_TRIM_THRESHOLD: GLIBC_TRIM_THRESHOLD, M_MMAP_MAX: GLIBC_MMAP_MAX}
    for param, variable, tunable in ((M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
                                     (M_MMAP_MAX, "MALLOC_MMAP_MAX_", "glibc.malloc.mmap_max")):
        value = tunables.get(tunable, env.get(variable, "")).strip()
        if value.isdigit():
            settings[param] = int(value)
    return settings


@contextlib.contextmanager
def heap_reuse(enabled: bool = True) -> Iterator[bool]:
    """Within the block, glibc serves large blocks from its heap and keeps the freed ones there.

    glibc gives every block over its mmap threshold (at most 32 MiB) its own mapping and unmaps it
    when freed; the next allocation is then faulted in and zeroed by the kernel again. An
    optimization step at 1024 px allocates and frees gigabytes of VGG activations and gradients
    this way, and the kernel's faults and zeroing became a large part of each step.
    Within the block (``M_MMAP_MAX`` 0, a 2 GiB trim threshold) the steps reuse the same pages.
    The heap then holds the steps' peak and its fragmentation, and keeps its larger span after
    the block (pages are given back by :func:`release_freed_memory` on exit, but later allocations
    spread over more of them), so it is meant for loops of like-sized steps whose blocks glibc
    would map, not for one-off allocations. Figures: notes/measurements.md ("Heap reuse").

    On exit both are what the process started with (:func:`startup_malloc_settings`: glibc's
    defaults, a 128 KiB trim threshold and 65536 mappings, unless its starting environment set
    them); the mmap threshold keeps the value glibc's adaptive rule had given it but, as after
    any ``mallopt`` call, no longer adapts. Off glibc nothing is changed.

    Parameters
    ----------
    enabled : bool
        False makes the block a no-op (tensors not in host memory, blocks glibc keeps anyway).

    Yields
    ------
    bool
        Whether the heap's parameters were changed.

    Examples
    --------
    >>> with heap_reuse() as changed:
    ...     blocks = [bytearray(40 * 2**20) for _ in range(2)]
    >>> changed in (True, False)
    True
    """
    mallopt = _mallopt() if enabled else None
    if mallopt is None:
        yield False
        return
    before = startup_malloc_settings()
    mallopt(M_TRIM_THRESHOLD, REUSE_TRIM_THRESHOLD)
    mallopt(M_MMAP_MAX, 0)
    try:
        yield True
    finally:
        mallopt(M_MMAP_MAX, before[M_MMAP_MAX])
        mallopt(M_TRIM_THRESHOLD, before[M_TRIM_THRESHOLD])
        release_freed_memory()


def available_gpu_bytes() -> int | None:
    """Free memory of the current CUDA device; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[0])


def check_fits(
    content_shape: tuple[int, int],
    style_shape: tuple[int, int],
    size: int,
    out_size: int | None = None,
    *,
    ram: int | None = None,
    gpu: int | None = None,
    poster_option: Callable[[int], str] | None = None,
    **options,
) -> PeakEstimate:
    """Refuse (:class:`InputError`) a run whose estimated peak exceeds the memory available.

    The run is ``RunSizes(content_shape, style_shape, size, out_size, **options)`` (its other
    fields by name: ``rotate``, ``device``, ``max_search_size``, and a resumed run's saved stages,
    ``nnst_done`` / ``synthesis_done``). ``ram`` / ``gpu``: bytes available (default: measured now,
    under this process's limits too; a check is skipped where unknown). The message names the
    estimate, the memory available and the largest ``--size`` (and ``--out-size``) that would fit.
    ``poster_option``: how to ask for a poster of a given long side where ``--out-size`` is not the
    option that sets it (``--print``: a lower ``--dpi``).
    """
    request = RunSizes(content_shape, style_shape, size, out_size, **options)
    device = request.device
    limit = None  # (room, option, bytes per resident byte) of a ulimit tighter than the machine: measured only
    if ram is None:
        ram, limit = available_ram_bytes(), process_limit_room()
        if limit is not None and ram is not None and limit[0] / limit[2] >= ram:
            limit = None

    def estimate(s: int, o: int | None) -> PeakEstimate:
        # a suggested --size recomputes NNST, and any other size the poster synthesis
        return replace(request, size=s, out_size=o, nnst_done=request.nnst_done and s == size,
                       synthesis_done=request.synthesis_done and s == size and o == out_size).peak()

    def fits(e: PeakEstimate) -> bool:
        return ((ram is None or e.ram * HEADROOM <= ram)
                and (limit is None or e.ram * limit[2] * HEADROOM <= limit[0])
                and (gpu is None or device != "cuda" or e.gpu * HEADROOM <= gpu))

    gpu = (available_gpu_bytes() if device == "cuda" else None) if gpu is None else gpu
    found = estimate(size, out_size)
    if fits(found):
        return found
    on_gpu = device == "cuda" and gpu is not None and found.gpu * HEADROOM > gpu
    by_limit = not on_gpu and limit is not None and found.ram * limit[2] * HEADROOM > limit[0]
    # what is left, in the estimate's terms (a ulimit -v's address space per resident byte)
    have = gpu if on_gpu else limit[0] / limit[2] if by_limit else ram
    hint = _suggestion(size, out_size, estimate, fits, (found.gpu if on_gpu else found.nnst) * HEADROOM > have,
                       poster_option)
    if by_limit:
        room, option, per_resident = limit
        what = "address space" if per_resident != 1 else "memory"
        raise InputError(f"this run needs about {_need(found.ram * per_resident, room)} of {what} but "
                         f"{format_bytes(room)} are left under this process's limit ({option}): {hint}, "
                         f"or raise {option}")
    where, need = ("GPU memory", found.gpu) if on_gpu else ("memory", found.ram)
    raise InputError(f"this run needs about {_need(need, have)} of {where} but {format_bytes(have)} are available: "
                     f"{hint}, or close other programs")


def _need(need: float, have: float) -> str:
    """The estimate for a refusal, with its margin where the estimate alone would fit.

    >>> _need(1.7 * 2**30, 1.8 * 2**30), _need(3 * 2**30, 2 * 2**30)
    ('1.7 GB (1.9 GB with the 10% margin for its error)', '3.0 GB')
    """
    if need > have or need * HEADROOM <= have:
        return format_bytes(need)
    return f"{format_bytes(need)} ({format_bytes(need * HEADROOM)} with the {HEADROOM - 1:.0%} margin for its error)"


def _first_fitting(last: int, fits_at: Callable[[int], bool]) -> int:
    """The smallest ``k`` in ``0 .. last`` with ``fits_at(k)`` (true from some ``k`` on); ``last`` if none is.

    >>> _first_fitting(10**18, lambda k: k >= 12345)
    12345
    """
    low, high = 0, last
    while low < high:
        middle = (low + high) // 2
        if fits_at(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _suggestion(size, out_size, estimate, fits, nnst_too_big: bool, poster_option=None) -> str:
    """The largest ``--size`` (in steps of 64 px) and then ``--out-size`` (steps of 256 px) that fit.

    ``poster_option(o)`` words the poster's long side ``o`` (``o == size``: no poster stage).
    """
    from .config import NNSTConfig, PosterConfig, field_label

    # "--size" on the command line, "size" for a plan (config.values_from)
    size_name, out_name = field_label(NNSTConfig, "size"), field_label(PosterConfig, "out_size")
    s = size
    if nnst_too_big:
        # size, size - 64, ... down to the first at most 64: the largest that fits (the estimate grows
        # with the size), found by bisection; stepping down took for ever from an absurd --size
        last = max(0, -(-(size - 64) // 64))
        s = size - 64 * _first_fitting(last, lambda k: fits(estimate(size - 64 * k, None)))
        if not fits(estimate(s, None)):
            return f"even {size_name} 64 does not fit; use a machine with more memory"
    o = out_size
    if o and o > s:  # out_size, out_size - 256, ..., then s itself
        last = -(-(o - s) // 256)
        o = max(s, o - 256 * _first_fitting(last, lambda k: fits(estimate(s, max(s, out_size - 256 * k)))))
    parts = [f"{size_name} {s}"] if s != size else []
    if out_size and o != out_size:
        if poster_option is not None:
            parts.append(poster_option(o))
        else:
            parts.append(f"{out_name} {o}" if o and o > s else f"no {out_name}")
    return "try " + " ".join(parts) if parts else f"try a smaller {size_name} or {out_name}"
