"""An experiment interrupted inside NNST resumes from the task's per-scale checkpoints in the cache.

One tiny plan (64 px content and style, scales 32 and 64 px, 2 steps) is run once uninterrupted
(the reference), and again stopped right after the 32 px scale's state is saved (an exception
raised by the checkpoint store, as a Ctrl-C there would); run again, it must start at 64 px and
give the reference's records bit for bit.
"""

from __future__ import annotations

import io
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import RESUME_PLAN as PLAN
from helpers import needs_weights

from nnst_hr.config import NNSTConfig
from nnst_hr.experiment import housekeeping as hk
from nnst_hr.experiment import progress as plan_progress
from nnst_hr.experiment import run_plan, stages
from nnst_hr.experiment.cache import CACHE_ID, CHECKPOINTS, Cache, Checkpoints
from nnst_hr.experiment.distributed import _Output, run_task
from nnst_hr.files import write_image
from nnst_hr.integrity import is_intact
from nnst_hr.nnst import synthesize_nnst

pytestmark = needs_weights

RESUMED = "run 1 of 1: nnst: scale 32px: resumed from checkpoint"


class Stop(Exception):
    """Raised by the checkpoint store once the state after scale0 is on disk (the interruption)."""


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64] / 64
    image = np.stack([x, y, 1 - (x + y) / 2], -1) * 0.7 + rng.random((64, 64, 3)) * 0.3
    write_image(path, image.astype(np.float32), overwrite=True)


def write_plan(folder: Path, seed: int = 2) -> Path:
    path = folder / f"plan{seed}.toml"
    path.write_text(PLAN.format(seed=seed))
    return path


class Events:
    """``on_event`` keeping (event, stage, key, info)."""

    def __init__(self):
        self.seen: list[tuple[str, str, str, dict]] = []

    def __call__(self, event, task, info):
        self.seen.append((event, task.stage, task.key, dict(info)))

    def info(self, event: str, stage: str) -> dict:
        return next(info for e, s, _, info in self.seen if e == event and s == stage)


def run(plan: Path, out: Path, cache: Path) -> tuple[str, Events]:
    """Run the plan with every step's line (no throttle) -> (the progress text, the events)."""
    stream, events = io.StringIO(), Events()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan_progress, "REPORT_INTERVAL_S", 0.0)
        run_plan(plan, out, cache_dir=cache, stream=stream, on_event=events)
    return stream.getvalue(), events


def interrupt(plan: Path, out: Path, cache: Path) -> str:
    """Run the plan until the state after scale0 is saved, then stop it -> the progress text."""
    save = Checkpoints.save

    def save_then_stop(self, name, image):
        save(self, name, image)
        if name == "scale0":
            raise Stop

    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Checkpoints, "save", save_then_stop)
        patch.setattr(plan_progress, "REPORT_INTERVAL_S", 0.0)
        with pytest.raises(Stop):
            run_plan(plan, out, cache_dir=cache, stream=stream)
    return stream.getvalue()


def nnst_key(cache: Path) -> str:
    return next(path.stem for path in cache.glob("nnst-*.json"))


def assert_same_records(cache: Path, reference: Path, only_reference: bool = False) -> None:
    """Every record of ``reference`` is in ``cache``, bit for bit (and no other, unless ``only_reference``)."""
    keys = sorted(path.stem for path in reference.glob("*.json"))
    mine = sorted(path.stem for path in cache.glob("*.json"))
    assert set(keys) <= set(mine) if only_reference else keys == mine
    for key in keys:
        a, b = Cache(cache).get(key), Cache(reference).get(key)
        assert a.keys() == b.keys(), key
        for name, value in a.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, b[name], err_msg=f"{key}.{name}")
            else:
                assert value == b[name], (key, name)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume")
    _image(folder / "c.png", 0)
    _image(folder / "s.png", 1)
    return folder


@pytest.fixture(scope="module")
def reference(base) -> tuple[Path, str, Events]:
    """The plan run uninterrupted: its cache, progress text and events."""
    text, events = run(write_plan(base), base / "reference", base / "reference_cache")
    return base / "reference_cache", text, events


def test_an_uninterrupted_plan_leaves_no_checkpoint(reference):
    cache, text, events = reference
    assert (cache / f"{nnst_key(cache)}.json").is_file()
    assert not (cache / CHECKPOINTS).exists()  # written during the task, removed with its record stored
    assert "resumed" not in text and "resumed" not in events.info("done", "nnst")
    assert re.search(r"^run 1 of 1: nnst: scale 32px: step 2/2", text, re.MULTILINE), text


def test_a_plan_stopped_inside_nnst_resumes_at_the_saved_scale_to_the_same_records(reference, base):
    ref_cache = reference[0]
    plan, cache = write_plan(base), base / "cache"
    stopped = interrupt(plan, base / "stopped", cache)
    assert re.search(r"^run 1 of 1: nnst: scale 32px: step 2/2", stopped, re.MULTILINE), stopped
    key = nnst_key(ref_cache)
    saved = cache / CHECKPOINTS / key / "scale0.npz"
    assert is_intact(saved) and not (cache / f"{key}.json").exists()

    # another setting (seed) in the same cache: a key of its own, so no resume from these states
    other, other_events = run(write_plan(base, seed=3), base / "other", cache)
    assert "resumed" not in other and "resumed" not in other_events.info("done", "nnst")
    assert re.search(r"^run 1 of 1: nnst: scale 32px: step 2/2", other, re.MULTILINE), other
    assert is_intact(saved)  # nor are they removed by it

    text, events = run(plan, base / "stopped", cache)
    assert RESUMED in text.splitlines(), text
    assert not re.search(r"nnst: scale 32px: step", text), text  # the saved scale is not computed again
    assert re.search(r"^run 1 of 1: nnst: scale 64px: step 2/2", text, re.MULTILINE), text
    assert events.info("done", "nnst")["resumed"] == ["scale0"]
    # the done line names the scale as the step lines do, not by its state's name
    done = r"^run 1 of 1: nnst done in \S+ \(scale 32px resumed from checkpoints\); "
    assert re.search(done, text, re.MULTILINE), text
    assert Counter(s for e, s, _, _ in events.seen if e == "start")["nnst"] == 1
    assert not (cache / CHECKPOINTS / key).exists()
    assert_same_records(cache, ref_cache, only_reference=True)  # the other plan's records are in it too
    ref_result = next((base / "reference" / "runs").rglob("result.png")).read_bytes()
    assert next((base / "stopped" / "runs").rglob("result.png")).read_bytes() == ref_result


def test_a_corrupt_checkpoint_is_dropped_with_one_warning_and_the_task_recomputed(reference, base):
    ref_cache = reference[0]
    plan, cache = write_plan(base), base / "corrupt_cache"
    interrupt(plan, base / "corrupt", cache)
    saved = cache / CHECKPOINTS / nnst_key(ref_cache) / "scale0.npz"
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text, events = run(plan, base / "corrupt", cache)
    said = [str(w.message) for w in caught if str(saved) in str(w.message)]
    assert len(said) == 1 and "truncated or corrupt" in said[0] and "recomputing" in said[0], said
    assert "resumed" not in text and "resumed" not in events.info("done", "nnst")
    assert re.search(r"^run 1 of 1: nnst: scale 32px: step 2/2", text, re.MULTILINE), text
    assert not (cache / CHECKPOINTS).exists()
    assert_same_records(cache, ref_cache)


def test_nnst_resumed_at_any_scale_gives_the_same_bits():
    """The NNST stage itself: resumed from the state after its first scale, or after every scale,
    it returns exactly what it returns uninterrupted (the optimized bands are not those of any
    image: each scale now ends on the bands of its saved state)."""
    rng = np.random.default_rng(0)
    content, style = (rng.random((64, 64, 3), dtype=np.float32) for _ in range(2))
    config = NNSTConfig(size=64, coarsest=32, steps=2, split_steps=1, seed=2, rotate=False)
    saved = {}
    whole = synthesize_nnst(content, style, config, on_checkpoint=saved.__setitem__)
    assert sorted(saved) == ["scale0", "scale1"]
    for start_from in ({"scale0": saved["scale0"]}, saved):
        resumed = synthesize_nnst(content, style, config, start_from=start_from)
        np.testing.assert_array_equal(resumed.raw, whole.raw, err_msg=str(sorted(start_from)))
        np.testing.assert_array_equal(resumed.field, whole.field)
        assert resumed.objective == whole.objective
    # negative control: a state off by one rounding step is not the same start
    nudged = {"scale0": np.nextafter(saved["scale0"], np.float32(1))}
    assert not np.array_equal(synthesize_nnst(content, style, config, start_from=nudged).raw, whole.raw)


def test_a_worker_that_does_not_see_the_cache_runs_without_checkpoints(base, tmp_path):
    """``run_task`` (what a Dask worker runs) gives the stage the store only where it finds the cache's id."""
    inputs = stages.decode_inputs((base / "c.png").read_bytes(), (base / "s.png").read_bytes(), None, {})
    params = stages.subset(NNSTConfig(size=64, coarsest=32, steps=1, split_steps=0, rotate=False), stages.NNST_PARAMS)
    cache = Cache(tmp_path / "cache")
    key = "nnst-" + "ab" * 16
    store = cache.checkpoints(key, shared=True)
    assert store.reachable() and (tmp_path / "cache" / CHECKPOINTS / CACHE_ID).is_file()
    first = run_task(stages.nnst, key, "nnst", inputs, params, "cpu", checkpoints=store)
    assert isinstance(first, _Output) and "resumed" not in first.info
    assert sorted(p.name for p in store.folder.glob("*.npz")) == ["scale0.npz", "scale1.npz"]
    again = run_task(stages.nnst, key, "nnst", inputs, params, "cpu", checkpoints=cache.checkpoints(key, shared=True))
    assert again.info["resumed"] == ["scale0", "scale1"]
    np.testing.assert_array_equal(again.record["raw"], first.record["raw"])

    elsewhere = Checkpoints(tmp_path / "elsewhere" / CHECKPOINTS / key, store.cache_id)  # another disk
    assert not elsewhere.reachable()
    (tmp_path / "other" / CHECKPOINTS).mkdir(parents=True)  # another cache at that path: another id
    (tmp_path / "other" / CHECKPOINTS / CACHE_ID).write_text("0" * 32 + "\n")
    other = Checkpoints(tmp_path / "other" / CHECKPOINTS / key, store.cache_id)
    assert not other.reachable()
    ran = run_task(stages.nnst, key, "nnst", inputs, params, "cpu", checkpoints=other)
    assert "resumed" not in ran.info and not other.folder.exists()  # nothing written there
    np.testing.assert_array_equal(ran.record["raw"], first.record["raw"])


def test_cache_prune_tells_stale_checkpoints_from_an_interrupted_tasks(tmp_path):
    cache = tmp_path / "cache"
    stored, unfinished = "nnst-" + "aa" * 16, "nnst-" + "bb" * 16
    Cache(cache).put(stored, {"raw": np.zeros((2, 2, 3), np.float32)})
    for key in (stored, unfinished):
        Cache(cache).checkpoints(key).save("scale0", np.zeros((4, 4, 3), np.float32))
    found = hk.survey(hk.cache_folder(cache))
    kinds = {(item.name, item.kind) for item in found.items}
    assert kinds == {(stored, "nnst"), (stored, "stale_checkpoints"), (unfinished, "checkpoints")}
    pruned = hk.prune(cache, apply=True)  # no plan nor age: only junk goes
    assert [(item.name, item.kind) for item, _ in pruned.remove] == [(stored, "stale_checkpoints")]
    assert not (cache / CHECKPOINTS / stored).exists() and (cache / CHECKPOINTS / unfinished / "scale0.npz").is_file()
    assert hk.prune(cache, older_than_days=0, apply=True).freed_bytes > 0  # unused "for longer than now"
    assert not (cache / CHECKPOINTS / unfinished).exists()
    (cache / CHECKPOINTS / "notes.txt").write_text("mine")
    with pytest.raises(hk.InputError, match=f"{CHECKPOINTS}/notes.txt"):
        hk.cache_folder(cache)
