"""Readers for the user's own files, one module per format.

Every reader takes a path, returns plain Python values and raises
:class:`~rnnkit.data.errors.DataError` (``FILE:LINE: what is wrong (what was
expected)``) for any problem with the file, and no other exception.

* :mod:`~rnnkit.data.formats.table`: labelled texts from CSV, TSV or JSONL.
* :mod:`~rnnkit.data.formats.conll`: tagged sentences (CoNLL, CoNLL-U) and the
  BIO/BIOES schemes (``detect_scheme``, ``validate``, ``to_bio``, ``to_bioes``).
* :mod:`~rnnkit.data.formats.text`: language-model text from a file or a folder.
* :mod:`~rnnkit.data.formats.series`: forecasting series from CSV.
* :mod:`~rnnkit.data.formats.pairs`: sequence-to-sequence TSV pairs.
* :mod:`~rnnkit.data.formats.ts`: labelled multichannel sequences (``.ts``, ``.npz``).
"""

from rnnkit.data.formats.common import check_labels_seen
from rnnkit.data.formats.conll import detect_scheme, read_tagged, to_bio, to_bioes
from rnnkit.data.formats.pairs import read_pairs, split_units
from rnnkit.data.formats.series import TimeSeries, read_series
from rnnkit.data.formats.table import read_labelled_texts
from rnnkit.data.formats.text import read_text
from rnnkit.data.formats.ts import read_npz_sequences, read_ts

__all__ = [
    "TimeSeries",
    "check_labels_seen",
    "detect_scheme",
    "read_labelled_texts",
    "read_npz_sequences",
    "read_pairs",
    "read_series",
    "read_tagged",
    "read_text",
    "read_ts",
    "split_units",
    "to_bio",
    "to_bioes",
]
