"""Host memory kept for reuse: large CPU tensors allocated again without fresh pages.

Each case runs in its own interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vidistill.host_memory import ENVIRONMENT_VARIABLE, _glibc

# Tensors of 40 to 150 MiB (above glibc's largest adaptive mmap threshold, 32 MiB) made, filled
# and freed in a loop, as a training step's activations are: minor page faults counted in each
# of the last 8 of 24 rounds (the heap's layout can take a few rounds to settle).
SCRIPT = """
import json, resource, torch
from vidistill.host_memory import keep_freed_memory
kept = keep_freed_memory()
sizes = [100 << 20, 40 << 20, 64 << 20, 150 << 20]
faults, pages = [], []
for round in range(24):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(sizes[round % 4], dtype=torch.uint8).fill_(1)
    y = torch.empty(sizes[(round + 1) % 4], dtype=torch.uint8).fill_(2)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    pages.append((x.numel() + y.numel()) // 4096)
    del x, y
print(json.dumps({"kept": kept, "faults": faults[-8:], "pages": pages[-8:]}))
"""


def _run(setting: str | None) -> dict:
    environment = dict(os.environ)
    environment.pop(ENVIRONMENT_VARIABLE, None)
    if setting is not None:
        environment[ENVIRONMENT_VARIABLE] = setting
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=environment, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(_glibc() is None, reason="the thresholds are glibc's")
def test_freed_tensors_are_reused_without_fresh_pages():
    """Kept: once the heap has settled, the rounds touch less than 1% fresh pages. Left to the
    system (VIDISTILL_HOST_MEMORY=system), every round faults in most of its pages again."""
    kept, system = _run(None), _run("system")
    assert kept["kept"] is True and system["kept"] is False
    assert sum(kept["faults"]) < 0.01 * sum(kept["pages"])
    for faults, pages in zip(system["faults"], system["pages"], strict=True):
        assert faults > 0.5 * pages


TRIM_SCRIPT = """
import json, os, torch
from vidistill.host_memory import kept_while

def resident():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

with kept_while() as kept:
    before = resident()
    tensors = [torch.empty(50 << 20, dtype=torch.uint8).fill_(1) for _ in range(8)]
    del tensors
    inside = resident()
print(json.dumps({"kept": kept, "before": before, "inside": inside, "after": resident()}))
"""


@pytest.mark.skipif(_glibc() is None, reason="the thresholds are glibc's")
def test_a_run_gives_back_what_it_kept_when_it_ends():
    """Inside the block 400 MB freed stay resident (kept for reuse); after it they are gone,
    so runs one after another in a process do not pile up their heaps."""
    result = subprocess.run(
        [sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, check=True
    )
    sizes = json.loads(result.stdout.strip().splitlines()[-1])
    assert sizes["kept"] is True
    assert sizes["inside"] - sizes["before"] > 350e6
    assert sizes["after"] - sizes["before"] < 50e6


def test_other_settings_do_nothing_outside_glibc(monkeypatch):
    """Without glibc the call declines and says so by its result."""
    from vidistill import host_memory

    monkeypatch.setattr(host_memory, "_glibc", lambda: None)
    host_memory.keep_freed_memory.cache_clear()
    try:
        assert host_memory.keep_freed_memory() is False
    finally:
        host_memory.keep_freed_memory.cache_clear()
