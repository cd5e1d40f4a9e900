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
    if memory.startup_malloc_settings()[memory.M_MMAP_MAX] == 0:
        pytest.skip("started with MALLOC_MMAP_MAX_=0: glibc maps no block")
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


def test_heap_reuse_returns_to_the_settings_the_process_started_with(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_mallopt", lambda: lambda *args: calls.append(args) or 1)
    with memory.heap_reuse(enabled=False) as changed:
        pass
    assert not changed and calls == []
    with memory.heap_reuse() as changed:
        pass
    assert changed and calls == [
        (memory.M_TRIM_THRESHOLD, memory.REUSE_TRIM_THRESHOLD), (memory.M_MMAP_MAX, 0),
        (memory.M_MMAP_MAX, memory.GLIBC_MMAP_MAX), (memory.M_TRIM_THRESHOLD, memory.GLIBC_TRIM_THRESHOLD),
    ]
    # a worker started with Dask's trim threshold gets it back, not glibc's default
    started = memory.startup_malloc_settings(b"PATH=/bin\0MALLOC_TRIM_THRESHOLD_=65536\0")
    monkeypatch.setattr(memory, "startup_malloc_settings", lambda: started)
    calls.clear()
    with memory.heap_reuse():
        pass
    assert calls[2:] == [(memory.M_MMAP_MAX, memory.GLIBC_MMAP_MAX), (memory.M_TRIM_THRESHOLD, 65536)]


def test_startup_malloc_settings_read_what_glibc_reads():
    defaults = {memory.M_TRIM_THRESHOLD: memory.GLIBC_TRIM_THRESHOLD, memory.M_MMAP_MAX: memory.GLIBC_MMAP_MAX}
    assert memory.startup_malloc_settings(b"") == defaults
    assert memory.startup_malloc_settings(b"MALLOC_TRIM_THRESHOLD=1\0MALLOC_MMAP_MAX_=x\0") == defaults  # not glibc's
    tunables = b"GLIBC_TUNABLES=glibc.rtld.nns=2:glibc.malloc.mmap_max=7:glibc.malloc.trim_threshold=4096\0"
    assert memory.startup_malloc_settings(b"MALLOC_MMAP_MAX_=3\0" + tunables) == {
        memory.M_TRIM_THRESHOLD: 4096, memory.M_MMAP_MAX: 7}
    assert memory.startup_malloc_settings(b"MALLOC_MMAP_MAX_=3\0")[memory.M_MMAP_MAX] == 3
    # this process's, from /proc/self/environ: what it started with, not os.environ now
    assert set(memory.startup_malloc_settings()) == set(defaults)


def test_heap_reuse_restores_the_settings_when_the_block_fails(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_mallopt", lambda: lambda *args: calls.append(args) or 1)
    with pytest.raises(MemoryError), memory.heap_reuse():
        raise MemoryError
    assert calls[-1] == (memory.M_TRIM_THRESHOLD, memory.GLIBC_TRIM_THRESHOLD)
