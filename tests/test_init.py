"""The public API: every name resolves, and importing it stays cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys

import rnnkit


def test_every_public_name_resolves_to_what_it_says() -> None:
    for name in rnnkit.__all__:
        if name != "__version__":
            module = importlib.import_module(rnnkit._EXPORTS[name])
            assert getattr(rnnkit, name) is getattr(module, name)
    # A submodule import must not shadow a public function of the same concept.
    unrolling = importlib.import_module("rnnkit.unrolling")
    assert callable(rnnkit.unroll)
    assert rnnkit.unroll is unrolling.unroll


def test_all_lists_exactly_the_exports() -> None:
    assert set(rnnkit.__all__) == set(rnnkit._EXPORTS) | {"__version__"}


def test_importing_the_cli_does_not_import_torch() -> None:
    # `rnnkit --help` must answer at once; importing torch takes seconds.
    code = "import sys, rnnkit, rnnkit.cli.main; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_running_a_model_does_not_import_the_compiler() -> None:
    # torch._dynamo costs a second or more to import, and `rnnkit generate`/`predict`
    # promise a start-up under 2 s: only torch.compile itself may pull it in. The
    # modules below are what every task and every backend import.
    code = (
        "import sys, rnnkit, rnnkit.recurrent, rnnkit.nn, rnnkit.bptt.fused, "
        "rnnkit.bptt.scan, rnnkit.stepping, rnnkit.tasks.language_model, rnnkit.export; "
        "print(sorted(m for m in ('torch._dynamo', 'torch._inductor') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
