"""``nnst-hr cache info`` / ``nnst-hr cache prune``: what a shared stage cache holds, and pruning it.

Two tiny plans (32 px NNST, 1 step, no poster) share one cache: B differs from A only in a color
option, so they share the NNST stage and each has its own color and scores stages. They are run
once per module; each test works on a copy of that cache (mtimes kept).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnst_hr.cli import app
from nnst_hr.errors import InputError
from nnst_hr.experiment import housekeeping as hk
from nnst_hr.experiment import load_plan, run_plan
from nnst_hr.experiment.cache import FORMAT, Cache, cache_lock
from nnst_hr.experiment.graph import build_graph, read_inputs
from nnst_hr.files import save_npz, write_image

PLAN = """[[pair]]
content = "c.png"
style = "s.png"

[axes]
color_sharpness = [{sharpness}]

[fixed]
size = 32
steps = 1
split_steps = 1
rotate = false
"""
ORPHAN = "nnst-0123456789abcdef0123456789abcdef"
TEMPORARY = ".color-00112233445566778899aabbccddeeff.npz.0a1b2c3d.tmp.npz"  # atomic_output's naming


class Events:
    def __init__(self, hook=None):
        self.seen, self.hook = [], hook

    def __call__(self, event, task, info):
        self.seen.append((event, task.stage, task.key))
        if self.hook is not None:
            self.hook(event, task)

    def started(self) -> Counter:
        return Counter(stage for event, stage, _ in self.seen if event == "start")

    def keys(self, *events: str) -> set[str]:
        return {key for e, _, key in self.seen if e in events}


def stored_keys(plan: Path) -> set[str]:
    """The keys of the plan's stored stages, from its graph (as the experiment builds it)."""
    loaded = load_plan(plan)
    return {key for key, task in build_graph(loaded, read_inputs(loaded)).items() if task.store}


def files(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def cli(*args: str):
    return CliRunner().invoke(app, ["cache", *map(str, args)])


def one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Inputs, plans A and B, and the cache both were run into: (base, a, b, cache, events of A's run)."""
    base = tmp_path_factory.mktemp("housekeeping")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64] / 64
    write_image(base / "c.png", (np.stack([x, y, 1 - (x + y) / 2], -1) * 0.8
                                 + rng.random((64, 64, 3)) * 0.2).astype(np.float32))
    write_image(base / "s.png", (np.stack([0.5 + 0.5 * np.sin(x * 20), y, 0.3 + 0 * x], -1)
                                 * 0.9).astype(np.float32))
    a, b = base / "a.toml", base / "b.toml"
    a.write_text(PLAN.format(sharpness=5.0))
    b.write_text(PLAN.format(sharpness=10.0))
    cache = base / "cache"
    events_a = Events()
    run_plan(a, base / "results_a", cache_dir=cache, quiet=True, on_event=events_a)
    run_plan(b, base / "results_b", cache_dir=cache, quiet=True)
    return base, a, b, cache, events_a


@pytest.fixture
def cache(shared, tmp_path) -> Path:
    """A copy of the shared cache (file times kept)."""
    return Path(shutil.copytree(shared[3], tmp_path / "cache"))


def add_junk(cache: Path) -> set[str]:
    """An orphan .npz (its json never written), a killed write's temporary file, an old-format entry and
    a torn json; returns the names of the files added."""
    save_npz(cache / f"{ORPHAN}.npz", raw=np.zeros((2, 2), np.float32))
    (cache / TEMPORARY).write_bytes(b"\0" * 300)
    old = "color-ffeeddccbbaa99887766554433221100"
    Cache(cache).put(old, {"image": np.zeros((2, 2, 3), np.float32)})
    entry = json.loads((cache / f"{old}.json").read_text())
    (cache / f"{old}.json").write_text(json.dumps({**entry, "format": FORMAT - 1}))
    torn = "scores-ffeeddccbbaa99887766554433221100"
    Cache(cache).put(torn, {"objective": 0.5})
    (cache / f"{torn}.json").write_text('{"format": ')
    return {f"{ORPHAN}.npz", f"{ORPHAN}.npz.sha256", TEMPORARY} | {
        f"{key}{suffix}" for key in (old, torn) for suffix in (".json", ".npz", ".npz.sha256")}


def test_prune_keep_leaves_exactly_the_kept_plans_keys_and_only_the_other_plan_recomputes(shared, cache, tmp_path):
    base, a, b, _, events_a = shared
    keys_a = stored_keys(a)
    # the graph's keys are the ones A's run computed (the inputs stage is never stored)
    assert keys_a == {key for key in events_a.keys("done") if not key.startswith("inputs-")}
    assert stored_keys(b) - keys_a and stored_keys(b) & keys_a  # B shares the NNST stage only
    before = files(cache)

    dry = hk.prune(cache, keep=[a])
    assert files(cache) == before  # a dry run deletes nothing (nor touches a file)
    assert {item.name for item, _ in dry.remove} == stored_keys(b) - keys_a
    assert all(why == "in no --keep plan" for _, why in dry.remove)

    result = cli("prune", cache, "--keep", a, "--yes")
    assert result.exit_code == 0, result.output
    assert "freed" in result.output
    assert {name.split(".")[0] for name in os.listdir(cache)} == keys_a
    assert sorted(os.listdir(cache)) == sorted(f"{k}{s}" for k in keys_a for s in (".json", ".npz", ".npz.sha256"))

    rerun_a, rerun_b = Events(), Events()
    run_plan(a, tmp_path / "again_a", cache_dir=cache, quiet=True, on_event=rerun_a)
    assert rerun_a.started() == Counter() and rerun_a.keys("cached") == keys_a  # A: all cached
    run_plan(b, tmp_path / "again_b", cache_dir=cache, quiet=True, on_event=rerun_b)
    assert rerun_b.started() == Counter(inputs=1, color=1, scores=1)  # B: all but the shared NNST
    assert {k for k in rerun_b.keys("start") if not k.startswith("inputs-")} == stored_keys(b) - keys_a


def test_info_totals_are_the_files_sizes_and_prune_removes_orphans_temporary_and_old_entries(shared, cache):
    _, a, b, _, _ = shared
    junk = add_junk(cache)
    result = cli("info", cache, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    sizes = {p.name: p.stat().st_size for p in cache.iterdir()}
    assert info["total"]["bytes"] == sum(sizes.values())
    assert info["orphan"] == {"count": 1, "bytes": sizes[f"{ORPHAN}.npz"] + sizes[f"{ORPHAN}.npz.sha256"]}
    assert info["temporary"] == {"count": 1, "bytes": 300}
    assert info["old_format"]["count"] == 1 and info["unreadable"]["count"] == 1
    entries = stored_keys(a) | stored_keys(b)
    assert info["stages"] == {kind: {"count": sum(k.startswith(f"{kind}-") for k in entries),
                                     "bytes": sum(s for n, s in sizes.items() if n.startswith(f"{kind}-")
                                                  and n.split(".")[0] in entries)}
                              for kind in ("color", "nnst", "scores")}
    assert "corrupt" not in info  # not looked for without --verify
    parts = [*info["stages"].values(), *(info[kind] for kind in hk.JUNK if kind != "corrupt")]
    assert sum(p["bytes"] for p in parts) == info["total"]["bytes"]
    assert sum(p["count"] for p in parts) == info["total"]["count"] == len(entries) + 4
    table = cli("info", cache).output  # not a terminal: plain columns, the total last
    assert table.splitlines()[-1].split()[:2] == ["total", str(info["total"]["count"])]

    # no --keep nor --older-than: only what no run will read goes
    result = cli("prune", cache, "--yes")
    assert result.exit_code == 0, result.output
    assert set(os.listdir(cache)) == set(sizes) - junk
    assert set(os.listdir(cache)) == {f"{k}{s}" for k in entries for s in (".json", ".npz", ".npz.sha256")}


def test_verify_counts_an_entry_whose_bytes_changed_as_corrupt_and_only_prune_removes_it(shared, cache):
    _, a, b, _, _ = shared
    victim = sorted(stored_keys(b) - stored_keys(a))[0]
    npz = cache / f"{victim}.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the entry still parses as an entry
    npz.write_bytes(data)
    before = files(cache)

    plain = json.loads(cli("info", cache, "--json").output)
    assert "corrupt" not in plain and plain["total"]["count"] == len(stored_keys(a) | stored_keys(b))
    verified = json.loads(cli("info", cache, "--json", "--verify").output)
    kind = victim.rsplit("-", 1)[0]
    assert verified["corrupt"]["count"] == 1
    assert verified["stages"][kind]["count"] == plain["stages"][kind]["count"] - 1
    assert verified["total"] == plain["total"]
    assert "corrupt entries" in cli("info", cache, "--verify").output
    assert files(cache) == before  # info --verify changes nothing, not even the corrupt entry

    assert cli("prune", cache, "--yes").exit_code == 0
    assert npz.exists()  # without --verify the entry is not read: it stays
    result = cli("prune", cache, "--yes", "--verify")
    assert result.exit_code == 0, result.output
    assert "checksum" in result.output
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(victim)) == []
    assert {name.split(".")[0] for name in os.listdir(cache)} == (stored_keys(a) | stored_keys(b)) - {victim}


def test_a_folder_that_is_not_a_cache_is_refused_and_left_untouched(shared, cache, tmp_path):
    base = shared[0]
    (cache / "notes.txt").write_text("mine")
    before = files(cache)
    for args in (("prune", cache, "--yes"), ("prune", cache, "--keep", shared[1], "--yes"), ("info", cache)):
        result = cli(*args)
        assert result.exit_code == 2
        assert "does not look like a stage cache" in one_line(result) and "notes.txt" in one_line(result)
    assert files(cache) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(base / "c.png", mine)
    shutil.copy(base / "a.toml", mine)
    result = cli("prune", mine, "--yes")  # a folder of inputs
    assert result.exit_code == 2 and sorted(os.listdir(mine)) == ["a.toml", "c.png"]
    result = cli("prune", shared[0] / "results_a", "--yes")  # a results folder whose cache was --cache
    assert result.exit_code == 2 and "--cache" in one_line(result)
    result = cli("info", tmp_path / "nowhere")
    assert result.exit_code == 2 and "no such folder" in one_line(result)


def test_a_results_folder_stands_for_its_cache(shared, tmp_path):
    _, a, _, _, _ = shared
    shutil.copytree(shared[3], tmp_path / "results" / "cache")
    (tmp_path / "results" / "results.csv").write_text("run\n")
    result = cli("info", tmp_path / "results", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["folder"] == str(tmp_path / "results" / "cache")


def test_a_kept_plan_whose_inputs_are_missing_is_refused_with_one_line(shared, cache, tmp_path):
    plan = tmp_path / "moved.toml"
    plan.write_text(shared[1].read_text())  # c.png and s.png are not beside it
    before = files(cache)
    result = cli("prune", cache, "--keep", shared[1], "--keep", plan, "--yes")
    assert result.exit_code == 2
    line = one_line(result)
    assert str(plan) in line and "c.png" in line
    assert files(cache) == before


def test_older_than_goes_by_last_use_which_reusing_an_entry_refreshes(shared, cache, tmp_path):
    _, a, b, _, _ = shared
    ten_days_ago = time.time() - 10 * 86400
    for path in cache.iterdir():
        os.utime(path, (ten_days_ago, ten_days_ago))
    events = Events()
    run_plan(a, tmp_path / "again", cache_dir=cache, quiet=True, on_event=events)
    assert events.started() == Counter()  # all reused ...
    fresh = {p.name.split(".")[0] for p in cache.glob("*.json") if p.stat().st_mtime > ten_days_ago + 86400}
    assert fresh == stored_keys(a)  # ... and each reuse marked its entry used now

    pruning = hk.prune(cache, older_than_days=5)
    assert {item.name for item, _ in pruning.remove} == stored_keys(b) - stored_keys(a)
    assert all(why.startswith("unused for 10") for _, why in pruning.remove)
    # with --keep, only entries outside the kept plans go, and only if unused long enough
    assert hk.prune(cache, keep=[b], older_than_days=5).remove == []
    assert hk.prune(cache, keep=[a], older_than_days=20).remove == []  # B's are unused for 10 days only
    result = cli("prune", cache, "--older-than", "5", "--yes")
    assert result.exit_code == 0
    assert {p.name.split(".")[0] for p in cache.iterdir()} == stored_keys(a)
    assert cli("prune", cache, "--older-than", "-1").exit_code == 2


def test_a_file_for_the_folder_and_a_nan_or_negative_age_are_one_line_and_delete_nothing(tmp_path):
    cache = tmp_path / "cache"
    Cache(cache).put("color-00112233445566778899aabbccddeeff", {"image": np.zeros((2, 2, 3), np.float32)})
    month_ago = time.time() - 30 * hk.DAY_S
    for path in cache.iterdir():
        os.utime(path, (month_ago, month_ago))
    before = files(cache)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for command in ("info", "prune"):
        result = cli(command, notes)
        assert result.exit_code == 2 and "notes.txt is a file, not a folder; give a cache folder" in one_line(result)
    for days in ("nan", "-1"):  # NaN was taken and kept every entry, silently
        result = cli("prune", cache, "--older-than", days, "--yes")
        assert result.exit_code == 2, result.output
        assert "--older-than must be a number of days, 0 or more" in one_line(result)
    assert files(cache) == before and notes.read_text() == "mine"
    result = cli("prune", cache, "--older-than", "5", "--yes")  # the control: a month unused goes
    assert result.exit_code == 0 and not list(cache.glob("color-*")), result.output


def test_prune_is_refused_while_an_experiment_runs_and_an_experiment_while_a_prune_deletes(shared, tmp_path):
    base, a, b, _, _ = shared
    cache = tmp_path / "cache"
    seen = {}

    def prune_now(event, task):
        if event == "done" and "refused" not in seen:
            seen["in_use"] = hk.survey(cache).in_use
            with pytest.raises(InputError, match="in use by a running experiment") as refused:
                hk.prune(cache, keep=[b], apply=True)  # would delete A's entries, written so far
            seen["refused"] = str(refused.value)

    events = Events(prune_now)
    summary = run_plan(a, tmp_path / "results", cache_dir=cache, quiet=True, on_event=events)
    assert seen["in_use"] and "refused" in seen
    assert summary.failed == 0 and {p.name.split(".")[0] for p in cache.glob("*.json")} == stored_keys(a)
    assert not hk.survey(cache).in_use  # released when the experiment ends
    assert ".lock" not in os.listdir(cache)

    before = files(cache)
    with cache_lock(cache, exclusive=True):  # held as a prune holds it while it deletes
        with pytest.raises(InputError, match="being pruned"):
            run_plan(b, tmp_path / "results_b", cache_dir=cache, quiet=True)
    assert files(cache) == before and not (tmp_path / "results_b").exists()
    # a dry run needs no lock, and says --yes must wait
    with cache_lock(cache, exclusive=False):
        lines = hk.pruning_lines(hk.prune(cache, keep=[b]))
    assert "once the experiment running on this cache has finished" in lines[-1]


def test_deleting_an_entry_removes_its_json_first(shared, cache, monkeypatch):
    """A prune stopped after an entry's first file leaves it missing (recomputed), never a corrupt hit."""
    a = shared[1]
    key = sorted(stored_keys(a))[0]
    item = next(i for i in hk.survey(cache).items if i.name == key)
    assert [p.name for p in item.files] == [f"{key}.json", f"{key}.npz", f"{key}.npz.sha256"]
    real_unlink, removed = Path.unlink, []

    def unlink_once(self, missing_ok=False):
        if removed:
            raise KeyboardInterrupt  # killed after the first file
        removed.append(self.name)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink_once)
    with pytest.raises(KeyboardInterrupt):
        hk.delete([item])
    monkeypatch.undo()
    assert removed == [f"{key}.json"]
    assert not Cache(cache).has(key) and Cache(cache).get(key) is None
    found = {i.name: i.kind for i in hk.survey(cache).items}
    assert found[key] == "orphan"  # the next prune finishes it
    hk.prune(cache, apply=True)
    assert not any(name.startswith(key) for name in os.listdir(cache))
