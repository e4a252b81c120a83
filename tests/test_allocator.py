"""The allocator setting: freed large blocks stay in the process (glibc), or not, as asked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rnnkit import allocator
from rnnkit.cli.main import main

# A fresh process allocates, touches and frees one 96 MiB tensor (above glibc's largest
# dynamic mmap threshold, 32 MiB), and prints how far its resident set fell on the free.
PROBE = """
import torch
from rnnkit import allocator
print(allocator.keep_freed_memory(), allocator.status(), sep="|")
def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
x = torch.ones(24 * 2**20)  # 96 MiB of float32, every page touched
held = resident_mib()
del x
print(held - resident_mib())
"""


def probe(mode: str) -> tuple[str, float]:
    env = {**os.environ, allocator.ENV: mode}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            check=True, env=env)  # fmt: skip
    first, fell = result.stdout.split("\n")[:2]
    return first, float(fell)


linux_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="mallopt and /proc/self/statm are glibc on Linux",
)


@linux_glibc
def test_kept_memory_stays_resident_after_a_free_and_the_default_gives_it_back() -> None:
    kept, fell = probe("keep")
    assert kept == "True|freed memory kept (mmap above 1 GiB, trim above 2 GiB)"
    assert fell < 8  # MiB: the block stays in the process for the next step
    system, fell = probe("system")
    assert system == f"False|the C library's defaults ({allocator.ENV}=system)"
    assert fell > 80  # the C library unmapped the 96 MiB at once


def test_an_unknown_mode_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(allocator, "_applied", None)  # not yet decided in this process
    monkeypatch.setenv(allocator.ENV, "jemalloc")
    with pytest.raises(ValueError, match="RNNKIT_MALLOC: expected keep or system, got 'jemalloc'"):
        allocator.keep_freed_memory()
    assert main(["datasets", "list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rnnkit datasets: error: RNNKIT_MALLOC: expected keep or system, got 'jemalloc'"]


def test_the_choice_is_made_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator, "_why", allocator._why)
    monkeypatch.setenv(allocator.ENV, "system")
    assert allocator.keep_freed_memory() is False
    monkeypatch.setenv(allocator.ENV, "keep")
    assert allocator.keep_freed_memory() is False  # decided: the thresholds are not changed twice
