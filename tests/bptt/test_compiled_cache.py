"""Where the compiled loops are built: one folder per version of the sources, shared by clones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rnnkit.bptt import compiled


def checkout(root: Path, sources: list[Path]) -> Path:
    """A copy of the C++ sources as another clone would hold them; its loops.cpp."""
    root.mkdir()
    for source in sources:
        shutil.copyfile(source, root / source.name)
    return root / "loops.cpp"


def test_the_build_folder_is_named_by_the_sources_not_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "builds"))
    sources = compiled._files()
    assert compiled._SOURCE in sources and any(f.suffix == ".h" for f in sources)
    first = checkout(tmp_path / "clone-a", sources)
    second = checkout(tmp_path / "clone-b", sources)

    monkeypatch.setattr(compiled, "_SOURCE", first)
    folder_a = compiled.build_folder()
    monkeypatch.setattr(compiled, "_SOURCE", second)
    assert compiled.build_folder() == folder_a  # two clones, one build
    assert folder_a.parent == tmp_path / "builds"

    (second.parent / "extra.cpp").write_text("// another source file\n")
    with_extra = compiled.build_folder()
    assert with_extra != folder_a  # every .cpp beside loops.cpp is part of the library
    second.write_text(second.read_text() + "\n// edited\n")
    assert compiled.build_folder() not in (folder_a, with_extra)  # edited code, new build


def test_a_finished_build_is_loaded_without_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    if compiled.load() is None:
        pytest.skip(f"no compiled loops here: {compiled.status()}")
    from torch.utils import cpp_extension

    def no_compiling(**_: object) -> None:
        raise AssertionError("cpp_extension.load was called for a library that is built")

    monkeypatch.setattr(cpp_extension, "load", no_compiling)
    assert (compiled.build_folder() / f"{compiled.build_folder().name}.so").exists()
    assert compiled._build() is not None


def test_the_default_root_is_torchs_extension_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils import cpp_extension

    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    assert compiled.build_folder().parent == Path(cpp_extension.get_default_build_root())
