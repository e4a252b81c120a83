"""What the benchmark scripts share: the machine's description, writing a table into
markdown, reading peak memory."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# glibc serves every allocation above 64 KiB with its own mmap and unmaps it on free,
# so the resident set tracks live tensors exactly and its high-water mark is the peak
# (by default glibc keeps freed memory around, which blurs the figure). Set it in the
# environment of the process that measures.
MEASURING_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}


def command_line(script: str, argv: list[str] | None) -> str:
    """The markdown line naming the command that produced a table."""
    args = argv if argv is not None else sys.argv[1:]
    return f"Command: `{' '.join(['python', f'benchmarks/{script}', *(a for a in args if a)])}`"


def publish(path: Path | None, name: str, table: str) -> None:
    """Write ``table`` into ``path`` between the ``name`` markers (when a path is given)."""
    if path is not None:
        write_block(path, name, table)
        print(f"wrote {path}")


def write_block(path: Path, name: str, table: str) -> None:
    """Replace the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in ``path``.

    The markers are appended (to a new file if needed) when they are not there yet;
    everything outside them is kept as it is.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    path.write_text(text)


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> None:
    """Reset this process's high-water mark (VmHWM) to its current resident size."""
    Path("/proc/self/clear_refs").write_text("5")


def run_isolated(call: str) -> str:
    """Evaluate ``call`` (an expression over the benchmark modules) in a fresh Python.

    The new process can import the scripts in ``benchmarks/`` and measures with
    :data:`MEASURING_ENV`; the printed value comes back as text.
    """
    here = str(Path(__file__).resolve().parent)
    code = f"import sys; sys.path.insert(0, {here!r}); print({call})"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=MEASURING_ENV
    ).stdout
    return output.strip().splitlines()[-1]


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (else what platform knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def peak_gflops(size: int = 1024, repeats: int = 20, library: str = "blas") -> float:
    """float32 GFLOP/s of a square matrix product on this machine, with torch's threads
    (the best of ``repeats``: load from other processes only ever slows it).

    ``library``: ``"blas"`` is ``a @ b`` (torch's BLAS, MKL in the pip wheels: what
    ``torch.mm`` and ``nn.Linear`` run in float32), ``"onednn"`` oneDNN's inner
    product (what rnnkit's projections run where it is measured faster,
    ``rnnkit.projection``). On the project's AVX-512 EPYC the second is more than
    twice the first, so a peak from ``a @ b`` alone understates the machine.
    """
    import torch

    from rnnkit import projection

    a, b = torch.randn(size, size), torch.randn(size, size)
    if library == "onednn" and not projection.eligible(a, b):
        return float("nan")

    def product() -> object:
        return a @ b if library == "blas" else projection.onednn(a, b, None)

    product()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def machine() -> str:
    """One line for a table's heading: CPU, cores, measured peak, torch, threads, date.

    The peak is measured now, in the run that measures the table, so that a table
    from a slower or busier machine says so.
    """
    import torch

    return (
        f"{cpu_model()}, {os.cpu_count()} cores visible, float32 1024² product peak "
        f"{peak_gflops():.0f} GFLOP/s through torch's BLAS and "
        f"{peak_gflops(library='onednn'):.0f} through oneDNN (measured in this run), "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {datetime.date.today().isoformat()}"
    )
