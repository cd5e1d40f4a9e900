"""Faults end to end (issue 17): bad pixels, full disks, tiny inputs, SIGTERM, two runs at once,
corrupt checkpoints, too little memory or disk, and interrupted posters.

Faults that are impractical to cause for real are injected: a write that raises ``ENOSPC``,
a ``KeyboardInterrupt`` raised by a patched function, a checkpoint truncated on disk, a
small "available memory". Signals and locks use real child processes.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import tifffile
from helpers import image_file, needs_weights
from PIL import Image

import patchsynth
from nnst_hr import disk, memory
from nnst_hr.config import MAX_SIZE
from nnst_hr.errors import InputError
from nnst_hr.files import read_image
from nnst_hr.integrity import is_intact, sidecar
from nnst_hr.lock import run_lock
from nnst_hr.sizes import MIN_INPUT_SIDE, check_input_sizes

ROOT = Path(__file__).resolve().parents[1]
TINY = ("--size", 64, "--steps", 3, "--split-steps", 2)  # a whole run in seconds
TINY_POSTER = (*TINY, "--out-size", 128)


def pair(tmp_path: Path) -> tuple[Path, Path]:
    return image_file(tmp_path / "content.png", 64, 48), image_file(tmp_path / "style.png", 64, 64, seed=1)


class FinishedRun(NamedTuple):
    args: tuple  # the command, to run it again
    output: Path
    expected: np.ndarray  # the output's pixels
    folder: Path  # its run folder


def finished_run(cli, tmp_path: Path, *extra) -> FinishedRun:
    """A tiny poster run of :func:`pair`, done."""
    content, style = pair(tmp_path)
    output = tmp_path / "out.png"
    args = ("run", content, style, "-o", output, *TINY_POSTER, *extra)
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return FinishedRun(args, output, read_image(output), tmp_path / "out.run")


def assert_one_line_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()  # progress lines (no --quiet) may come before the error
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert "Traceback" not in result.output and "internal error" not in result.output


def leftovers(folder: Path) -> list[str]:
    """Temporary files (the atomic writes' ``.NAME.XXXX.tmp*``) and lock files under ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name == "lock")


def cli_command(*args) -> list[str]:
    return [sys.executable, "-c", "from nnst_hr.cli import app; app()", *[str(a) for a in args]]


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


# --------------------------------------------------------------------------- bad pixels, bad -o, tiny inputs


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_tiff_is_refused_naming_the_file(cli, tmp_path, bad):
    pixels = np.full((40, 40, 3), 0.5, np.float32)
    pixels[3, 5, 1] = bad
    content = tmp_path / "content.tif"
    tifffile.imwrite(content, pixels, photometric="rgb")
    with pytest.raises(InputError, match="NaN or infinite"):
        read_image(content)
    finite = tmp_path / "finite.tif"
    tifffile.imwrite(finite, np.where(np.isfinite(pixels), pixels, 0.25).astype(np.float32), photometric="rgb")
    assert read_image(finite)[3, 5, 1] == np.float32(0.25)  # negative control: the same file, finite, reads
    result = cli("run", content, image_file(tmp_path / "style.png", 64, 64), "-o", tmp_path / "out.png", *TINY)
    assert_one_line_error(result, 2, str(content), "NaN or infinite", "re-export")
    assert not (tmp_path / "out.run").exists()


def test_output_naming_a_folder_says_so(cli, tmp_path):
    content, style = pair(tmp_path)
    folder = tmp_path / "results"
    folder.mkdir()
    assert_one_line_error(cli("run", content, style, "-o", folder, *TINY), 2, str(folder), "is a folder", "file name")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("which, shape", [("style", (3, 3)), ("content", (1, 1)), ("content", (200, 15))])
def test_inputs_too_small_to_mean_anything_are_refused(cli, tmp_path, which, shape):
    content, style = pair(tmp_path)
    small = image_file(tmp_path / f"small_{which}.png", shape[1], shape[0])
    args = (small, style) if which == "content" else (content, small)
    result = cli("run", *args, "-o", tmp_path / "out.png", *TINY)
    assert_one_line_error(result, 2, str(small), "too small", "larger image")
    assert not (tmp_path / "out.run").exists()


def test_size_thresholds():
    """Refused below MIN_INPUT_SIDE, one warning naming every input upscaled over 2x, nothing above."""
    edge = MIN_INPUT_SIDE
    with pytest.raises(InputError, match="too small"):
        check_input_sizes({"s.png": (edge - 1, 500)}, size=512)
    assert check_input_sizes({"c.png": (edge, 256), "s.png": (300, 400)}, size=512) == []  # exactly 2x: fine
    assert check_input_sizes({"c.png": (edge, 255), "s.png": (300, 400)}, size=512) == [
        "c.png is 255x16 px, upscaled 2.0x to reach --size 512: expect soft detail; use a larger image or a smaller "
        "--size"]
    # both too small for --size: one fix, one line (was a warning per input)
    assert check_input_sizes({"c.png": (edge, 255), "s.png": (edge, 100)}, size=512) == [
        "c.png (255x16 px) and s.png (100x16 px) are upscaled 2.0x and 5.1x to reach --size 512: expect soft "
        "detail; use larger images or a smaller --size"]


def test_a_run_refused_before_its_work_says_only_why(cli, tmp_path, monkeypatch):
    """`run tiny.png style.png --size 20000` printed an "upscaled" warning per input, then refused the run
    for its memory; a run that passes its checks says its print line and warnings once each, before the work."""
    content, style = pair(tmp_path)
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: 8 * 2**30)
    monkeypatch.setattr(memory, "available_gpu_bytes", lambda: 8 * 2**30)
    for extra in ((), ("--out-size", 30000), ("--jpeg-quality", 50)):
        result = cli("run", content, style, "-o", tmp_path / "out.png", "--size", 20000, *extra)
        assert_one_line_error(result, 2, "this run needs about", "8.0 GB are available: try --size ")
        assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out.run").exists()
    from nnst_hr import run

    def work(*args, **kwargs):  # the checks have passed: stop where the work begins
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "_nnst", work)
    result = cli("run", content, style, "-o", tmp_path / "out.png", "--size", 200, "--print", "4x3in", "--dpi", 30,
                 "--jpeg-quality", 50)
    assert result.exit_code == 130, result.output
    lines = result.stderr.splitlines()
    said = [line for line in lines if line.startswith(("print 4x3in", "warning: "))]
    assert said == [
        "print 4x3in landscape (10.2 x 7.6 cm): 120 x 90 px at 30 dpi; content already at the print's aspect",
        f"warning: --jpeg-quality 50 is ignored: {tmp_path / 'out.png'} is written as PNG; it applies to a .jpg "
        "output",
        f"warning: {content} (64x48 px) and {style} (64x64 px) are upscaled 3.1x to reach --size 200: expect soft "
        "detail; use larger images or a smaller --size",
        "warning: the print (120x90 px at 30 dpi) is smaller than the NNST result (--size 200), so the poster keeps "
        "none of its extra detail: print larger (--print, --dpi) or use --size 120, as good and faster",
    ], result.stderr
    assert lines[:len(said)] == said and lines[len(said)].startswith("interrupted")


# --------------------------------------------------------------------------- full disk


def _disk_full_after(nbytes: int):
    """A replacement for a writer: writes ``nbytes`` to its target, then fails like a full disk."""

    def write(*args, **kwargs):
        target = args[1] if len(args) > 1 and not isinstance(args[0], (str, os.PathLike)) else args[0]
        with open(target, "wb") if isinstance(target, (str, os.PathLike)) else _noclose(target) as fh:
            fh.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


class _noclose:
    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self.fh

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_atomic_write_on_a_full_disk_removes_the_partial_file_and_keeps_the_old_one(tmp_path, code):
    from nnst_hr.errors import DiskFullError
    from nnst_hr.files import atomic_output

    target = tmp_path / "state.npz"
    target.write_bytes(b"the previous version")
    with pytest.raises(DiskFullError, match=r"is full \(writing state.npz\): free at least 3.0 MB") as info:
        with atomic_output(target, overwrite=True, expected_bytes=3 * 2**20 - 5) as tmp:
            tmp.write_bytes(b"\0" * 5000)
            raise OSError(code, os.strerror(code))
    assert info.value.path == target
    assert target.read_bytes() == b"the previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]
    with pytest.raises(OSError) as other:  # negative control: any other OSError is not a full disk
        with atomic_output(target, overwrite=True) as tmp:
            raise OSError(errno.EIO, "I/O error")
    assert not isinstance(other.value, DiskFullError)


@needs_weights
def test_disk_filling_during_the_run_folder_is_one_line_and_leaves_nothing(cli, tmp_path, monkeypatch):
    content, style = pair(tmp_path)
    code = errno.ENOSPC

    def savez(fh, **arrays):
        fh.write(b"\0" * 1000)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(np, "savez", savez)  # the first scale's checkpoint is the first npz saved this way
    result = cli("run", content, style, "-o", tmp_path / "out.png", *TINY)
    assert_one_line_error(result, 2, "is full", "scale0.npz", "free at least", "another -o")
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "out.png").exists()
    assert not (tmp_path / "out.run" / "checkpoints" / "scale0.npz").exists()


@needs_weights
def test_disk_filling_while_the_output_is_replaced_keeps_the_old_output(cli, tmp_path, monkeypatch):
    content, style = pair(tmp_path)
    output = tmp_path / "out.png"
    assert cli("run", content, style, "-o", output, *TINY).exit_code == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    monkeypatch.setattr(Image.Image, "save", _disk_full_after(100))
    result = cli("run", content, style, "-o", output, *TINY, "--overwrite")
    assert_one_line_error(result, 2, "is full", "out.png", str(tmp_path.resolve()))
    assert leftovers(tmp_path) == []
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    changed = {p.name for p in before if after.get(p) != before[p]} | {p.name for p in after if p not in before}
    assert changed <= {"config.json"}, changed  # the image, the states and checkpoints untouched


# --------------------------------------------------------------------------- SIGTERM


def _wait_for(predicate, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@needs_weights
def test_sigterm_stops_like_ctrl_c_and_the_same_command_resumes(tmp_path):
    content, style = pair(tmp_path)
    output = tmp_path / "out.png"
    # scales 64 and 128 px: the signal comes once the 64 px checkpoint is complete, while 128 px runs
    command = cli_command("run", content, style, "-o", output, "--size", 128, "--steps", 60, "--split-steps", 1)
    process = subprocess.Popen(command, env=child_env(), stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "out.run" / "checkpoints" / "scale0.npz"
    _wait_for(lambda: is_intact(checkpoint) if sidecar(checkpoint).exists() else False, 300, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    last = stderr.splitlines()[-1]
    assert last.startswith("terminated (SIGTERM)") and "run the same command again" in last
    assert "Traceback" not in stderr
    assert leftovers(tmp_path) == []
    assert not output.exists()

    again = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "scale 64px: resumed from checkpoint" in again.stderr
    assert read_image(output).shape == (96, 128, 3)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- two runs at once


def test_second_run_on_the_same_output_is_refused_naming_the_owner(tmp_path):
    content, style = pair(tmp_path)
    folder = tmp_path / "out.run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from nnst_hr.lock import run_lock\n"
         f"with run_lock({str(folder)!r}):\n    print('locked', flush=True); time.sleep(120)"],
        env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run(cli_command("run", content, style, "-o", tmp_path / "out.png", *TINY),
                                env=child_env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.splitlines()
        assert len(lines) == 1 and f"process {holder.pid} on" in lines[0] and str(folder) in lines[0], second.stderr
        assert sorted(p.name for p in folder.iterdir()) == ["lock"]  # nothing written by the second run
    finally:
        holder.kill()
        holder.wait()


def test_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    folder = tmp_path / "exp"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from nnst_hr.lock import run_lock\n"
         f"with run_lock({str(folder)!r}):\n    print('locked', flush=True); time.sleep(120)"],
        env=child_env(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(InputError, match=f"process {holder.pid} "):
        with run_lock(folder):
            pass
    holder.send_signal(signal.SIGKILL)  # no clean-up runs: the lock file stays behind
    holder.wait()
    assert f"pid={holder.pid} " in (folder / "lock").read_text()
    with run_lock(folder) as lock:
        assert lock.read_text().startswith(f"pid={os.getpid()} ")
    assert not (folder / "lock").exists()


def test_lock_refused_in_the_same_process_too_and_released_after(tmp_path):
    with run_lock(tmp_path / "f"):
        with pytest.raises(InputError, match="in use"):
            with run_lock(tmp_path / "f"):
                pass
    with run_lock(tmp_path / "f"):  # released: taken again
        pass
    assert not (tmp_path / "f").exists()  # created by the lock and left empty: removed


# --------------------------------------------------------------------------- corrupt checkpoints


@needs_weights
def test_truncated_checkpoints_are_recomputed_to_the_same_result(cli, tmp_path):
    args, output, expected, folder = finished_run(cli, tmp_path)
    names = ["nnst_state.npz", "nnf.npz", "poster_state.npz", "checkpoints/scale0.npz"]
    assert all(is_intact(folder / name) for name in names)
    for name in names:
        path = folder / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        if name.startswith("checkpoints"):  # the scale checkpoints are read only while NNST runs
            (folder / "nnst_state.npz").unlink()
        result = cli(*args, "--overwrite")
        assert result.exit_code == 0, result.output
        warned = [line for line in result.stderr.splitlines() if str(path) in line]
        assert len(warned) == 1 and "truncated or corrupt" in warned[0] and "recomputing" in warned[0], result.stderr
        assert is_intact(path), name
        np.testing.assert_array_equal(read_image(output), expected, err_msg=name)


# --------------------------------------------------------------------------- memory and disk before the work


@needs_weights
def test_a_run_that_cannot_fit_in_memory_is_refused_before_any_work(cli, tmp_path, monkeypatch):
    content, style = pair(tmp_path)
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: 300 * 2**20)
    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", lambda *a, **k: pytest.fail("NNST started"))
    result = cli("run", content, style, "-o", tmp_path / "out.png", *TINY)
    assert_one_line_error(result, 2, "of memory but ", "300.0 MB are available", "close other programs")
    assert not (tmp_path / "out.run").exists()


GIB = 2**30
V1_NO_LIMIT = "9223372036854771712"  # what cgroup v1 writes for "no limit"


def _files(root: Path, files: dict) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize(("membership", "files", "room"), [
    # v2: the job's limit less its usage, its reclaimable page cache counted as free
    ("0::/job\n", {"job/memory.max": f"{4 * GIB}", "job/memory.current": f"{3 * GIB}",
                   "job/memory.stat": f"anon {2 * GIB}\ninactive_file {GIB // 2}\n"}, GIB + GIB // 2),
    # v2: a parent's limit is tighter than the job's own "max"
    ("0::/slurm/job\n", {"slurm/memory.max": f"{2 * GIB}", "slurm/memory.current": f"{GIB}",
                         "slurm/job/memory.max": "max", "slurm/job/memory.current": f"{GIB}"}, GIB),
    # v1: the memory controller's tree; the root has no limit
    ("4:memory:/docker/abc\n3:cpuset:/\n", {"memory/memory.limit_in_bytes": V1_NO_LIMIT,
                                            "memory/memory.usage_in_bytes": f"{50 * GIB}",
                                            "memory/docker/abc/memory.limit_in_bytes": f"{2 * GIB}",
                                            "memory/docker/abc/memory.usage_in_bytes": f"{GIB}"}, GIB),
    # a container's namespaced mount: the group's path is the host's, its files are the root's
    ("4:memory:/host/path/xyz\n", {"memory/memory.limit_in_bytes": f"{3 * GIB}",
                                   "memory/memory.usage_in_bytes": f"{GIB}"}, 2 * GIB),
    ("0::/job\n", {"job/memory.max": "max", "job/memory.current": f"{GIB}"}, None),  # no limit
    ("4:memory:/\n", {"memory/memory.limit_in_bytes": V1_NO_LIMIT, "memory/memory.usage_in_bytes": "1"}, None),
], ids=["v2", "v2 parent", "v1", "v1 namespaced", "v2 no limit", "v1 no limit"])
def test_the_memory_available_is_what_the_processs_cgroup_leaves(tmp_path, monkeypatch, membership, files, room):
    """MemAvailable is the host's: a run in an 8 GB container (or a batch job's --mem) on a large machine
    passed the memory check and was killed by the kernel's OOM killer, with no message."""
    _files(tmp_path / "cg", files)
    _files(tmp_path / "proc", {"cgroup": membership, "meminfo": f"MemTotal: 1\nMemAvailable: {100 * GIB // 1024} kB\n"})
    monkeypatch.setattr(memory, "CGROUP_ROOT", str(tmp_path / "cg"), raising=False)
    monkeypatch.setattr(memory, "PROC_CGROUP", str(tmp_path / "proc" / "cgroup"), raising=False)
    monkeypatch.setattr(memory, "PROC_MEMINFO", str(tmp_path / "proc" / "meminfo"), raising=False)
    assert memory.available_ram_bytes() == (room if room is not None else 100 * GIB)
    if room is not None:  # a run that the machine could hold but the cgroup cannot is refused
        with pytest.raises(InputError, match=f"but {room / GIB:.1f} GB are available"):
            memory.check_fits((900, 1600), (2341, 3200), size=1024)


@pytest.mark.parametrize("limit, option", [("RLIMIT_AS", "ulimit -v"), ("RLIMIT_DATA", "ulimit -d")])
def test_the_memory_available_is_what_this_processs_ulimit_leaves(monkeypatch, limit, option):
    """`ulimit -v 8000000` was not in the check: --size 1024 --out-size 4096 ran, then failed in torch's allocator."""
    import resource

    import psutil

    used = getattr(psutil.Process().memory_info(), "vms" if limit == "RLIMIT_AS" else "data")
    limits = {getattr(resource, limit): (used + 2 * GIB, resource.RLIM_INFINITY)}
    monkeypatch.setattr(resource, "getrlimit", lambda which: limits.get(which, (resource.RLIM_INFINITY,) * 2))
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: 100 * GIB)  # the machine has plenty
    with pytest.raises(InputError) as refused:
        memory.check_fits((900, 1600), (2341, 3200), size=1024, out_size=4096)
    assert f"but 2.0 GB are left under this process's limit ({option}): try --size " in str(refused.value)
    assert str(refused.value).endswith(f", or raise {option}")
    assert memory.process_limit_room()[1] == option
    memory.check_fits((900, 1600), (2341, 3200), size=256)  # what fits under the limit passes
    limits.clear()  # no limit: the machine's figure alone
    assert memory.process_limit_room() is None
    memory.check_fits((900, 1600), (2341, 3200), size=1024, out_size=4096)


def test_under_ulimit_v_the_check_counts_the_address_space_a_run_maps(monkeypatch):
    """`ulimit -v` limits the address space, and a run maps about 1.2x its resident peak (measured VmPeak,
    notes/measurements.md): compared with the resident estimate, a 768 px run passed the check under
    `ulimit -v` 8360 MiB and failed in torch's allocator. Under `ulimit -d` nothing changes."""
    import resource

    import psutil

    shapes = ((900, 1600), (2341, 3200))
    resident = memory.estimate_peak_bytes(*shapes, size=768).ram
    room = int(resident * memory.HEADROOM * 1.1)  # enough for the resident estimate, not for the address space
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: 100 * GIB)
    for limit, option in (("RLIMIT_AS", "ulimit -v"), ("RLIMIT_DATA", "ulimit -d")):
        used = getattr(psutil.Process().memory_info(), "vms" if limit == "RLIMIT_AS" else "data")
        limits = {getattr(resource, limit): (used + room, resource.RLIM_INFINITY)}
        monkeypatch.setattr(resource, "getrlimit",
                            lambda which, limits=limits: limits.get(which, (resource.RLIM_INFINITY,) * 2))
        if option == "ulimit -d":
            memory.check_fits(*shapes, size=768)  # the data segment grows by what is resident
            continue
        with pytest.raises(InputError) as refused:
            memory.check_fits(*shapes, size=768)
        message = str(refused.value)
        virtual = memory.format_bytes(resident * memory.VIRTUAL_PER_RESIDENT)
        margin = memory.format_bytes(resident * memory.VIRTUAL_PER_RESIDENT * memory.HEADROOM)  # 1.2 x fits, 1.32 x not
        assert f"this run needs about {virtual} ({margin} with the 10% margin for its error) of address space but " \
            in message, message
        assert "left under this process's limit (ulimit -v): try --size " in message
        size = _suggested(message, "--size")  # the largest that fits the address space left
        need = memory.estimate_peak_bytes(*shapes, size=size).ram * memory.VIRTUAL_PER_RESIDENT * memory.HEADROOM
        more = memory.estimate_peak_bytes(*shapes, size=size + 64).ram * memory.VIRTUAL_PER_RESIDENT
        assert need <= room < more * memory.HEADROOM, (size, need, room)
        memory.check_fits(*shapes, size=size)


def _suggested(message: str, option: str) -> int:
    return int(message.split(f"{option} ")[1].split()[0].rstrip(","))


def test_memory_suggestion_is_the_largest_size_that_fits():
    shapes = ((900, 1600), (2341, 3200))
    ram = memory.estimate_peak_bytes(*shapes, size=700).ram * memory.HEADROOM
    with pytest.raises(InputError) as info:
        memory.check_fits(*shapes, size=1024, ram=ram)
    size = _suggested(info.value.args[0], "--size")
    assert size == 640  # the largest multiple of 64 below 700
    memory.check_fits(*shapes, size=size, ram=ram)  # accepted
    with pytest.raises(InputError):
        memory.check_fits(*shapes, size=size + 64, ram=ram)


def test_memory_suggestion_lowers_the_poster_first_when_nnst_fits():
    shapes = ((900, 1600), (2341, 3200))
    ram = memory.estimate_peak_bytes(*shapes, size=512, out_size=3000).ram * memory.HEADROOM
    with pytest.raises(InputError) as info:
        memory.check_fits(*shapes, size=512, out_size=4096, ram=ram)
    assert "--size" not in info.value.args[0]
    out_size = _suggested(info.value.args[0], "--out-size")
    assert 3000 - 256 < out_size <= 3000
    memory.check_fits(*shapes, size=512, out_size=out_size, ram=ram)
    with pytest.raises(InputError):
        memory.check_fits(*shapes, size=512, out_size=out_size + 256, ram=ram)


def test_estimate_grows_with_every_size():
    base = memory.estimate_peak_bytes((480, 640), (480, 640), size=512, out_size=2048)
    for kwargs in ({"size": 768, "out_size": 2048}, {"size": 512, "out_size": 4096}):
        bigger = memory.estimate_peak_bytes((480, 640), (480, 640), **kwargs)
        assert bigger.ram > base.ram
    one = memory.estimate_peak_bytes((480, 640), (480, 640), size=512, rotate=False)
    assert one.nnst < base.nnst


def test_release_freed_memory_hands_freed_heap_pages_back():
    import psutil

    process = psutil.Process()
    blocks = [bytearray(b"\x01") * (64 * 2**10) for _ in range(2048)]  # 128 MB of heap blocks, all touched
    del blocks[::2]  # 64 MB freed between live blocks: glibc keeps them for reuse
    before = process.memory_info().rss
    if not memory.release_freed_memory():
        pytest.skip("no malloc_trim in this C library")
    assert before - process.memory_info().rss > 48 * 2**20
    assert len(blocks) == 1024 and all(block[-1] == 1 for block in blocks)  # the live blocks are untouched


def test_memory_estimate_of_a_resume_counts_only_the_stages_that_run():
    shapes, sizes = ((900, 1600), (2341, 3200)), {"size": 1024, "out_size": 4096}
    fresh = memory.estimate_peak_bytes(*shapes, **sizes)
    poster_left = memory.estimate_peak_bytes(*shapes, **sizes, nnst_done=True)
    color_left = memory.estimate_peak_bytes(*shapes, **sizes, nnst_done=True, synthesis_done=True)
    floor = memory.estimate_peak_bytes(*shapes, size=1024, nnst_done=True)  # no poster: only the process
    assert poster_left.nnst == floor.nnst < fresh.nnst
    # the same poster, without what NNST would have left loaded in the process
    assert poster_left.poster == fresh.poster - memory.NNST_LOADED_BYTES == poster_left.ram
    assert floor.nnst <= color_left.poster < fresh.poster
    on_gpu = memory.estimate_peak_bytes(*shapes, **sizes, device="cuda")
    assert on_gpu.gpu > 0 and memory.estimate_peak_bytes(*shapes, **sizes, device="cuda", nnst_done=True).gpu == 0


def test_memory_suggestion_on_a_resume_keeps_the_finished_nnst():
    shapes = ((900, 1600), (2341, 3200))
    ram = memory.estimate_peak_bytes(*shapes, size=1024, out_size=3000, nnst_done=True).ram * memory.HEADROOM
    assert memory.estimate_peak_bytes(*shapes, size=1024).nnst * memory.HEADROOM > ram  # NNST itself would not fit
    with pytest.raises(InputError) as fresh:
        memory.check_fits(*shapes, size=1024, out_size=3000, ram=ram)
    assert _suggested(fresh.value.args[0], "--size") < 1024
    memory.check_fits(*shapes, size=1024, out_size=3000, ram=ram, nnst_done=True)  # the resume fits
    with pytest.raises(InputError) as resumed:
        memory.check_fits(*shapes, size=1024, out_size=4096, ram=ram, nnst_done=True)
    assert "--size" not in resumed.value.args[0]  # another --size would recompute NNST, which does not fit
    out_size = _suggested(resumed.value.args[0], "--out-size")
    assert 3000 - 256 < out_size <= 3000
    memory.check_fits(*shapes, size=1024, out_size=out_size, ram=ram, nnst_done=True)
    with pytest.raises(InputError):
        memory.check_fits(*shapes, size=1024, out_size=out_size + 256, ram=ram, nnst_done=True)


def test_memory_suggestion_counts_the_synthesis_a_changed_out_size_recomputes():
    shapes, done = ((900, 1600), (2341, 3200)), {"nnst_done": True, "synthesis_done": True}
    color_only = memory.estimate_peak_bytes(*shapes, size=1024, out_size=8192, **done).ram * memory.HEADROOM
    memory.check_fits(*shapes, size=1024, out_size=8192, ram=color_only, **done)
    ram = color_only - 2**20
    with pytest.raises(InputError) as info:
        memory.check_fits(*shapes, size=1024, out_size=8192, ram=ram, **done)
    out_size = _suggested(info.value.args[0], "--out-size")
    # the suggested poster is synthesized anew: it fits with its synthesis counted, 256 px more does not
    memory.check_fits(*shapes, size=1024, out_size=out_size, ram=ram, nnst_done=True)
    with pytest.raises(InputError):
        memory.check_fits(*shapes, size=1024, out_size=out_size + 256, ram=ram, nnst_done=True)


@needs_weights
def test_memory_check_of_a_resumed_run_leaves_out_the_finished_nnst(cli, tmp_path, monkeypatch):
    content, style = pair(tmp_path)
    output = tmp_path / "out.png"
    args = ("run", content, style, *TINY_POSTER)
    assert cli(*args, "-o", output).exit_code == 0
    (tmp_path / "out.run" / "poster_state.npz").unlink()  # the poster stage runs again, NNST is resumed
    shapes = ((48, 64), (64, 64))  # the inputs' (H, W)
    fresh = memory.estimate_peak_bytes(*shapes, size=64, out_size=128).ram * memory.HEADROOM
    resumed = memory.estimate_peak_bytes(*shapes, size=64, out_size=128, nnst_done=True).ram * memory.HEADROOM
    assert resumed < fresh
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: int((fresh + resumed) / 2))

    refused = cli(*args, "-o", tmp_path / "other.png")
    assert_one_line_error(refused, 2, "of memory but ", "close other programs")
    assert not (tmp_path / "other.run").exists()
    changed = cli(*args, "-o", output, "--overwrite", "--seed", 7)  # another NNST: its result is not in the folder
    assert_one_line_error(changed, 2, "of memory but ", "close other programs")
    assert is_intact(tmp_path / "out.run" / "nnst_state.npz")  # a refused run leaves the saved NNST alone

    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", lambda *a, **k: pytest.fail("NNST recomputed"))
    result = cli(*args, "-o", output, "--overwrite")
    assert result.exit_code == 0, result.output
    assert "nnst: resumed from the run folder" in result.stderr
    assert read_image(output).shape == (96, 128, 3)


@needs_weights
def test_a_run_that_cannot_fit_on_the_disk_is_refused(cli, tmp_path, monkeypatch):
    content, style = pair(tmp_path)
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 512 * 2**10)
    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", lambda *a, **k: pytest.fail("NNST started"))
    result = cli("run", content, style, "-o", tmp_path / "out.png", *TINY)
    assert_one_line_error(result, 2, "has 512.0 kB free but the output and its run folder need about 1.",
                          "free ", "or choose another -o on another disk")
    assert not (tmp_path / "out.run").exists()


@needs_weights
def test_the_disk_margin_scales_with_what_the_run_writes(cli, tmp_path, monkeypatch):
    """A fixed 16 MB margin refused a 64 px run (well under 1 MB of files) on a disk with 2 MB free, and was
    a rounding error next to a poster's run folder."""
    def written(nnst, out, suffix, scales):  # the files by hand, as estimate_run_bytes's docstring lists them
        (h, w), final = nnst, out or nnst
        folder = 2 * h * w * 3 + 2 * h * w * 12 + scales * h * w * 12 + (h // 4) * (w // 4) * 12
        folder += out[0] * out[1] * 20 if out else 0
        return folder + final[0] * final[1] * 3 * (2 if suffix == ".tif" else 1) + 64 * 1024

    small, large = ((48, 64), None, ".png", 1), ((576, 1024), (2304, 4096), ".tif", 4)
    assert disk.estimate_run_bytes(small[0], small[1], small[2], None, small[3]) == written(*small) + 2**20
    total = disk.estimate_run_bytes(large[0], large[1], large[2], None, large[3])
    assert total == written(*large) + math.ceil(written(*large) * disk.MARGIN_FRACTION) and total - written(
        *large) > 16 * 2**20
    # a CMYK TIFF (--cmyk) has a fourth channel: 2 bytes more per pixel at 16 bits, margin included
    ink = disk.estimate_run_bytes(large[0], large[1], large[2], None, large[3], channels=4)
    with_ink = written(*large) + 2304 * 4096 * 2
    assert ink == with_ink + math.ceil(with_ink * disk.MARGIN_FRACTION)
    content, style = pair(tmp_path)
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 2 * 2**20)

    def reached(*args, **kwargs):
        raise InputError("reached NNST")

    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", reached)
    assert_one_line_error(cli("run", content, style, "-o", tmp_path / "out.png", *TINY), 2, "error: reached NNST")


# --------------------------------------------------------------------------- interrupted poster


@needs_weights
@pytest.mark.parametrize("signal_name", ["KeyboardInterrupt", "Terminated"])
def test_poster_interrupted_then_resumed_equals_an_uninterrupted_run(cli, tmp_path, monkeypatch, signal_name):
    from nnst_hr.errors import Terminated

    content, style = pair(tmp_path)
    reference = tmp_path / "reference.png"
    assert cli("run", content, style, "-o", reference, *TINY_POSTER, "--seed", 3).exit_code == 0

    real, calls = patchsynth.synthesize, []

    def interrupted_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise {"KeyboardInterrupt": KeyboardInterrupt, "Terminated": Terminated}[signal_name]()
        return real(*args, **kwargs)

    monkeypatch.setattr(patchsynth, "synthesize", interrupted_once)
    output = tmp_path / "out.png"
    args = ("run", content, style, "-o", output, *TINY_POSTER, "--seed", 3)
    stopped = cli(*args)
    assert stopped.exit_code == (130 if signal_name == "KeyboardInterrupt" else 143), stopped.output
    assert "run the same command again" in stopped.stderr.splitlines()[-1]
    assert not output.exists() and leftovers(tmp_path) == []

    resumed = cli(*args)
    assert resumed.exit_code == 0, resumed.output
    assert "nnst: resumed from the run folder" in resumed.stderr
    assert len(calls) == 2
    np.testing.assert_array_equal(read_image(output), read_image(reference))


@needs_weights
def test_a_write_refused_by_the_file_system_is_one_line(cli, tmp_path, monkeypatch):
    content, style = pair(tmp_path)

    def refused(self, fp, *args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(fp))

    monkeypatch.setattr(Image.Image, "save", refused)  # nnst.png, the first image of the run folder
    result = cli("run", content, style, "-o", tmp_path / "out.png", *TINY)
    assert_one_line_error(result, 2, "cannot write", "nnst.png", "Read-only file system", "another -o")
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- values, config files, run folders


@pytest.mark.parametrize("option, needle", [
    (("--dpi", 10**9), "--dpi 1000000000 is out of range"),  # was a traceback in the PNG writer, after the work
    (("--seed", -1), "--seed must be between 0"),
    (("--seed", 2**64), "--seed must be between 0"),  # was a traceback in torch's generator
    (("--mask-weight", "nan"), "--mask-weight must be a finite number >= 0, got nan"),  # was accepted
    (("--uniformity", "nan", "--out-size", 128), "--uniformity must be a finite"),  # was refused only after NNST
    (("--max-search-size", 8, "--out-size", 128), "--max-search-size must be at least 32"),  # "PosterConfig.max_..."
    (("--steps", -1), "--steps must not be negative, got -1"),
    # float32 made it infinite: NaN energies and a poster of arbitrary patches, said to be fine
    (("--nnst-weight", "1e308", "--out-size", 128), "--nnst-weight must be at most 1e+06 (a weight that large"),
])
def test_option_values_out_of_range_are_refused_before_any_work(cli, tmp_path, option, needle):
    content, style = pair(tmp_path)
    result = cli("run", content, style, "-o", tmp_path / "out.png", *TINY, *option)
    assert_one_line_error(result, 2, needle)
    assert not (tmp_path / "out.run").exists()


@pytest.mark.parametrize("section, key, value, needle", [
    ("nnst", "size", "abc", "NNSTConfig.size: must be int, got str"),
    ("nnst", "guide_mode", "medium", "NNSTConfig.guide_mode: must be one of"),  # was run as "soft"
    ("poster", "render", "paint", "PosterConfig.render: must be one of"),
    ("nnst", "coarsest", 0, "NNSTConfig.coarsest must be at least"),  # hung for ever
    ("nnst", "lr", float("nan"), "NNSTConfig.lr must be a positive finite number"),
    ("nnst", "lr", 1e300, "NNSTConfig.lr must be a positive finite number up to 1, got 1e+300"),  # torch overflowed
    ("poster", "patch_size", 4, "PosterConfig.patch_size must be a positive odd"),
    ("poster", "source_blur", 1e308, "PosterConfig.source_blur must be at most 64 (px;"),  # ended a whole experiment
    ("nnst", "color_sharpness", 1e308, "NNSTConfig.color_sharpness must be at most 1e+06"),  # a NaN color stage
    (None, "dpi", "300", "dpi: must be float (or null)"),
    (None, "content", 5, "content: must be str (or null)"),
    # these named the run command's options ("--seed must be ...", "--print 'A9' ...") and some not the file
    ("nnst", "seed", -1, "NNSTConfig.seed must be between 0 and"),
    ("nnst", "steps", -1, "NNSTConfig.steps must not be negative"),
    ("poster", "uniformity", -1.0, "PosterConfig.uniformity must be a finite number >= 0"),
    ("poster", "max_search_size", 8, "PosterConfig.max_search_size must be at least 32"),
    (None, "print", "A9", "print 'A9' is not a print size"),
    (None, "dpi", 0, "dpi 0 is out of range"),
    (None, "jpeg_quality", 0, "jpeg_quality 0 is out of range"),
    ("poster", "out_size", 256, "print sets the output size; leave out PosterConfig.out_size"),  # with print = A4
])
def test_config_json_with_a_wrong_value_names_the_file_and_the_entry(cli, tmp_path, section, key, value, needle):
    content, style = pair(tmp_path)
    data = {"nnst": {"size": 64, "steps": 2, "split_steps": 2}, "poster": {},
            "content": str(content), "style": str(style)}
    (data[section] if section else data)[key] = value
    if key == "out_size":
        data["print"] = "A4"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data))
    result = cli("run", "--config", config, "-o", tmp_path / "out.png", "-q")
    assert_one_line_error(result, 2, f"{config}: {needle}", "fix or remove")
    assert " --" not in result.stderr.split("; fix or remove")[0]  # no option named for an entry of the file
    assert not (tmp_path / "out.run").exists()


def test_weights_sharpness_and_blur_are_bounded_where_float32_and_the_blur_kernel_still_hold():
    from nnst_hr.config import MAX_SOURCE_BLUR, MAX_WEIGHT, NNSTConfig, PosterConfig

    for name in ("nnst_weight", "mask_weight", "uniformity", "style_weight"):
        PosterConfig(**{name: MAX_WEIGHT}).validate()  # the largest passes
        with pytest.raises(InputError, match=re.escape("must be at most 1e+06 (a weight that large")):
            PosterConfig(**{name: MAX_WEIGHT * 1.5}).validate()
    PosterConfig(source_blur=MAX_SOURCE_BLUR).validate()
    NNSTConfig(color_sharpness=MAX_WEIGHT).validate()
    with pytest.raises(InputError, match="color_sharpness must be at most"):
        NNSTConfig(color_sharpness=float(np.finfo(np.float32).max) * 2).validate()  # infinite in float32


@pytest.mark.parametrize("gone, label", [("content", "CONTENT"), ("style", "STYLE"), ("guide", "--guide")])
def test_an_input_of_config_json_moved_since_is_named_with_where_its_path_came_from(cli, tmp_path, gone, label):
    """Was "/old/photo.png: no such file; check the path": a path the user never typed in this command."""
    content, style = pair(tmp_path)
    masks = tmp_path / "masks"
    masks.mkdir()
    data = {"nnst": {"size": 64, "steps": 2, "split_steps": 2}, "poster": {}, "content": str(content),
            "style": str(style), "guide": str(masks)}
    data[gone] = str(tmp_path / "moved" / "away")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data))
    result = cli("run", "--config", config, "-o", tmp_path / "out.png", "-q")
    assert_one_line_error(result, 2, f"error: {tmp_path / 'moved' / 'away'} ({label} of the run in {config}) no "
                                     f"longer exists; give {label} on the command line")
    assert not (tmp_path / "out.run").exists()


def test_a_file_where_the_run_folder_goes_is_one_line(cli, tmp_path):
    content, style = pair(tmp_path)
    (tmp_path / "out.run").write_text("not a folder")
    result = cli("run", content, style, "-o", tmp_path / "out.png", *TINY)
    assert_one_line_error(result, 2, str(tmp_path / "out.run"), "is a file", "another -o")
    assert (tmp_path / "out.run").read_text() == "not a folder"


@needs_weights
def test_run_folder_state_from_another_version_or_garbled_is_recomputed(cli, tmp_path):
    """An unreadable config.json, intact .npz files without the arrays this version reads, a scale
    checkpoint of another shape: each is recomputed with one warning, to the same output."""
    from nnst_hr.files import save_npz

    args, output, expected, folder = finished_run(cli, tmp_path)
    (folder / "config.json").write_text("{garbled")
    result = cli(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert "config.json is unreadable" in result.stderr and "recomputing every stage" in result.stderr
    np.testing.assert_array_equal(read_image(output), expected)
    for name, arrays in [("nnst_state.npz", {"old": np.zeros(3)}), ("poster_state.npz", {"old": np.zeros(3)})]:
        save_npz(folder / name, **arrays)
        result = cli(*args, "--overwrite")
        assert result.exit_code == 0, result.output
        assert f"{folder / name} lacks" in result.stderr, result.stderr
        np.testing.assert_array_equal(read_image(output), expected, err_msg=name)
    save_npz(folder / "checkpoints" / "scale0.npz", image=np.zeros((5, 5, 3), np.float32))
    (folder / "nnst_state.npz").unlink()
    result = cli(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert "the saved state scale0 is (5, 5, 3)" in result.stderr, result.stderr
    np.testing.assert_array_equal(read_image(output), expected)


@needs_weights
def test_a_poster_state_holding_another_poster_is_not_taken_as_saved(cli, tmp_path, monkeypatch):
    """An intact poster_state.npz (its checksum matches) whose image is not this run's poster:
    the memory check counts the synthesis, and the run recomputes it, with a warning, to the
    poster of an uninterrupted run. It was taken as saved and used as it was."""
    from nnst_hr.files import save_npz

    args, output, expected, folder = finished_run(cli, tmp_path, "--overwrite")  # expected: (96, 128, 3)
    state = folder / "poster_state.npz"
    shapes, sizes = ((48, 64), (64, 64)), {"size": 64, "out_size": 128, "nnst_done": True}
    synthesis = memory.estimate_peak_bytes(*shapes, **sizes).ram * memory.HEADROOM
    color_only = memory.estimate_peak_bytes(*shapes, **sizes, synthesis_done=True).ram * memory.HEADROOM
    assert color_only < synthesis
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: int((color_only + synthesis) / 2))
    resumed = cli(*args)  # the control: this run's own poster is taken, only its color stage runs
    assert resumed.exit_code == 0 and "poster: synthesis resumed" in resumed.stderr, resumed.output

    wrong = [np.zeros((5, 5, 3), np.float32), np.zeros((96, 128, 3), np.uint8)]  # another size; a hand edit
    for image in wrong:
        save_npz(state, image=image, field=np.zeros((*image.shape[:2], 2), np.int32))
        refused = cli(*args)
        assert_one_line_error(refused, 2, "of memory but ", "close other programs")
        assert f"{state} holds a poster of {image.shape} {image.dtype}" in refused.stderr, refused.stderr
        assert is_intact(folder / "nnst_state.npz")  # the NNST result stays
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: None)  # unknown: no memory check
    for image in wrong:
        save_npz(state, image=image, field=np.zeros((*image.shape[:2], 2), np.int32))
        result = cli(*args)
        assert result.exit_code == 0, result.output
        warned = [line for line in result.stderr.splitlines() if str(state) in line]
        assert len(warned) == 1 and "recomputing it" in warned[0], result.stderr
        assert "poster: synthesis resumed" not in result.stderr
        np.testing.assert_array_equal(read_image(output), expected, err_msg=str(image.shape))
        with np.load(state) as saved:
            assert saved["image"].shape == expected.shape and saved["image"].dtype == np.float32


@needs_weights
def test_an_nnst_state_of_another_shape_or_type_is_recomputed(cli, tmp_path, monkeypatch):
    """Intact nnst_state.npz / nnf.npz (checksums match, every array there) holding another run's
    result or a hand edit: each is warned about in one line and recomputed, to the output of an
    uninterrupted run, and the memory check counts the NNST stage. They were taken as saved: an
    image or field of another size went on into the poster stage."""
    from nnst_hr.files import save_npz

    args, output, expected, folder = finished_run(cli, tmp_path, "--overwrite")
    with np.load(folder / "nnst_state.npz") as state, np.load(folder / "nnf.npz") as nnf:
        state, nnf = dict(state), dict(nnf)
    assert state["raw"].shape == (48, 64, 3) and nnf["nnf"].shape == (12, 16, 3)
    shapes, sizes = ((48, 64), (64, 64)), {"size": 64, "out_size": 128}
    everything = memory.estimate_peak_bytes(*shapes, **sizes).ram * memory.HEADROOM
    resuming = memory.estimate_peak_bytes(*shapes, **sizes, nnst_done=True, synthesis_done=True).ram * memory.HEADROOM
    assert resuming < everything
    enough_to_resume = int((resuming + everything) / 2)
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: enough_to_resume)
    resumed = cli(*args)  # the control: this run's own state is taken, and fits
    assert resumed.exit_code == 0 and "nnst: resumed" in resumed.stderr, resumed.output
    pointing_out = nnf["nnf"].copy()
    pointing_out[3, 4, 1] = 64  # one row below the 64 px style
    wrong = [  # (file, arrays replaced, what the warning says)
        ("nnst_state.npz", {"raw": np.zeros((5, 5, 3), np.float32)}, "holds a raw image of (5, 5, 3) float32"),
        ("nnst_state.npz", {"image": (state["image"] * 255).astype(np.uint8)}, "holds an image of (48, 64, 3) uint8"),
        ("nnst_state.npz", {"objective": np.zeros(3)}, "holds an objective of (3,)"),
        ("nnf.npz", {"nnf": np.zeros((5, 5, 3), np.int32)}, "holds a field of (5, 5, 3) int32"),
        ("nnf.npz", {"nnf": nnf["nnf"].astype(np.float32)}, "holds a field of (12, 16, 3) float32"),
        ("nnf.npz", {"content_size": np.array([96, 128], np.int32)}, "was made for a content_size of (96, 128)"),
        ("nnf.npz", {"nnf": pointing_out}, "holds a field pointing outside the style"),
    ]
    saved = {"nnst_state.npz": state, "nnf.npz": nnf}
    for name, arrays, says in wrong:
        save_npz(folder / name, **{**saved[name], **arrays})
        monkeypatch.setattr(memory, "available_ram_bytes", lambda: enough_to_resume)  # NNST counted: refused
        refused = cli(*args)
        assert_one_line_error(refused, 2, "of memory but ", "close other programs")
        assert f"{folder / name} {says}" in refused.stderr, refused.stderr
        save_npz(folder / name, **{**saved[name], **arrays})  # the refused run removed it
        monkeypatch.setattr(memory, "available_ram_bytes", lambda: None)  # unknown: no memory check
        result = cli(*args)
        assert result.exit_code == 0, result.output
        warned = [line for line in result.stderr.splitlines() if str(folder) in line]
        assert len(warned) == 1 and says in warned[0] and warned[0].endswith("recomputing it"), result.stderr
        assert "nnst: resumed" not in result.stderr
        np.testing.assert_array_equal(read_image(output), expected, err_msg=says)
        with np.load(folder / "nnst_state.npz") as now, np.load(folder / "nnf.npz") as field:
            # resumed from the scale checkpoints: the same bits (each scale ends on its saved state's bands)
            np.testing.assert_array_equal(now["raw"], state["raw"], err_msg=says)
            np.testing.assert_array_equal(field["nnf"], nnf["nnf"], err_msg=says)
            np.testing.assert_array_equal(field["content_size"], nnf["content_size"], err_msg=says)


def test_metrics_refuses_bad_seeds_tiny_images_and_a_field_of_another_content(cli, tmp_path):
    from nnst_hr.nnf import save_field

    content, style = pair(tmp_path)
    tiny = image_file(tmp_path / "tiny.png", 1, 1)
    base = ("metrics", content, "--content", content, "--style", style)
    assert_one_line_error(cli(*base, "--seed", -1), 2, "--seed must be between 0")  # was a NumPy traceback
    assert_one_line_error(cli(*base, "--raw", tiny), 2, str(tiny), "too small")  # was a torch traceback
    field = tmp_path / "nnf.npz"  # made for a square content: content.png is 64x48
    save_field(field, np.zeros((16, 16, 3), np.int32), (64, 64), (64, 64))
    result = cli(*base, "--guide", _label_maps(tmp_path / "masks"), "--field", field)
    assert_one_line_error(result, 2, str(field), "made for a content of 64x64 px", str(content))


def test_torch_running_out_of_memory_is_one_line(cli, tmp_path, monkeypatch):
    from nnst_hr import scores

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 90000000000 bytes.\nmore detail")

    monkeypatch.setattr(scores, "score_image", out_of_memory)
    content, style = pair(tmp_path)
    result = cli("metrics", content, "--content", content, "--style", style)
    assert_one_line_error(result, 2, "out of memory", "can't allocate memory", "smaller --size")


CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB.\nGPU 0 has a total capacity of 8 GiB"
PRINT_HINT = "use a smaller --size, a lower --dpi or a smaller --print, or close other programs"


@pytest.mark.parametrize(("options", "error", "hint"), [
    ((), MemoryError, "use a smaller --size, or close other programs"),
    (("--out-size", 128), RuntimeError, "use a smaller --size or --out-size, or close other programs"),
    (("--print", "4x3in", "--dpi", 20), MemoryError, PRINT_HINT),
    (("--print", "4x3in", "--dpi", 20), RuntimeError, PRINT_HINT),
], ids=["no poster", "out-size", "print", "print, torch"])
def test_running_out_of_memory_names_the_options_that_set_the_sizes(cli, tmp_path, monkeypatch, options, error, hint):
    """A run that runs out of memory midway names the options it was given: a print's poster
    size comes from --print and --dpi (--out-size is refused there), a run without a poster has
    only --size. Every run was told "use a smaller --size or --out-size"."""
    import torch

    def out_of_memory(*args, **kwargs):
        raise MemoryError() if error is MemoryError else torch.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", out_of_memory)
    content, style = pair(tmp_path)
    args = ("run", content, style, "-o", tmp_path / "out.png", *TINY, *options)
    result = cli(*args)
    detail = "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB.); " if error is RuntimeError else ""
    assert_one_line_error(result, 2, f"error: {detail or 'out of memory; '}{hint}")
    assert result.stderr.splitlines()[-1].endswith(hint)
    if "--print" in options:  # from a print run's config.json too: the options it reads count
        result = cli("run", "--config", tmp_path / "out.run" / "config.json")
        assert_one_line_error(result, 2, PRINT_HINT)


def test_an_experiment_running_out_of_memory_names_the_plan_options(cli, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr("nnst_hr.experiment.run_plan", out_of_memory)
    result = cli("experiment", tmp_path / "plan.toml", "-o", tmp_path / "results")
    assert_one_line_error(result, 2, "error: out of memory; use a smaller size or out_size in the plan, or close")


ADDRESS_SPACE = 700 * 2**20  # a ulimit -v that loads Python, NumPy and typer, but not torch's libraries


@pytest.mark.parametrize("command", [("run", "c.png", "s.png", "-o", "o.png"), ("experiment", "plan.toml", "-o", "r"),
                                     ("metrics", "o.png", "--content", "c.png", "--style", "s.png")])
def test_too_small_an_address_space_limit_to_load_torch_is_one_line(tmp_path, command):
    """Under ``ulimit -v`` (a batch system's memory limit) loading torch failed ("failed to map segment
    from shared object"): a traceback of 50 to 240 lines, and importing Numba to judge the error
    (patchsynth's error class) failed again inside the handler."""
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, resource.getrlimit(resource.RLIMIT_AS)[1]))

    done = subprocess.run(cli_command(*command), env=child_env(), cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, preexec_fn=limited)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: out of memory loading the program's libraries ("), lines[0]
    assert lines[0].endswith("); this process may map only 700.0 MB (ulimit -v): raise that limit"), lines[0]


def test_weights_that_torch_cannot_load_give_one_line(cli, tmp_path):
    garbage = tmp_path / "vgg.pth"
    for text in (b"not a state dict", b"hello"):  # torch's unpickler: "Unsupported operand 110", KeyError('104')
        garbage.write_bytes(text)
        assert_one_line_error(cli("weights", "--weights", garbage), 2, str(garbage),
                              "not a readable torch state dict (not a file that torch.save wrote)")
    assert_one_line_error(cli("weights", "--weights", tmp_path), 2, str(tmp_path), "is a folder")


def test_experiment_cache_naming_a_file_is_one_line(cli, tmp_path):
    plan = _tiny_plan(tmp_path)
    cache = tmp_path / "cache"
    cache.write_text("a file")
    result = cli("experiment", plan, "-o", tmp_path / "results", "--cache", cache, "-q")
    assert_one_line_error(result, 2, str(cache), "is a file", "--cache")
    assert cache.read_text() == "a file"


def test_an_experiment_cache_or_results_folder_it_cannot_write_is_refused_before_any_work(cli, tmp_path, monkeypatch):
    """A read-only cache failed once NNST had run, naming -o; a read-only cache holding every entry is only read."""
    plan = _tiny_plan(tmp_path)
    cache, locked = tmp_path / "cache", set()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) not in locked and access(path, mode, **kw))
    locked.add(cache)  # as `chattr +i cache` or a folder of another user (root passes a mode 555 one)
    cache.mkdir()
    result = cli("experiment", plan, "-o", tmp_path / "results", "--cache", cache, "-q")
    assert_one_line_error(result, 2, f"--cache {cache}: {cache} is not writable", "--cache DIR", "permissions")
    assert list(cache.iterdir()) == [] and not (tmp_path / "results" / "runs").exists()
    locked.clear()
    assert cli("experiment", plan, "-o", tmp_path / "results", "--cache", cache, "-q").exit_code == 0
    locked.add(cache)  # every entry there: nothing to write in it
    assert cli("experiment", plan, "-o", tmp_path / "again", "--cache", cache, "-q").exit_code == 0
    locked.add(tmp_path)  # the results folder would be created in it
    result = cli("experiment", plan, "-o", tmp_path / "third", "--cache", cache, "-q")
    assert_one_line_error(result, 2, f"-o {tmp_path / 'third'}: {tmp_path}, where it would be created, is not "
                          "writable", "-o DIR")


# --------------------------------------------------------------------------- files and folders in the way, odd inputs


def test_an_output_that_is_a_folder_or_under_a_file_is_one_line(cli, tmp_path, monkeypatch):
    """`-o .` was a traceback (a folder has no run folder beside it); `-o FILE/out.png` said that
    the folder FILE does not exist."""
    content, style = pair(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli("run", content, style, "-o", ".", *TINY), 2, ". is a folder; give a file name")
    blocking = tmp_path / "notes.txt"
    blocking.write_text("mine")
    for output in (blocking / "out.png", blocking / "sub" / "out.png"):
        result = cli("run", content, style, "-o", output, *TINY)
        assert_one_line_error(result, 2, f"{output}: {blocking} is a file, not a folder; choose another folder")
    assert blocking.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "notes.txt", "style.png"]


def test_images_and_masks_whose_header_claims_billions_of_pixels_are_one_line(cli, tmp_path):
    """Pillow refuses such a file as it opens it, with its own exception: `masks check` and a run's masks
    (and read_image_shape) let it through as a traceback."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    content, style = pair(tmp_path)
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.new("L", (64, 64)).save(masks / "style.png")
    bomb = masks / "content.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    assert_one_line_error(cli("masks", "check", masks), 2, str(bomb), "too many pixels")
    result = cli("run", content, style, "-o", tmp_path / "out.png", "--guide", masks, *TINY)
    assert_one_line_error(result, 2, str(bomb), "too many pixels")
    assert_one_line_error(cli("masks", "check", tmp_path, "--content", bomb), 2, str(bomb), "too many pixels")
    assert not (tmp_path / "out.png").exists()


def test_a_symbolic_link_loop_or_a_name_too_long_is_one_line(cli, tmp_path, monkeypatch):
    """Tracebacks: pathlib's resolve() raised a RuntimeError on a link loop (before Python 3.13), and
    exists() an OSError on a name over 255 bytes, wherever a path was first looked at."""
    content, style = pair(tmp_path)
    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", lambda *a, **k: pytest.fail("NNST started"))
    loop, long = tmp_path / "loop.png", tmp_path / ("x" * 300 + ".png")
    loop.symlink_to(loop)
    for args in ((loop, style, "-o", tmp_path / "a.png"), (content, style, "-o", loop)):
        assert_one_line_error(cli("run", *args, *TINY), 2, str(loop), "fix or remove the symbolic link")
    for args in ((long, style, "-o", tmp_path / "a.png"), (content, long, "-o", tmp_path / "a.png"),
                 (content, style, "-o", long)):
        assert_one_line_error(cli("run", *args, *TINY), 2, str(long), "give a shorter path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "loop.png", "style.png"]


@pytest.mark.parametrize("name, kind", [
    ("nnst.png", "folder"), ("nnst_state.npz", "folder"), ("nnf.npz.sha256", "folder"), ("config.json", "folder"),
    ("checkpoints", "file"), ("checkpoints/scale0.npz", "folder"), ("lock", "folder"),
])
def test_a_run_folder_with_a_file_or_folder_in_the_way_is_refused_before_any_work(cli, tmp_path, monkeypatch,
                                                                                   name, kind):
    """Each was found by the stage that writes there, after its work: a traceback (checkpoints,
    nnst_state.npz, lock) or "is a folder; give a file name" naming a file the user never gave."""
    content, style = pair(tmp_path)
    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", lambda *a, **k: pytest.fail("NNST started"))
    path = tmp_path / "out.run" / name
    path.parent.mkdir(parents=True)
    path.mkdir() if kind == "folder" else path.write_text("mine")
    result = cli("run", content, style, "-o", tmp_path / "out.png", *TINY)
    assert_one_line_error(result, 2, f"{path} is a {kind} where", "move it away")
    assert path.is_dir() if kind == "folder" else path.read_text() == "mine"
    assert not (tmp_path / "out.png").exists()


def _tiny_plan(tmp_path: Path) -> Path:
    content, style = pair(tmp_path)
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[[pair]]\ncontent = "{content.name}"\nstyle = "{style.name}"\n'
                    "[fixed]\nsize = 64\nsteps = 2\nsplit_steps = 2\n")
    return plan


def _nnst_key(plan: Path) -> str:
    from nnst_hr.experiment.graph import build_graph, read_inputs
    from nnst_hr.experiment.plan import load_plan

    loaded = load_plan(plan)
    return next(key for key in build_graph(loaded, read_inputs(loaded)) if key.startswith("nnst-"))


@pytest.mark.parametrize("where, kind, options, says", [
    ("results/runs", "file", (), "is a file where the experiment writes a folder"),  # were tracebacks once
    ("results/runs/run001", "file", (), "is a file where the experiment writes a folder"),  # every stage had run
    ("results/results.csv", "folder", (), "is a folder where the experiment writes a file"),
    ("notes.txt", "file", ("-o", "notes.txt/results"), "-o {tmp}/notes.txt/results: {tmp}/notes.txt is a file"),
    ("notes.txt", "file", ("--cache", "notes.txt/cache"), "--cache {tmp}/notes.txt/cache: {tmp}/notes.txt is a "
                                                          "file"),
    ("results/cache/{key}.json", "folder", (), "is a folder where the stage cache keeps a file"),
    ("results/cache/.lock", "folder", (), "is a folder where the stage cache keeps its lock file"),
])
def test_an_experiment_with_a_file_or_folder_in_the_way_is_refused_before_any_work(cli, tmp_path, monkeypatch,
                                                                                   where, kind, options, says):
    from nnst_hr.experiment import stages

    plan = _tiny_plan(tmp_path)
    path = tmp_path / where.format(key=_nnst_key(plan))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir() if kind == "folder" else path.write_text("mine")
    ran = []
    monkeypatch.setattr(stages, "nnst", lambda *args: ran.append(args) or pytest.fail("NNST started"))
    given = tuple(str(tmp_path / o) if "/" in o else o for o in options)
    output = () if "-o" in given else ("-o", tmp_path / "results")
    result = cli("experiment", plan, *output, *given, "-q")
    assert_one_line_error(result, 2, says.format(tmp=tmp_path) if "{tmp}" in says else f"{path} {says}")
    assert not ran
    assert path.is_dir() if kind == "folder" else path.read_text() == "mine"


@pytest.mark.parametrize("make, says", [
    (lambda tmp: _tiny_plan(tmp), "is not a run folder's config.json (not JSON: "),  # an experiment plan
    (lambda tmp: pair(tmp)[0], "is not a run folder's config.json (not text)"),  # an image
    (lambda tmp: tmp, "is a folder; give the config.json in an earlier run's folder (OUTPUT.run/config.json)"),
])
def test_a_config_of_another_format_names_the_file_to_give(cli, tmp_path, make, says):
    """Was "not a readable config.json ('utf-8' codec can't decode byte 0x89 ...)", naming no fix."""
    config = make(tmp_path)
    result = cli("run", "--config", config, *TINY)
    assert_one_line_error(result, 2, f"{config} {says}", "OUTPUT.run/config.json")


def test_a_run_folder_given_for_its_config_json_names_it(cli, tmp_path):
    folder = tmp_path / "out.run"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert_one_line_error(cli("run", "--config", folder), 2, f"{folder} is a folder; give {folder / 'config.json'}")


def test_an_output_inside_another_runs_folder_is_refused(cli, tmp_path):
    """`run --config p1.run/config.json -o p1.run/x.png` made p1.run/x.run/ inside p1's run folder."""
    content, style = pair(tmp_path)
    folder = tmp_path / "p1.run"
    (folder / "deeper").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    for output in (folder / "x.png", folder / "deeper" / "x.png"):
        result = cli("run", content, style, "-o", output, *TINY)
        assert_one_line_error(result, 2, f"the output {output} is in the run folder {folder} of another run",
                              f"outside it (e.g. beside it, in {tmp_path})")
    assert sorted(p.name for p in folder.rglob("*")) == ["config.json", "deeper"]
    (tmp_path / "plain.run").mkdir()  # a folder named so, but no run's: allowed
    assert cli("run", content, style, "-o", tmp_path / "plain.run" / "x.png", *TINY, "-q").exit_code == 0


def test_config_without_o_writes_its_recorded_output_only_from_that_outputs_run_folder(cli, tmp_path, monkeypatch):
    """`run --config X.run/config.json` wrote the absolute output recorded there, also after X.run was moved:
    to the old place, starting again beside it instead of resuming from the moved folder."""
    from nnst_hr import run as run_module

    got = {}
    monkeypatch.setattr(run_module, "run_files", lambda c, s, o, options, **kwargs: got.update(output=o, **kwargs))
    content, style = pair(tmp_path)
    config = tmp_path / "out.run" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"nnst": {"size": 64}, "poster": {}, "content": str(content),
                                  "style": str(style), "output": str(tmp_path / "out.png")}))
    result = cli("run", "--config", config)
    assert result.exit_code == 0 and Path(got["output"]) == tmp_path / "out.png", result.output
    # said by the run once its checks pass (below), not before them
    assert got["info"] == [f"writing {tmp_path / 'out.png'}, the output recorded in {config} (-o to write elsewhere)"]
    moved = tmp_path / "moved" / "p1.run"
    moved.parent.mkdir()
    config.parent.rename(moved)
    got.clear()
    result = cli("run", "--config", moved / "config.json")
    assert_one_line_error(result, 2, f"records the output {tmp_path / 'out.png'}, whose run folder is "
                          f"{tmp_path / 'out.run'}, not {moved} (moved or copied since)",
                          f"give -o (-o {moved.with_suffix('.png')} resumes from it)")
    assert not got
    assert cli("run", "--config", moved / "config.json", "-o", moved.with_suffix(".png")).exit_code == 0  # the fix
    assert Path(got["output"]) == moved.with_suffix(".png")


def test_option_errors_come_before_any_info_or_warning_line(cli, tmp_path):
    """`metrics PRINT --size 0` printed the print's info line before its error; `experiment --workers 0` (or
    --workers with --scheduler) the plan's warnings before its."""
    from nnst_hr.printing import plan_print

    content, style = pair(tmp_path)
    height, width = plan_print((48, 64), "4x3in", 20, "crop").pixels
    printed = image_file(tmp_path / "print.png", width, height, seed=3)
    metrics = ("metrics", printed, "--content", content, "--style", style, "--print", "4x3in", "--dpi", 20)
    result = cli(*metrics, "--size", 0)
    assert_one_line_error(result, 2, "--size must be at least 32 px, got 0")
    assert result.stderr.splitlines()[0].startswith("error: "), result.stderr
    assert "info: " in cli(*metrics, "--size", 20000).stderr  # the control: a size in range, refused for memory later
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[[pair]]\ncontent = "{content.name}"\nstyle = "{style.name}"\n[fixed]\nsize = 64\n'
                    "out_size = 32\n")  # a poster smaller than the NNST result: a warning
    for options, says in (((("--workers", 0)), "--workers must be 1 or more (got 0)"),
                          (("--workers", 1, "--scheduler", "tcp://127.0.0.1:1"), "exclude each other")):
        result = cli("experiment", plan, "-o", tmp_path / "results", *options)
        assert_one_line_error(result, 2, says)
        assert len(result.stderr.splitlines()) == 1, result.stderr
    (tmp_path / "cache").write_text("a file")  # the control: a refusal after reading the plan follows its warning
    assert "warning: " in cli("experiment", plan, "-o", tmp_path / "results", "--cache", tmp_path / "cache").stderr


def test_metrics_field_that_is_not_an_nnf_npz_is_one_line(cli, tmp_path):
    """An empty file was a traceback (EOFError); a PNG "contains pickled (object) data"; an npz
    without the arrays "('nnf')"."""
    from nnst_hr.files import save_npz

    content, style = pair(tmp_path)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    state = tmp_path / "state.npz"
    save_npz(state, image=np.zeros((2, 2, 3), np.float32))
    sizes = tmp_path / "sizes.npz"
    np.savez(sizes, nnf=np.zeros((12, 16, 3), np.int32), content_size=np.array([1.5, 2.0]),
             style_size=np.array([64, 64]))
    run = tmp_path / "out.run"
    run.mkdir()
    (run / "nnf.npz").write_bytes(b"")
    base = ("metrics", content, "--content", content, "--style", style, "--guide", _label_maps(tmp_path / "masks"),
            "--field")
    for field, says in [(empty, "is empty"), (content, "is not an .npz archive"),
                        (state, "lacks nnf, content_size, style_size"), (sizes, "its content_size is [1.5, 2.0]"),
                        (run, f"is a folder; give {run / 'nnf.npz'}")]:
        assert_one_line_error(cli(*base, field), 2, f"{field}{'' if says.startswith('its') else ' '}", says)


def _label_maps(folder: Path) -> Path:
    folder.mkdir()
    for name, height in (("content.png", 48), ("style.png", 64)):
        labels = np.zeros((height, 64, 3), np.uint8)
        labels[:, 32:] = (255, 0, 0)
        labels[:, :32] = (0, 0, 255)
        Image.fromarray(labels).save(folder / name)
    return folder


def test_masks_given_as_a_file_or_in_a_format_a_run_refuses_are_named(cli, tmp_path):
    content, style = pair(tmp_path)
    masks = _label_maps(tmp_path / "masks")
    assert cli("masks", "check", masks, "--content", content, "--style", style).exit_code == 0  # the control
    # a file for the folder: "mask folder ... does not exist"
    assert_one_line_error(cli("run", content, style, "-o", tmp_path / "out.png", "--guide", content, *TINY), 2,
                          f"{content} is a file, not a mask folder")
    result = cli("masks", "check", content)
    assert result.exit_code == 2 and f"{content} is a file, not a mask folder" in result.output
    # a content that a run refuses passed the check: "OK: 2 labels guide the transfer"
    rgb = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    for name, kind in (("anim.gif", "GIF"), ("photo.bmp", "BMP")):
        Image.fromarray(rgb).save(tmp_path / name)
        result = cli("masks", "check", masks, "--content", tmp_path / name, "--style", style)
        assert result.exit_code == 2 and f"{tmp_path / name} is a {kind} image" in result.output, result.output
    # a folder named as the mask was taken for a folder of region masks ("of different forms");
    # a mask in another format was not named ("no content mask")
    (masks / "content.png").unlink()
    (masks / "content.png").mkdir()
    result = cli("masks", "check", masks)
    assert result.exit_code == 2 and f"{masks / 'content.png'} is a folder, not a mask image" in result.output
    (masks / "content.png").rmdir()
    Image.fromarray(rgb).save(masks / "content.gif")
    result = cli("masks", "check", masks)
    assert result.exit_code == 2 and "(content.gif: not a mask format; save it as PNG)" in result.output


def test_a_link_in_a_cache_folder_is_named_as_a_link(cli, tmp_path):
    """A link named as an entry's file was listed as if it were one: "it holds nnst-....json"."""
    cache = tmp_path / "cache"
    cache.mkdir()
    target = tmp_path / "mine.json"
    target.write_text("mine")
    link = cache / f"nnst-{'a' * 32}.json"
    link.symlink_to(target)
    for command in ("info", "prune"):
        result = cli("cache", command, cache, *(("--yes",) if command == "prune" else ()))
        assert_one_line_error(result, 2, f"it holds {link.name} (a link)")
    assert link.is_symlink() and target.read_text() == "mine"


def test_an_input_gone_between_reading_the_plan_and_reading_the_inputs_is_one_line(cli, tmp_path, monkeypatch):
    """Was "cannot read an input: [Errno 2] No such file or directory: '...'", naming no fix."""
    from nnst_hr.experiment import driver

    plan = _tiny_plan(tmp_path)
    read_plan = driver.load_plan

    def then_gone(path):
        loaded = read_plan(path)
        (tmp_path / "content.png").unlink()
        return loaded

    monkeypatch.setattr(driver, "load_plan", then_gone)
    result = cli("experiment", plan, "-o", tmp_path / "results", "-q")
    assert_one_line_error(result, 2, f"{tmp_path / 'content.png'} no longer exists; restore it or fix the plan")
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- what a run reads, plans, options


def test_an_output_among_what_the_run_reads_is_refused_even_with_overwrite(cli, tmp_path):
    """`-o masks/content.png --overwrite` replaced the content mask; an output anywhere in the masks folder
    changed the folder every rerun keys its resume on; an input in the run folder was replaced (nnst.png)
    or removed (checkpoints/)."""
    content, style = pair(tmp_path)
    masks = _label_maps(tmp_path / "masks")
    before = {p.name: p.read_bytes() for p in masks.iterdir()}
    for output in (masks / "content.png", masks / "style.png", masks / "result.png", tmp_path / "masks.png"):
        result = cli("run", content, style, "--guide", masks, "-o", output, "--overwrite", *TINY)
        if output.name == "masks.png":  # its run folder masks.run/ is beside the masks, not in them: the control
            assert result.exit_code != 2 or "masks folder" not in result.stderr, result.output
            continue
        assert_one_line_error(result, 2, f"the output {output} is in the masks folder {masks} (--guide)",
                              "choose an output path outside it")
    assert {p.name: p.read_bytes() for p in masks.iterdir()} == before  # no result.run/ either
    run = tmp_path / "out.run"
    (run / "checkpoints").mkdir(parents=True)
    inside = run / "checkpoints" / "content.png"
    inside.write_bytes(content.read_bytes())
    assert_one_line_error(cli("run", inside, style, "-o", tmp_path / "out.png", *TINY), 2,
                          f"the input {inside} is in the run folder {run}", "move it out")
    moved = run / "masks"
    masks.rename(moved)
    assert_one_line_error(cli("run", content, style, "--guide", moved, "-o", tmp_path / "out.png", *TINY), 2,
                          f"the masks folder {moved} (--guide) is in the run folder {run}")
    assert_one_line_error(cli("run", content, style, "--guide", run, "-o", tmp_path / "out.png", *TINY), 2,
                          f"the run folder {run} is the masks folder (--guide)")
    assert inside.read_bytes() == content.read_bytes() and sorted(p.name for p in run.iterdir()) == [
        "checkpoints", "masks"]


@pytest.mark.parametrize("kind", ["an image", "binary"])
def test_a_file_that_is_not_a_plan_says_so_and_what_to_give(cli, tmp_path, kind):
    """Was "not valid TOML ('utf-8' codec can't decode byte 0x89 in position 0: ...)", naming no fix."""
    given = pair(tmp_path)[0] if kind == "an image" else tmp_path / "plan.bin"
    if kind == "binary":
        given.write_bytes(bytes(range(128, 256)))
    what = "is an image, not an experiment plan" if kind == "an image" else "is not an experiment plan"
    says = f"{what} (a plan is a TOML text file); give an experiment's plan file (plan.toml)"
    (tmp_path / "cache").mkdir()
    assert_one_line_error(cli("cache", "prune", tmp_path / "cache", "--keep", given), 2, f"--keep {given} {says}")
    assert_one_line_error(cli("experiment", given, "-o", tmp_path / "results"), 2, f"{given} {says}")
    assert not (tmp_path / "results").exists()


def test_stage_messages_of_an_experiment_name_the_plan_keys(monkeypatch):
    """An experiment's failed runs read "at --size 64 ...; raise --size" and "use --device cpu"."""
    import torch

    from nnst_hr.config import NNSTConfig, field_label, values_from
    from nnst_hr.device import resolve_device
    from nnst_hr.experiment import stages

    thin = {"content": np.zeros((40, 400, 3), np.float32), "style": np.zeros((64, 64, 3), np.float32),
            "mask_content": None}
    params = {name: getattr(NNSTConfig(size=64), name) for name in stages.NNST_PARAMS}
    with pytest.raises(InputError, match="^the content is too thin: at size 64 it is 64x6 px.*; raise size or "):
        stages.nnst(thin, params)  # before the network is built: no weights needed
    with pytest.raises(InputError, match="^the content is too thin: at --size 64 "):
        from nnst_hr.nnst import synthesize_nnst

        synthesize_nnst(thin["content"], thin["style"], NNSTConfig(size=64))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with values_from("plan"), pytest.raises(InputError, match="^device cuda was asked for .*; use device cpu"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="^--device cuda was asked for .*; use --device cpu"):
        resolve_device("cuda")
    assert field_label(NNSTConfig, "size") == "--size"  # the block is left


def test_a_thin_input_is_refused_before_the_run_folder_is_written(cli, tmp_path):
    """Refused by NNST, after config.json was written."""
    style = pair(tmp_path)[1]
    thin = image_file(tmp_path / "thin.png", 400, 40)
    result = cli("run", thin, style, "-o", tmp_path / "out.png", *TINY)
    assert_one_line_error(result, 2, f"{thin} is too thin: at --size 64 it is 64x6 px", "raise --size")
    assert not (tmp_path / "out.run").exists()


def test_print_or_out_size_given_replaces_the_other_one_of_config_json(cli, tmp_path, monkeypatch):
    """`run --config poster.run/config.json --print A4` was "--print sets the output size; leave out --out-size",
    an option not given; `--fit pad` without a print was ignored."""
    from nnst_hr import run as run_module

    content, style = pair(tmp_path)
    assert_one_line_error(cli("run", content, style, "-o", tmp_path / "c.png", "--print", "A4", "--out-size", 96),
                          2, "--print sets the output size; leave out --out-size")  # both given: still refused
    assert_one_line_error(cli("run", content, style, "-o", tmp_path / "c.png", "--fit", "pad", *TINY), 2,
                          "--fit applies to a print: give --print too, or leave out --fit")
    got = {}
    monkeypatch.setattr(run_module, "run_files", lambda c, s, o, options, **kwargs: got.update(options=options))
    base = {"nnst": {"size": 64}, "content": str(content), "style": str(style)}
    poster, printed = tmp_path / "poster.json", tmp_path / "print.json"
    poster.write_text(json.dumps({**base, "poster": {"out_size": 128}}))
    printed.write_text(json.dumps({**base, "poster": {}, "print": "A4", "dpi": 20}))
    assert cli("run", "--config", poster, "-o", tmp_path / "a.png", "--print", "A4").exit_code == 0
    assert got["options"].print_size == "A4" and got["options"].poster.out_size is None
    assert cli("run", "--config", printed, "-o", tmp_path / "b.png", "--out-size", 96).exit_code == 0
    assert got["options"].print_size is None and got["options"].poster.out_size == 96
    assert cli("run", "--config", printed, "-o", tmp_path / "d.png", "--fit", "pad").exit_code == 0  # its print


def test_no_guide_drops_the_masks_folder_config_json_recorded(cli, tmp_path, monkeypatch):
    """`run --config guided.run/config.json` reran with the recorded --guide, and nothing dropped it (an empty
    --guide '' is refused): `--no-guide` does, even where the recorded folder has gone since."""
    from nnst_hr import run as run_module

    content, style = pair(tmp_path)
    masks = tmp_path / "masks"
    masks.mkdir()
    got = {}
    monkeypatch.setattr(run_module, "run_files", lambda c, s, o, options, **kwargs: got.update(options=options))
    config = tmp_path / "config.json"
    base = {"nnst": {"size": 64}, "poster": {}, "content": str(content), "style": str(style)}
    config.write_text(json.dumps({**base, "guide": str(masks)}))
    assert cli("run", "--config", config, "-o", tmp_path / "a.png").exit_code == 0
    assert got.pop("options").guide == masks  # the negative control: the recorded masks
    assert cli("run", "--config", config, "-o", tmp_path / "a.png", "--no-guide").exit_code == 0
    assert got.pop("options").guide is None
    config.write_text(json.dumps({**base, "guide": str(tmp_path / "moved")}))
    assert cli("run", "--config", config, "-o", tmp_path / "a.png", "--no-guide").exit_code == 0
    assert got.pop("options").guide is None
    assert cli("run", content, style, "-o", tmp_path / "a.png", "--no-guide").exit_code == 0  # unguided anyway
    assert got.pop("options").guide is None
    assert_one_line_error(cli("run", "--config", config, "-o", tmp_path / "a.png", "--guide", masks, "--no-guide"),
                          2, f"--no-guide and --guide {masks} contradict each other; give one")
    assert not got

def test_an_absurd_size_is_refused_at_once(cli, tmp_path, monkeypatch):
    """`run --size 10**20` stepped its memory suggestion down 64 px at a time (for ever); `metrics --size 10**20`
    was a torch traceback, and `--size 20000` was killed for memory."""
    content, style = pair(tmp_path)
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: 8 * 2**30)
    monkeypatch.setattr(memory, "available_gpu_bytes", lambda: 8 * 2**30)  # where there is a GPU
    for command in (("run", content, style, "-o", tmp_path / "out.png"),
                    ("metrics", content, "--content", content, "--style", style)):
        assert_one_line_error(cli(*command, "--size", 20000), 2, "this run needs about",
                              "8.0 GB are available: try --size ")
        for size in (10**20, 99999999, MAX_SIZE + 1):  # beyond any machine: one line, not an "upscaled" warning first
            result = cli(*command, "--size", size)
            assert_one_line_error(result, 2, f"--size must be at most {MAX_SIZE} px", f"got {size}")
            assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out.run").exists()
    shapes = ((48, 64), (64, 64))
    with pytest.raises(InputError) as info:
        memory.check_fits(*shapes, size=10**20, ram=memory.estimate_peak_bytes(*shapes, size=700).ram * memory.HEADROOM)
    assert _suggested(info.value.args[0], "--size") == 10**20 - 64 * ((10**20 - 700) // 64 + 1)  # <= 700, in 64s


def test_an_absurd_poster_is_refused_before_any_input_is_read(cli, tmp_path, monkeypatch):
    """--out-size (and a print's size) had no upper bound: `--out-size 10**20` read the inputs, then asked for
    more than 1000 PB; a JPEG poster over 65500 px failed in its write after the whole run; a --max-search-size
    over about 23170 px overflows patchsynth's int32 indices. Each is one line before any input is read, and
    the largest value that is allowed gets through to the reading."""
    from nnst_hr import run
    from nnst_hr.config import MAX_OUT_SIZE, MAX_SEARCH_SIZE, PosterConfig

    def read_image(*args, **kwargs):
        raise InputError("reading the inputs")

    monkeypatch.setattr(run, "read_image", read_image)
    content, style = pair(tmp_path)
    png, jpg = tmp_path / "out.png", tmp_path / "out.jpg"
    for output, options, refused in [
        (png, ("--out-size", MAX_OUT_SIZE + 1), f"--out-size must be at most {MAX_OUT_SIZE} px"),
        (png, ("--out-size", 10**20), f"--out-size must be at most {MAX_OUT_SIZE} px"),
        (png, ("--print", "A0", "--dpi", 5601), "--print A0 at 5601 dpi is 262189 px long, more than the 262144 px "
         "a poster may have; use a smaller print or --dpi 5600 or less"),
        (png, ("--print", "1000000x10mm", "--dpi", 10), "use a smaller print"),
        (png, ("--out-size", 8192, "--max-search-size", MAX_SEARCH_SIZE + 1),
         f"--max-search-size must be at most {MAX_SEARCH_SIZE} px"),
        (jpg, ("--out-size", 65501), f"--out-size 65501 makes an image 65501 px long, but a JPEG holds at most "
         f"65500 px a side: write {png} or .tif, or use --out-size 65500 or less"),
        (jpg, ("--print", "A0", "--dpi", 1400), "--print A0 at 1400 dpi makes an image 65535 px long, but a JPEG "
         "holds at most 65500 px a side: write"),
        (jpg, ("--print", "A0", "--dpi", 1400), "or use a smaller print or --dpi 1399 or less"),
        (png, ("--out-size", MAX_OUT_SIZE), "reading the inputs"),  # the largest of each: allowed
        (png, ("--print", "A0", "--dpi", 5600), "reading the inputs"),
        (png, ("--out-size", 8192, "--max-search-size", MAX_SEARCH_SIZE), "reading the inputs"),
        (jpg, ("--out-size", 65500), "reading the inputs"),
        (jpg, ("--print", "A0", "--dpi", 1399), "reading the inputs"),
        (tmp_path / "out.tif", ("--out-size", 65501), "reading the inputs"),
    ]:
        result = cli("run", content, style, "-o", output, *options)
        assert_one_line_error(result, 2, refused)
        assert result.stderr.count("\n") == 1, result.stderr
    with pytest.raises(InputError, match=f"PosterConfig.out_size must be at most {MAX_OUT_SIZE} px"):
        PosterConfig(out_size=MAX_OUT_SIZE + 1).validate(naming="config")  # the Python API's configs
    with pytest.raises(InputError, match="a JPEG holds at most 65500 px"):  # and its runs
        run.run_files(content, style, jpg, run.RunOptions(poster=PosterConfig(out_size=70000)))


def test_weights_given_as_an_image_say_so(cli, tmp_path):
    """Was "... (Weights only load failed. In PyTorch 2.6, we changed the default value of ... Re-running
    `torch.load` with `weights_only` set to `False` will likely succeed ...); replace or delete it"."""
    content, style = pair(tmp_path)
    assert_one_line_error(cli("weights", "--weights", content), 2,
                          f"{content} is an image, not a torch state dict; give the weights file (.pth)")
    empty = tmp_path / "vgg.pth"
    empty.write_bytes(b"")
    assert_one_line_error(cli("weights", "--weights", empty), 2, "(the file is empty)")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state dict")
    result = cli("weights", "--weights", garbage)
    assert_one_line_error(result, 2, f"{garbage} is not a readable torch state dict")
    assert "weights_only" not in result.stderr


# --------------------------------------------------------------------------- metrics: what belongs together


def test_a_print_is_made_from_its_nnst_result_and_another_aspect_is_not():
    """`made_from` holds for every print's NNST result (crop or pad, prints of A-series and other
    aspects, NNST sizes from 64 px) and its exact pixels; an NNST result of another aspect fails."""
    from nnst_hr.memory import long_side_shape
    from nnst_hr.printing import plan_print
    from nnst_hr.scores import made_from

    for content in ((900, 1600), (1600, 900), (1000, 1000), (333, 1000), (48, 64)):
        for spec, dpi in (("A4", 150), ("A2", 300), ("A0", 72), ("30x20cm", 100), ("4x3in", 20)):
            for fit in ("crop", "pad"):
                plan = plan_print(content, spec, dpi, fit)
                for size in (64, 200, 512, 1024):
                    nnst = long_side_shape(plan.fitted_shape, size)
                    assert made_from(nnst, plan.pixels), (content, spec, dpi, fit, size)
                    other = long_side_shape((plan.fitted_shape[0] * 3 // 4, plan.fitted_shape[1]), size)
                    if min(plan.pixels) >= 1000:  # the negative control: a quarter shorter
                        assert not made_from(other, plan.pixels), (content, spec, dpi, fit, size)
    assert made_from((64, 48), (256, 192)) and not made_from((48, 64), (256, 192))  # turned by 90 degrees


def test_made_from_holds_for_our_runs_at_every_size_and_not_for_8_px_more_at_small_sizes():
    """`made_from` allowed 8 px (or 1 %) more than a pixel of rounding at any size: a 48x64 content and a 56x64
    image passed. Every picture our runs make (NNST at any --size from 32 px, posters of any size, odd sides)
    passes as made from its content and its NNST result; at small sizes an image 8 px off does not."""
    from nnst_hr.memory import long_side_shape
    from nnst_hr.poster import scaled_shape
    from nnst_hr.scores import made_from

    for content in ((48, 64), (64, 48), (17, 64), (33, 47), (47, 33), (900, 1600), (1175, 1600), (16, 100), (99, 99)):
        for size in (32, 33, 47, 64, 100, 257, 1024):
            nnst = long_side_shape(content, size)  # as NNST resizes its content
            for out in (32, 48, 63, 64, 97, 128, 4096, 7016):  # as the poster stage sizes the poster
                poster = scaled_shape(nnst, out / max(nnst))
                assert made_from(content, poster) and made_from(nnst, poster), (content, size, out)
            assert made_from(content, nnst), (content, size)
    for long_side in range(32, 129):  # an image of a 48x64 content's long side, 8 px off on its short side
        exact = 0.75 * long_side
        for short in (math.floor(exact - 8), math.ceil(exact + 8)):
            assert not made_from((48, 64), (short, long_side)), (short, long_side)
            assert not made_from((64, 48), (long_side, short)), (short, long_side)
    assert made_from((48, 64), (49, 64)) and not made_from((48, 64), (56, 64))


def test_metrics_refuses_raw_or_upsampled_from_of_another_aspect(cli, tmp_path, monkeypatch):
    """A --raw or --upsampled-from of another picture was scored: the objective of another image, or
    a detail_bicubic of a stretched one."""
    from nnst_hr import scores

    score_image, got = scores.score_image, {}
    monkeypatch.setattr(scores, "score_image", lambda *a, **k: got.update(k) or {"objective": 1.0})
    content, style = pair(tmp_path)
    image = image_file(tmp_path / "poster.png", 192, 96)
    square = image_file(tmp_path / "square.png", 64, 64, seed=2)
    half = image_file(tmp_path / "half.png", 96, 48, seed=3)
    base = ("metrics", image, "--content", content, "--style", style)
    assert_one_line_error(cli(*base, "--raw", square), 2, f"--raw {square} (64x64 px) has another aspect than "
                          f"{image} (192x96)", "give the nnst_raw.png of the run that made")
    assert_one_line_error(cli(*base, "--upsampled-from", square), 2, "--upsampled-from", "give the nnst.png")
    assert not got
    assert cli(*base, "--raw", half, "--upsampled-from", half).exit_code == 0  # the control: the same aspect
    assert got["raw"].shape == got["upsampled_from"].shape == (48, 96, 3)
    with pytest.raises(InputError, match="upsampled_from of 64x64 px has another aspect than the image"):
        score_image(np.zeros((96, 192, 3), np.float32), np.zeros((48, 64, 3), np.float32),
                           np.zeros((64, 64, 3), np.float32), upsampled_from=np.zeros((64, 64, 3), np.float32))


def test_metrics_refuses_a_field_without_masks(cli, tmp_path, monkeypatch):
    """--field only adds label_agreement, which needs --guide: without it, the field was ignored."""
    from nnst_hr import scores
    from nnst_hr.nnf import save_field

    got = {}
    monkeypatch.setattr(scores, "score_image", lambda *a, **k: got.update(k) or {"objective": 1.0})
    content, style = pair(tmp_path)
    field = tmp_path / "nnf.npz"
    save_field(field, np.zeros((12, 16, 3), np.int32), (48, 64), (64, 64))
    base = ("metrics", content, "--content", content, "--style", style, "--field", field)
    assert_one_line_error(cli(*base), 2, "--field", "add --guide")
    assert not got
    assert cli(*base, "--guide", _label_maps(tmp_path / "masks")).exit_code == 0  # the control
    assert got["field"].shape == (12, 16, 3) and got["masks"] is not None


# --------------------------------------------------------------------------- sizes in messages


def test_absurd_sizes_are_printed_in_petabytes_at_most():
    """The memory line printed "needs about 49012345678901234567890123456789012.0 GB"."""
    from nnst_hr.disk import check_disk_space, format_bytes
    from nnst_hr.experiment.housekeeping import human_bytes

    assert [format_bytes(n) for n in (0, 1023, 1024, 10 * 2**20, 1023.96 * 2**30, 3 * 2**40, 5 * 2**50)] == [
        "0 B", "1023 B", "1.0 kB", "10.0 MB", "1.0 TB", "3.0 TB", "5.0 PB"]
    assert format_bytes(1023 * 2**50) == "1023.0 PB" and format_bytes(2**60) == "more than 1000 PB"
    assert format_bytes(2**20 + 1, up=True) == "1.1 MB" and format_bytes(2**20 + 1) == "1.0 MB"
    assert human_bytes(5.3e43) == format_bytes(5.3e43) == "more than 1000 PB"
    with pytest.raises(InputError) as info:
        memory.check_fits((48, 64), (64, 64), size=10**15, ram=2**30)
    assert "needs about more than 1000 PB of memory but 1.0 GB are available" in info.value.args[0]
    with pytest.raises(InputError, match=r"has \d+\.\d [kMGTP]?B free but .* need about more than 1000 PB"):
        check_disk_space(Path("out.png"), 10**40)


# --------------------------------------------------------------------------- where a device came from


def test_a_cuda_device_from_config_json_or_a_plan_is_named_where_it_was_set(cli, tmp_path, monkeypatch):
    """config.json's device "cuda" on a machine without CUDA read "--device cuda was asked for", an option
    never given; a plan's device = "cuda" failed every run at its NNST stage, naming no key."""
    import torch

    from nnst_hr import run as run_module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    got = {}
    monkeypatch.setattr(run_module, "run_files", lambda c, s, o, options, **kwargs: got.update(options=options))
    content, style = pair(tmp_path)
    config = tmp_path / "out.run" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"nnst": {"size": 64, "device": "cuda"}, "poster": {}, "content": str(content),
                                  "style": str(style), "output": str(tmp_path / "out.png")}))
    result = cli("run", "--config", config)
    assert_one_line_error(result, 2, f"NNSTConfig.device in {config} is 'cuda'", "add --device cpu")
    assert "--device cuda" not in result.stderr and not got
    assert cli("run", "--config", config, "--device", "cpu").exit_code == 0  # the fix it names
    assert got["options"].nnst.device == "cpu"

    plan = tmp_path / "plan.toml"
    text = f'[[pair]]\ncontent = "{content}"\nstyle = "{style}"\n[fixed]\nsize = 64\nsteps = 2\nsplit_steps = 2\n'
    for extra, where in (('device = "cuda"\n', "fixed.device"), ("[axes]\ndevice = [\"cpu\", \"cuda\"]\n",
                                                                 "axes.device[1]")):
        plan.write_text(text + extra)
        assert_one_line_error(cli("experiment", plan, "-o", tmp_path / "results"), 2,
                              f"{where}: cuda, but no CUDA GPU is available", 'use device = "cpu"')
        assert not (tmp_path / "results").exists()
    plan.write_text(text.replace("[fixed]", 'device = "cuda"\n[fixed]'))
    assert_one_line_error(cli("experiment", plan, "-o", tmp_path / "results"), 2, "pair[0].device: cuda")


# --------------------------------------------------------------------------- experiment inputs in its results


def test_experiment_inputs_where_it_writes_are_refused_and_elsewhere_in_results_allowed(cli, tmp_path, monkeypatch):
    """An input in results/runs/ or results/cache/, a report file, a masks folder holding the results:
    the experiment overwrote them, `cache prune` refused the cache, or each run changed the next one's
    stage keys. results/inputs/ and results/masks/ are never written: allowed."""
    from nnst_hr.experiment import driver

    monkeypatch.setattr(driver, "build_graph", lambda *a: pytest.fail("work started"))
    results = tmp_path / "results"
    for where in ("runs/run001", "cache", "inputs"):
        (results / where).mkdir(parents=True)
    content, style = pair(tmp_path)
    masks = _label_maps(results / "masks")
    (results / "sheet.png").write_bytes(style.read_bytes())
    for name in ("runs/run001/result.png", "cache/c.png", "inputs/c.png"):
        (results / name).write_bytes(content.read_bytes())
    plan = tmp_path / "plan.toml"

    def refused(content_path, style_path=style, guide=None, *options):
        guide_line = f'guide = "{guide}"\n' if guide else ""
        plan.write_text(f'[[pair]]\ncontent = "{content_path}"\nstyle = "{style_path}"\n{guide_line}'
                        "[fixed]\nsize = 64\nsteps = 2\nsplit_steps = 2\n")
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        result = cli("experiment", plan, "-o", results, *options)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
        return result

    run001 = results / "runs" / "run001" / "result.png"
    assert_one_line_error(refused(run001), 2, f"pair[0].content: {run001} is in {results / 'runs'}, where the "
                          "experiment writes", f"move it out (e.g. to {results / 'inputs'})")
    assert_one_line_error(refused(results / "cache" / "c.png"), 2, "pair[0].content:", "is in the stage cache")
    assert_one_line_error(refused(content, results / "sheet.png"), 2, "pair[0].style:", "which the experiment writes")
    other_cache = tmp_path / "shared"
    other_cache.mkdir()
    (other_cache / "s.png").write_bytes(style.read_bytes())
    assert_one_line_error(refused(content, other_cache / "s.png", None, "--cache", other_cache), 2,
                          "pair[0].style:", f"is in the stage cache {other_cache}")
    assert_one_line_error(refused(content, style, tmp_path), 2, f"pair[0].guide: the masks folder {tmp_path} "
                          f"holds -o {results}", "choose -o outside it")
    assert_one_line_error(refused(content, style, results / "runs"), 2, "pair[0].guide:", "is in")
    # the controls: inputs and masks kept in results/inputs/ and results/masks/ reach the work
    with pytest.raises(pytest.fail.Exception, match="work started"):
        driver.run_plan(_written(plan, results / "inputs" / "c.png", style, masks), results, quiet=True)


def _written(plan: Path, content: Path, style: Path, masks: Path) -> Path:
    plan.write_text(f'[[pair]]\ncontent = "{content}"\nstyle = "{style}"\nguide = "{masks}"\n'
                    "[fixed]\nsize = 64\nsteps = 2\nsplit_steps = 2\n")
    return plan


# --------------------------------------------------------------------------- odd plans


def test_a_plan_whose_run_cannot_fit_in_memory_is_refused_before_any_work(cli, tmp_path, monkeypatch):
    """`size = 9223372036854775807` in a plan was a torch traceback from its NNST stage (`size =
    100000000` a failed allocation), after any earlier runs' work; the hint names the plan's keys. (A
    size above config.MAX_SIZE, or an out_size above MAX_OUT_SIZE, is now refused as out of range:
    test_experiment's bad plans.)"""
    from nnst_hr.experiment import driver

    monkeypatch.setattr(memory, "available_ram_bytes", lambda: 8 * 2**30)
    monkeypatch.setattr(memory, "available_gpu_bytes", lambda: 8 * 2**30)
    monkeypatch.setattr(driver, "build_graph", lambda *a: pytest.fail("work started"))
    content, style = pair(tmp_path)
    plan = tmp_path / "plan.toml"
    for fixed in ("size = 30000", "size = 64\nout_size = 200000"):
        plan.write_text(f'[[pair]]\ncontent = "{content}"\nstyle = "{style}"\n[fixed]\n{fixed}\n')
        result = cli("experiment", plan, "-o", tmp_path / "results")
        assert_one_line_error(result, 2, "run 1 (content / style): this run needs about", "8.0 GB are available",
                              "try size " if "size = 3" in fixed else "try out_size ")
        assert "--" not in result.stderr and not (tmp_path / "results").exists()
    plan.write_text(f'[[pair]]\ncontent = "{content}"\nstyle = "{style}"\n[fixed]\nsize = 64\n')
    with pytest.raises(pytest.fail.Exception, match="work started"):  # the control: a run that fits
        driver.run_plan(plan, tmp_path / "results", quiet=True)


def test_a_plan_whose_concurrent_stages_cannot_fit_is_refused_with_fewer_workers(cli, tmp_path, monkeypatch):
    """The memory check counted one stage at a time, but --workers 4 runs up to 4 at once, each in its own
    process: every stage fitted alone, and together they were killed by the kernel."""
    from nnst_hr.experiment import driver

    content, style = pair(tmp_path)
    peak = memory.estimate_peak_bytes((48, 64), (64, 64), 64, rotate=False).ram  # one run's only big stage
    monkeypatch.setattr(memory, "available_ram_bytes", lambda: int(2.5 * memory.HEADROOM * peak))
    monkeypatch.setattr(driver, "usable_cores", lambda: 8)
    monkeypatch.setattr(driver, "build_graph", lambda *a: pytest.fail("work started"))
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[[pair]]\ncontent = "{content}"\nstyle = "{style}"\n[fixed]\nsize = 64\nrotate = false\n'
                    "[axes]\nseed = [1, 2, 3, 4]\ncolor = [true, false]\n")  # 4 NNST stages; color shares them
    result = cli("experiment", plan, "-o", tmp_path / "results", "--workers", 4)
    assert_one_line_error(result, 2, "--workers 4 runs up to 4 stages at once", "use --workers 2,")
    assert not (tmp_path / "results").exists()
    result = cli("experiment", plan, "-o", tmp_path / "results", "--workers", 8)  # the plan has 4 such stages
    assert_one_line_error(result, 2, "--workers 8 runs up to 4 stages at once", "use --workers 2,")
    for workers in (None, 2):  # the controls: one stage at a time, and two that fit together
        with pytest.raises(pytest.fail.Exception, match="work started"):
            driver.run_plan(plan, tmp_path / "results", quiet=True, workers=workers)


def test_a_plan_of_too_many_runs_is_refused_with_its_grid(tmp_path):
    """Five axes of ten values (100000 runs) spent minutes validating before any work (and months running)."""
    from nnst_hr.experiment.plan import MAX_RUNS, load_plan

    content, style = pair(tmp_path)
    plan = tmp_path / "plan.toml"
    axes = "".join(f"{name} = [{', '.join(str(v) for v in range(1, 11))}]\n"
                   for name in ("seed", "steps", "split_steps", "finest_steps", "split_refresh"))
    plan.write_text(f'[[pair]]\ncontent = "{content}"\nstyle = "{style}"\n[axes]\n{axes}')
    grid = r"\(1 pair x 10 seed x 10 steps x 10 split_steps x 10 finest_steps x 10 split_refresh\)"
    with pytest.raises(InputError, match=rf"^axes: the plan makes 100000 runs {grid}, more than {MAX_RUNS}"):
        load_plan(plan)
    plan.write_text(f'[[pair]]\ncontent = "{content}"\nstyle = "{style}"\n[axes]\n{axes.splitlines()[0]}\n')
    assert len(load_plan(plan).runs()) == 10  # the control


_RGB = np.random.default_rng(0).random((40, 48, 3), dtype=np.float32)


@pytest.mark.parametrize(("bad", "needle"), [
    ((_RGB * 65535).astype(np.uint16), r"is of type uint16: .*image\.astype\(np\.float32\) / 65535"),
    ((_RGB * 255).astype(np.uint8), r"is of type uint8: .*/ 255"),
    (_RGB[..., 0], r"has shape \(40, 48\), one grey channel: .*np\.repeat"),
    (np.moveaxis(_RGB, 2, 0), r"has shape \(3, 40, 48\), channels first: .*np\.moveaxis"),
    (np.dstack([_RGB, _RGB[..., :1]]), r"has shape \(40, 48, 4\), RGBA: .*image\[\.\.\., :3\]"),
    (np.where(np.arange(3) == 1, np.nan, _RGB), r"has NaN or infinite values"),
    (_RGB * 255, r"has values from 0\.\d+ to 254\.\d+: .*divide by 255"),
    (_RGB.tolist(), r"is a list, not a NumPy array"),
])
def test_the_python_api_refuses_images_it_cannot_take_in_one_message(bad, needle):
    """A uint8/uint16 array was clipped to a white result, NaN went through, grey, RGBA and (3, H, W)
    arrays failed deep in torch: each entry point now names the problem and the conversion."""
    from nnst_hr.color import color_stage
    from nnst_hr.config import NNSTConfig, PosterConfig
    from nnst_hr.nnst import nnst_objective, stylize, synthesize_nnst
    from nnst_hr.poster import color_poster, synthesize_poster_stage
    from nnst_hr.scores import score_image

    config = NNSTConfig(size=32, steps=1, split_steps=1)
    calls = {
        "stylize": lambda: stylize(bad, _RGB, config),
        "synthesize_nnst": lambda: synthesize_nnst(_RGB, bad, config),
        "nnst_objective": lambda: nnst_objective(bad, _RGB, config),
        "color_stage": lambda: color_stage(_RGB, bad, _RGB, config),
        "synthesize_poster_stage": lambda: synthesize_poster_stage(bad, _RGB, None, PosterConfig(out_size=64), config),
        "color_poster": lambda: color_poster(_RGB, _RGB, bad, (40, 48), config),
        "score_image": lambda: score_image(bad, _RGB, _RGB),
    }
    for name, call in calls.items():
        with pytest.raises(InputError, match=rf"^(the )?(content|style|image) {needle}"):
            call()
            pytest.fail(f"{name} took it")
    assert check_image_accepts(_RGB * 1.5 - 0.2)  # the control: a result's unclipped state strays a little


@pytest.mark.parametrize("shape", [(4, 4, 3), (1, 1, 3), (8, 8, 3)])
def test_the_python_api_refuses_images_too_small_to_mean_anything(shape):
    """As `run` and `metrics` refuse them: synthesize_nnst took a 1 x 1 px content and upscaled it to a flat result;
    score_image and nnst_objective failed in torch's pooling (RuntimeError: Output size is too small)."""
    from nnst_hr.config import NNSTConfig
    from nnst_hr.nnst import nnst_objective, synthesize_nnst
    from nnst_hr.scores import score_image

    tiny = np.resize(_RGB, shape).astype(np.float32)
    config = NNSTConfig(size=64, coarsest=64, steps=1, split_steps=0)
    for call in (lambda: synthesize_nnst(tiny, _RGB, config), lambda: synthesize_nnst(_RGB, tiny, config),
                 lambda: nnst_objective(tiny, _RGB, config), lambda: score_image(tiny, _RGB, _RGB, nnst_config=config),
                 lambda: score_image(_RGB, _RGB, tiny, nnst_config=config)):
        with pytest.raises(InputError, match=rf"^(the )?(content|style|image) is {shape[1]}x{shape[0]} px, too small "
                                             r"to transfer anything \(short side below 16 px\); use a larger image"):
            call()


@pytest.mark.parametrize("shape", [(16, 1024, 3), (1024, 16, 3)])
def test_the_objective_of_a_strip_too_thin_at_its_size_is_refused_naming_the_size(shape):
    """nnst_objective and score_image's objective failed in torch's pooling on a strip 1 px across at its size."""
    from nnst_hr.config import NNSTConfig
    from nnst_hr.nnst import nnst_objective
    from nnst_hr.scores import score_image

    strip = np.resize(_RGB, shape).astype(np.float32)
    config = NNSTConfig(size=64)
    for call in (lambda: nnst_objective(strip, _RGB, config),
                 lambda: score_image(strip, _RGB, _RGB, nnst_config=config)):
        with pytest.raises(InputError, match=r"^the image is too thin: at --size 64 it is (64x1|1x64) px, its short "
                                             r"side below 8 px; raise --size or crop the image"):
            call()
    assert nnst_objective(np.resize(_RGB, (16, 128, 3)), _RGB, config) > 0  # the control: 8 px, a cell of relu4_3


def test_the_python_api_refuses_a_config_of_another_type_or_value_in_one_message():
    """stylize(content, style, {"size": 512}) and the poster stage's two configs swapped failed deep inside with an
    AttributeError; the poster stage took render="blur", out_size="128" (a TypeError later) and out_size=None."""
    from nnst_hr.color import color_stage
    from nnst_hr.config import NNSTConfig, PosterConfig
    from nnst_hr.nnst import NNSTResult, nnst_objective, stylize, synthesize_nnst
    from nnst_hr.poster import color_poster, synthesize_poster_stage
    from nnst_hr.scores import score_image

    config, poster = NNSTConfig(size=32, steps=1, split_steps=1), PosterConfig(out_size=64)
    result = NNSTResult(raw=_RGB, field=np.zeros((10, 12, 3), np.int32), content_size=(40, 48), style_size=(40, 48),
                        objective=0.0)
    not_nnst = r"^(nnst_)?config is a (dict|PosterConfig), not an NNSTConfig: give NNSTConfig\(\.\.\.\), e\.g\."
    for call in (lambda c: stylize(_RGB, _RGB, c), lambda c: synthesize_nnst(_RGB, _RGB, c),
                 lambda c: nnst_objective(_RGB, _RGB, c), lambda c: color_stage(_RGB, _RGB, _RGB, c),
                 lambda c: synthesize_poster_stage(_RGB, _RGB, result, poster, c),
                 lambda c: color_poster(_RGB, _RGB, _RGB, (40, 48), c),
                 lambda c: score_image(_RGB, _RGB, _RGB, nnst_config=c)):
        for bad in ({"size": 32}, poster):
            with pytest.raises(InputError, match=not_nnst):
                call(bad)
    for bad, needle in ((config, r"^poster_config is an NNSTConfig, not a PosterConfig"),
                        (PosterConfig(out_size=64, render="blur"), r"render: must be one of 'copy', 'vote'"),
                        (PosterConfig(out_size="128"), r"out-size: must be int"),
                        (PosterConfig(out_size=None), r"^poster_config\.out_size is None: give the poster's")):
        with pytest.raises(InputError, match=needle):
            synthesize_poster_stage(_RGB, _RGB, result, bad, config)
    with pytest.raises(InputError, match=r"^seed must be an integer between 0 and 9223372036854775807, got -1"):
        score_image(_RGB, _RGB, _RGB, nnst_config=config, seed=-1)


def test_the_stages_refuse_a_result_of_another_content_naming_both_sizes():
    """The poster stage made a poster from another content's NNST result, no error; the color stage failed with
    'content (1, 3, 27, 32) and output (1, 3, 32, 20) differ in size' (tensor shapes)."""
    from nnst_hr.color import color_stage
    from nnst_hr.config import NNSTConfig, PosterConfig
    from nnst_hr.nnst import NNSTResult
    from nnst_hr.poster import synthesize_poster_stage

    config = NNSTConfig(size=32)
    other = _RGB[:, :24]  # 48 x 40 px: another aspect than the result's content
    result = NNSTResult(raw=_RGB, field=np.zeros((10, 12, 3), np.int32), content_size=(40, 48), style_size=(40, 48),
                        objective=0.0)
    with pytest.raises(InputError, match=r"^nnst_result \(48x40 px\) has another aspect than the content \(24x40 px\)"):
        synthesize_poster_stage(other, _RGB, result, PosterConfig(out_size=64), config)
    with pytest.raises(InputError, match=r"^nnst_result is a NoneType, not an NNSTResult"):
        synthesize_poster_stage(_RGB, _RGB, None, PosterConfig(out_size=64), config)
    with pytest.raises(InputError, match=r"^the raw result \(48x40 px\) has another aspect than the content "
                                         r"\(24x40 px\): give the raw result that synthesize_nnst made of it"):
        color_stage(_RGB, other, _RGB, config)
    assert color_stage(_RGB, _RGB[::2, ::2], _RGB, config).shape == _RGB.shape  # the control: any size, one aspect


def test_write_image_refuses_0_to_255_floats_instead_of_writing_white(tmp_path):
    """write_image clipped 0..255 floats to [0, 1]: a white file and no error."""
    from nnst_hr.files import write_image

    with pytest.raises(InputError, match=r"^the image has values from 0\.\d+ to 254\.\d+: give floats in \[0, 1\] "
                                         r"\(8-bit values: divide by 255"):
        write_image(tmp_path / "white.png", _RGB * 255)
    assert not (tmp_path / "white.png").exists()
    write_image(tmp_path / "ok.png", _RGB * 1.5 - 0.2)  # the control: a result's unclipped state is clipped


def test_an_int64_image_of_8_bit_values_is_told_to_divide_by_255():
    """The hint divided an int64 array (what arithmetic on uint8 gives) by 9223372036854775807."""
    from nnst_hr.tensors import check_image

    for values, scale in ((_RGB * 255, 255), (_RGB * 65535, 65535), (_RGB * 2**40, 2**63 - 1)):
        with pytest.raises(InputError, match=rf"is of type int64: .*image\.astype\(np\.float32\) / {scale}$"):
            check_image(values.astype(np.int64), "the content")
    with pytest.raises(InputError, match=r"/ 65535$"):  # a dark 16-bit image is still 16-bit
        check_image((_RGB * 100).astype(np.uint16), "the content")


def check_image_accepts(image) -> bool:
    from nnst_hr.tensors import check_image

    check_image(image, "the image")
    return True


def test_the_python_api_refuses_masks_of_other_shapes_than_the_images():
    """stylize took another pair's masks (or the content and style swapped) and stretched them; a path given as
    masks failed deep in the guides with an AttributeError."""
    from guidance import load_masks
    from nnst_hr.config import NNSTConfig, PosterConfig
    from nnst_hr.nnst import synthesize_nnst
    from nnst_hr.poster import synthesize_poster_stage
    from nnst_hr.scores import score_image

    folder = Path(__file__).parent.parent / "samples" / "guided" / "louvre_to_house"
    masks = load_masks(folder)
    content = np.zeros((*masks.content.shape, 3), np.float32)
    style = np.zeros((*masks.style.shape, 3), np.float32)
    config = NNSTConfig(size=32, steps=1, split_steps=1)
    for call in (lambda m, c, s: synthesize_nnst(c, s, config, masks=m),
                 lambda m, c, s: synthesize_poster_stage(c, s, None, PosterConfig(out_size=64), config, masks=m),
                 lambda m, c, s: score_image(c, c, s, masks=m)):
        with pytest.raises(InputError, match=r"^masks of \(567, 633\) and \(540, 800\) do not match the content "
                                             r"\(540, 800\) and the style \(567, 633\); load them"):
            call(masks, style, content)  # swapped
        with pytest.raises(InputError, match=r"^masks is a str, not a guidance.MaskPair: load a masks folder"):
            call(str(folder), content, style)
    from nnst_hr.tensors import check_masks

    check_masks(masks, content.shape, style.shape)  # the control: the shapes it was loaded for


def test_a_refusal_within_the_margin_shows_the_margin():
    """"needs about 1.7 GB of memory but 1.8 GB are available" read as a fault of the check."""
    shapes = ((900, 1600), (2341, 3200))
    need = memory.RunSizes(*shapes, 512).peak().ram
    with pytest.raises(InputError) as refused:
        memory.check_fits(*shapes, size=512, ram=int(need * 1.05))
    margin = f"about {memory.format_bytes(need)} ({memory.format_bytes(need * memory.HEADROOM)} with the 10% margin"
    assert margin in str(refused.value)
    assert f"but {memory.format_bytes(need * 1.05)} are available" in str(refused.value)
    with pytest.raises(InputError) as refused:  # negative control: short of the estimate itself, no margin said
        memory.check_fits(*shapes, size=512, ram=int(need * 0.5))
    assert f"about {memory.format_bytes(need)} of memory but" in str(refused.value)
    memory.check_fits(*shapes, size=512, ram=int(need * memory.HEADROOM) + 1)  # with the margin, it fits


def test_config_without_o_says_where_it_writes_only_for_a_run_that_passes_its_checks(cli, tmp_path):
    """`run --config X.run/config.json` said "writing X" before refusing, since X exists, to write it."""
    content, style = pair(tmp_path)
    output = tmp_path / "out.png"
    assert cli("run", content, style, "-o", output, *TINY, "-q").exit_code == 0
    config = tmp_path / "out.run" / "config.json"
    refused = cli("run", "--config", config)
    assert_one_line_error(refused, 2, f"{output} already exists; pass --overwrite")
    assert "writing" not in refused.stderr
    result = cli("run", "--config", config, "--overwrite")
    assert result.exit_code == 0, result.output
    assert f"writing {output}, the output recorded in {config} (-o to write elsewhere)" in result.stderr.splitlines()


# --------------------------------------------------------------------------- places that take no files, failed runs


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_where_the_file_system_takes_no_new_files_is_one_line_naming_the_option(cli, tmp_path, monkeypatch):
    """/proc answers a mkdir with "No such file or directory", its folder there: `-o /proc/x.png` and an
    experiment's `-o` or `--cache` under /proc were internal errors."""
    from nnst_hr.experiment import stages

    plan = _tiny_plan(tmp_path)
    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", lambda *a, **k: pytest.fail("NNST started"))
    monkeypatch.setattr(stages, "nnst", lambda *a: pytest.fail("NNST started"))
    result = cli("run", tmp_path / "content.png", tmp_path / "style.png", "-o", "/proc/nnst-hr-test.png", *TINY)
    assert_one_line_error(result, 2, "cannot create /proc/nnst-hr-test.run", "though /proc exists",
                          "choose another -o")
    before = sorted(tmp_path.iterdir())
    for options, option in ((("-o", "/proc/nnst-hr-test"), "-o"),
                            (("-o", tmp_path / "results", "--cache", "/proc/nnst-hr-test/cache"), "--cache")):
        result = cli("experiment", plan, *options, "-q")
        assert_one_line_error(result, 2, "cannot create /proc/nnst-hr-test", f"choose another {option}")
        assert sorted(tmp_path.iterdir()) == before  # the results folder created for the run is gone again


def test_a_refused_folder_names_the_option_that_chose_it(tmp_path, monkeypatch):
    """A permission refused while creating a --cache folder said "choose another -o"."""
    from nnst_hr.lock import create_folder

    def refused(self, *args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(self))

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(InputError, match=f"cannot create {tmp_path / 'c'} .Operation not permitted.; choose another "
                                         f"--cache or fix the permissions of {tmp_path}$"):
        create_folder(tmp_path / "c", parents=True, option="--cache")
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError, match="full"):  # a full disk goes through: the command says it with its size
        create_folder(tmp_path / "c", parents=True, option="--cache")


def test_a_device_or_a_pipe_given_as_output_or_input_is_one_line(cli, tmp_path, monkeypatch):
    """`-o /dev/null` said "cannot write a file without an extension", a FIFO.png output with --overwrite was
    replaced by a regular file, and a pipe as input (`<(cat photo.png)`) or /dev/zero said "is empty"."""
    content, style = pair(tmp_path)
    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", lambda *a, **k: pytest.fail("NNST started"))
    fifo, null = tmp_path / "out.png", tmp_path / "null.png"
    os.mkfifo(fifo)
    null.symlink_to(os.devnull)
    for output, kind in ((Path(os.devnull), "a character device"), (fifo, "a pipe (FIFO)"),
                         (null, "a character device")):
        result = cli("run", content, style, "-o", output, "--overwrite", *TINY)
        assert_one_line_error(result, 2, f"{output} is {kind}, not a file", "give an image file's path")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and null.is_symlink()
    for source, kind in ((fifo, "a pipe (FIFO)"), (Path("/dev/zero"), "a character device")):
        result = cli("run", source, style, "-o", tmp_path / "a.png", *TINY)
        assert_one_line_error(result, 2, f"{source} is {kind}, not a file; save it to a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "null.png", "out.png", "style.png"]


class _Unblocker:
    """While the block runs, give EOF to any reader of ``fifo``: a command that reads it ends (and its test
    fails) instead of waiting forever for a writer."""

    def __init__(self, fifo: Path):
        import threading

        self.fifo, self.done = fifo, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.done.wait(0.05):
            try:
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while no one reads
            except OSError:
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def test_a_device_or_a_pipe_given_for_a_file_the_command_reads_is_one_line(cli, tmp_path, monkeypatch):
    """--config, --cmyk, --weights, --field, a plan and a plan's content: reading a FIFO waited forever for a
    writer, /dev/zero filled the memory, and /dev/null or a FIFO as a plan or --weights was "no such file"."""
    from nnst_hr.nnf import load_field

    plan = _tiny_plan(tmp_path)
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    monkeypatch.setattr("nnst_hr.run.synthesize_nnst", lambda *a, **k: pytest.fail("NNST started"))
    with _Unblocker(fifo):
        for source, kind in ((fifo, "a pipe (FIFO)"), (Path(os.devnull), "a character device")):
            for args, label in ((("run", "--config", source), ""),
                                (("run", content, style, "-o", tmp_path / "out.tif", "--cmyk", source), "--cmyk "),
                                (("run", content, style, "-o", tmp_path / "out.png", "--weights", source),
                                 "VGG16 weights (given path) "),
                                (("experiment", source, "-o", tmp_path / "results", "-q"), "")):
                assert_one_line_error(cli(*args), 2, f"{label}{source} is {kind}, not a file; save it")
            with pytest.raises(InputError, match=re.escape(f"{source} is {kind}, not a file")):
                load_field(source)
        masks = _label_maps(tmp_path / "masks")
        (masks / "content.png").unlink()
        os.mkfifo(masks / "content.png")
        assert_one_line_error(cli("masks", "check", masks), 2, f"mask {masks / 'content.png'} is a pipe (FIFO)")
        plan.write_text(plan.read_text().replace('"content.png"', f'"{fifo.name}"'))
        assert_one_line_error(cli("experiment", plan, "-o", tmp_path / "results"), 2,
                              f"pair[0].content: {fifo} is a pipe (FIFO), not a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "fifo", "masks", "plan.toml", "style.png"]


def test_a_symbolic_link_loop_in_a_plan_or_given_for_a_folder_says_so(cli, tmp_path, monkeypatch):
    """A link loop as a plan's content, its masks folder or the plan itself said "no such file" (and "does
    not exist", "no such folder" for `masks check`, `cache info`, --weights): the link is there to fix."""
    from nnst_hr.experiment import driver

    monkeypatch.setattr(driver, "build_graph", lambda *a: pytest.fail("work started"))
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    plan = _tiny_plan(tmp_path)
    text = plan.read_text()
    for key, line in (("content", 'content = "loop"'), ("guide", 'style = "style.png"\nguide = "loop"')):
        plan.write_text(text.replace('content = "content.png"' if key == "content" else 'style = "style.png"', line))
        result = cli("experiment", plan, "-o", tmp_path / "results", "-q")
        assert_one_line_error(result, 2, f"pair[0].{key}: {loop}: Too many levels of symbolic links; fix or remove "
                              "the symbolic link")
    for args in (("experiment", loop, "-o", tmp_path / "results"), ("masks", "check", loop), ("cache", "info", loop),
                 ("weights", "--weights", loop)):
        assert_one_line_error(cli(*args), 2, f"{loop}: Too many levels of symbolic links; fix or remove the symbolic")
    plan.write_text(text.replace("content.png", "missing.png"))  # the control: a file simply missing
    assert_one_line_error(cli("experiment", plan, "-o", tmp_path / "results"), 2, "no such file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "loop", "plan.toml", "style.png"]


def test_a_run_given_weights_that_are_not_there_leaves_no_run_folder(cli, tmp_path):
    """--weights naming no file was found once the run folder (and its config.json) was written."""
    content, style = pair(tmp_path)
    result = cli("run", content, style, "-o", tmp_path / "out.png", "--weights", tmp_path / "vgg.pth", *TINY)
    assert_one_line_error(result, 2, f"{tmp_path / 'vgg.pth'} (given path): no such file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]


def test_an_experiment_with_failed_runs_exits_2_after_writing_the_report_of_the_others(cli, tmp_path):
    """It exited 0 with a warning: `nnst-hr experiment plan.toml && upload` went on with every run failed."""
    content, style = pair(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    plan, results = tmp_path / "plan.toml", tmp_path / "results"
    settings = "[fixed]\nsize = 64\nsteps = 2\nsplit_steps = 2\n"
    plan.write_text(f'[[pair]]\ncontent = "bad.png"\nstyle = "{style.name}"\n{settings}')
    result = cli("experiment", plan, "-o", results, "-q")  # every run failed
    assert_one_line_error(result, 2, "1 of 1 run failed (run001, pair[0]: inputs: ", f"{bad}",
                          f"{results / 'report.html'} lists them all", "run the same command again")
    plan.write_text(f'[[pair]]\ncontent = "{content.name}"\nstyle = "{style.name}"\n'
                    f'[[pair]]\ncontent = "bad.png"\nstyle = "{style.name}"\n{settings}')
    result = cli("experiment", plan, "-o", results)  # some failed
    assert_one_line_error(result, 2, "1 of 2 runs failed (run002, pair[1]: inputs: ")
    assert "wrote " in result.stderr.splitlines()[-2]  # the summary line, then the error
    with open(results / "results.csv", newline="") as fh:
        assert [row["status"] for row in csv.DictReader(fh)] == ["ok", "failed"]
    assert (results / "runs" / "run001" / "result.png").is_file() and (results / "report.html").is_file()
    bad.write_bytes(content.read_bytes())  # fixed: the same command resumes, and exits 0
    result = cli("experiment", plan, "-o", results)
    assert result.exit_code == 0, result.output
    assert "error" not in result.stderr and "2 runs, 0 failed" in result.stderr


@pytest.mark.parametrize("output, cache, says", [
    ("results", "results", "is the results folder"),
    ("results", ".", "holds the results folder {tmp}/results"),
    ("results", "results/runs/cache", "is in {tmp}/results/runs, where the experiment writes each run's images"),
])
def test_a_cache_that_is_or_holds_the_results_folder_is_refused_before_any_work(cli, tmp_path, monkeypatch, output,
                                                                                 cache, says):
    """`-o results --cache results` ran, and then `cache info` and `cache prune` refused both folders (a cache
    holding results.csv, or a results folder without its cache/)."""
    from nnst_hr.experiment import driver

    plan = _tiny_plan(tmp_path)
    monkeypatch.setattr(driver, "build_graph", lambda *a: pytest.fail("work started"))
    result = cli("experiment", plan, "-o", tmp_path / output, "--cache", tmp_path / cache, "-q")
    assert_one_line_error(result, 2, f"--cache {tmp_path / cache} {says.format(tmp=tmp_path)}",
                          f"leave out --cache (then {tmp_path / output / 'cache'}) or give a folder apart from -o "
                          f"{tmp_path / output}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "plan.toml", "style.png"]
    with pytest.raises(pytest.fail.Exception, match="work started"):  # the control: a cache of its own in results/
        driver.run_plan(plan, tmp_path / output, cache_dir=tmp_path / output / "mycache", quiet=True)
