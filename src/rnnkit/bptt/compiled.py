"""The compiled time loops of the fused backend: built on first use, optional.

``loops.cpp`` (next to this file) holds the forward and backward time loops of
:mod:`rnnkit.bptt.fused`, each step one matrix multiply plus one pass over its
elements. It is compiled with the machine's C++ compiler the first time a fused
Function runs on the CPU in float32 or float64, or ahead of time by ``make setup``
(``python -m rnnkit.bptt.compiled``). The build takes about 15 s, says so on
stderr, and is cached under torch's extension folder (``TORCH_EXTENSIONS_DIR`` to
move it) in a folder named by the hash of the sources, the flags and torch's
version (:func:`build_folder`): clones of the same code share it, and later calls
load it directly. It is loaded as ``torch.ops.rnnkit_loops``.

Without a compiler, or with ``RNNKIT_COMPILED_LOOPS=0``, the fused Functions run
their Python loops instead: the same buffers, the same results, slower at small
sizes. ``RNNKIT_COMPILED_LOOPS=1`` makes a failed build an error instead of a
warning. :func:`status` says which path is in use and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

_SOURCE = Path(__file__).with_name("loops.cpp")
_ENV = "RNNKIT_COMPILED_LOOPS"
_DTYPES = (torch.float32, torch.float64)

_lock = threading.Lock()
_ops: Any = None  # torch.ops.rnnkit_loops once built
_failure = ""  # why the build failed, once it has
_enabled = True  # switched by `enabled()`, for tests and comparisons
# Steps per chunk of the backward loops' gradient buffers; 0 sizes them to about
# 4 MiB. Tests set small values to run many chunk boundaries on tiny inputs.
chunk = 0


def _mode() -> str:
    value = os.environ.get(_ENV, "auto").strip().lower()
    if value in ("0", "off", "false", "no"):
        return "off"
    if value in ("1", "on", "true", "yes", "require"):
        return "require"
    return "auto"


def _flags() -> list[str]:
    # -fopenmp-simd honours `#pragma omp simd` (scan.cpp's backward loops, which gcc's
    # own analysis gives up on) without linking OpenMP's runtime.
    flags = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
    # The float32 passes are written to vectorise; AVX2 + FMA where the CPU has them
    # (the build folder's name includes the flags, so CPUs never share a build).
    capability = torch.backends.cpu.get_cpu_capability()
    if capability in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    if capability == "AVX512":
        flags += ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mprefer-vector-width=512"]
    return flags


def _ninja_on_path() -> None:
    """cpp_extension runs ``ninja`` from PATH; the PyPI wheel's may not be on it."""
    if shutil.which("ninja") is not None:
        return
    with contextlib.suppress(ImportError):
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def _sources() -> list[Path]:
    """Every C++ source of the library: ``loops.cpp`` and any other ``*.cpp`` beside it."""
    return sorted(_SOURCE.parent.glob("*.cpp"))


def _files() -> list[Path]:
    """The sources and the headers they include (``*.h`` beside them)."""
    return sorted([*_sources(), *_SOURCE.parent.glob("*.h")])


def build_folder() -> Path:
    """Where the library for these sources, flags and torch version is (or will be) built.

    The folder's name carries a hash of the sources' bytes, the compiler flags and
    torch's version, so two checkouts of the same code share one build, and a
    checkout with different code gets its own instead of rebuilding the other's.
    """
    digest = hashlib.sha256()
    for source in _files():
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    digest.update(" ".join(_flags()).encode() + torch.__version__.encode())
    from torch import _appdirs

    # torch.utils.cpp_extension.get_default_build_root's folder, without importing
    # cpp_extension (0.1 s) in processes that only load a finished build.
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.realpath(
        _appdirs.user_cache_dir(appname="torch_extensions")  # type: ignore[no-untyped-call]
    )
    return Path(root) / f"rnnkit_loops_{digest.hexdigest()[:12]}"


def _build() -> Any:
    import fcntl

    folder = build_folder()
    name = folder.name
    library = folder / f"{name}.so"
    folder.mkdir(parents=True, exist_ok=True)
    # One builder at a time, across processes: a second process waits here and then
    # finds the finished library rather than linking over it while it is loaded.
    with open(folder / ".rnnkit-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not library.exists():
            from torch.utils import cpp_extension

            _ninja_on_path()
            # The sources are copied into the build folder, so the build does not
            # name this checkout's paths: ninja would rebuild for every other clone.
            (folder / "src").mkdir(exist_ok=True)
            for source in _files():
                copy = folder / "src" / source.name
                if not copy.exists() or copy.read_bytes() != source.read_bytes():
                    shutil.copyfile(source, copy)
            copies = [str(folder / "src" / source.name) for source in _sources()]
            print(
                f"rnnkit: compiling the fused loops into {folder} (once per version of "
                f"their source, about 15 s; make setup does this ahead) …",
                file=sys.stderr,
                flush=True,
            )
            cpp_extension.load(
                name=name,
                sources=copies,
                extra_cflags=_flags(),
                build_directory=str(folder),
                is_python_module=False,
                verbose=False,
            )
        else:
            torch.ops.load_library(str(library))  # type: ignore[no-untyped-call]
    return torch.ops.rnnkit_loops


# What RNNKIT_PROJECTION pins in the loops' own measured choices (loops.cpp): the
# per-step product's path, the backward's weight-gradient library and its input-gradient one.
_PINS = {"blas": ("packed", "aten", "aten"), "onednn": ("onednn", "onednn", "onednn")}


def _pinned(ops: Any) -> Any:
    """The loops with their library choices pinned where ``RNNKIT_PROJECTION`` says so
    (``blas``: MKL's packed GEMM and ``at::addmm``; ``onednn``: oneDNN wherever it
    runs), so that one switch makes every float32 product's library fixed."""
    from rnnkit.projection import mode

    pins = _PINS.get(mode())
    if pins is not None:
        ops.step_product(pins[0])
        ops.weight_grad_path(pins[1])
        ops.input_grad_path(pins[2])
    return ops


def load() -> Any:
    """``torch.ops.rnnkit_loops``, building it on first call; ``None`` if unavailable."""
    global _ops, _failure
    if _ops is not None or _failure or _mode() == "off":
        return _ops
    with _lock:
        if _ops is None and not _failure:
            try:
                _ops = _pinned(_build())
            except Exception as error:  # a missing compiler surfaces as many error types
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                _failure = f"{type(error).__name__}: {first}"
                if _mode() == "require":
                    raise RuntimeError(
                        f"{_ENV}=1 but the fused loops did not compile: {_failure}"
                    ) from error
                warnings.warn(
                    f"rnnkit: the fused loops did not compile ({_failure}); "
                    f"using the Python loops (same results, slower). "
                    f"Set {_ENV}=0 to skip the attempt.",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _ops


def loops_for(*tensors: Tensor) -> Any:
    """The compiled loops if they can run on these tensors, else ``None``.

    They run on CPU tensors of float32 or float64; anything else (bf16, CUDA) keeps
    the Python loops.
    """
    if not _enabled or _mode() == "off":
        return None
    if any(t.device.type != "cpu" or t.dtype not in _DTYPES for t in tensors):
        return None
    return load()


@contextlib.contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Within the block, use (True) or bypass (False) the compiled loops."""
    global _enabled
    previous, _enabled = _enabled, flag
    try:
        yield
    finally:
        _enabled = previous


def status() -> str:
    """One line: which loops the fused backend runs on the CPU, and why."""
    if _mode() == "off":
        return f"Python loops ({_ENV}=0)"
    ops = load()
    if ops is None:
        return f"Python loops (compiling failed: {_failure})"
    return "compiled loops (torch.ops.rnnkit_loops)"


if __name__ == "__main__":  # `make setup` builds the loops ahead of the first training step
    print(f"rnnkit fused backend: {status()}")
