"""memory.heap_reuse: freed large blocks are reused instead of faulted in again; settings restored."""

from __future__ import annotations

import resource

import pytest

from nnst_hr import memory

BLOCK = 2 * memory.GLIBC_MMAP_THRESHOLD_MAX  # mapped and unmapped by default, whatever glibc's threshold
PAGES = BLOCK // resource.getpagesize()


def faults_of_a_second_block() -> int:
    """Page faults of a fresh, fully written block allocated after a like block was freed."""
    first = bytearray(b"\x01") * BLOCK  # malloc'ed and written (numpy would ask for huge pages)
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = bytearray(b"\x01") * BLOCK
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert second[-1] == 1
    return faults


def test_heap_reuse_reuses_freed_blocks_and_restores_the_mapping_of_large_ones(monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("MALLOC_") or n == "GLIBC_TUNABLES"]:
        monkeypatch.delenv(name)
    outside = faults_of_a_second_block()
    if outside < PAGES // 2:
        pytest.skip(f"{outside} faults for {PAGES} pages: huge pages or another allocator, nothing to tell apart")
    with memory.heap_reuse() as changed:
        if not changed:
            pytest.skip("not glibc")
        inside = faults_of_a_second_block()
    after = faults_of_a_second_block()
    assert inside < PAGES // 20  # the freed block's pages were reused
    assert after > PAGES // 2  # large blocks are mapped (and unmapped) again, as glibc does by default


def test_heap_reuse_changes_nothing_where_the_environment_tunes_malloc(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")  # read by glibc at start only: here just a marker
    calls = []
    monkeypatch.setattr(memory, "_mallopt", lambda: lambda *args: calls.append(args) or 1)
    with memory.heap_reuse() as changed:
        pass
    assert not changed and calls == []
    monkeypatch.delenv("MALLOC_MMAP_MAX_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    with memory.heap_reuse() as changed:
        pass
    assert not changed and calls == []
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.rtld.nns=2")  # not malloc's
    with memory.heap_reuse(enabled=False) as changed:
        pass
    assert not changed and calls == []
    with memory.heap_reuse() as changed:
        pass
    # set for the block, then glibc's defaults (the mmap threshold is never set)
    assert changed and calls == [
        (memory.M_TRIM_THRESHOLD, memory.REUSE_TRIM_THRESHOLD), (memory.M_MMAP_MAX, 0),
        (memory.M_MMAP_MAX, memory.GLIBC_MMAP_MAX), (memory.M_TRIM_THRESHOLD, memory.GLIBC_TRIM_THRESHOLD),
    ]


def test_heap_reuse_restores_the_settings_when_the_block_fails(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_mallopt", lambda: lambda *args: calls.append(args) or 1)
    monkeypatch.setattr(memory, "_malloc_tuned", lambda: False)
    with pytest.raises(MemoryError), memory.heap_reuse():
        raise MemoryError
    assert calls[-1] == (memory.M_TRIM_THRESHOLD, memory.GLIBC_TRIM_THRESHOLD)
