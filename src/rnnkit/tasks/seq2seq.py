"""The sequence-to-sequence task: source → target of another length (G2P, translation).

1. read ``(source, target)`` pairs (a bundled dataset, cmudict by default, or the
   user's TSV files: one file split 80/10/10, or three for train, valid and test);
2. split each side into units (``char`` or space-separated ``word`` tokens) and build
   a source and a target vocabulary on the training pairs only;
3. train :class:`~rnnkit.models.seq2seq.Seq2Seq` (encoder–decoder with attention),
   teacher-forced (or with a constant teacher-forcing ratio below 1);
4. decode every held-out source greedily or with a beam (``task.beam``) and score
   the outputs: token error rate (PER for G2P), sequence error rate (WER for G2P)
   and corpus BLEU, beside the teacher-forced loss and perplexity.

Several references per source. CMUdict lists several pronunciations for some words
(``read``: R EH1 D and R IY1 D). Pairs are grouped by their source, and what is held
out is sources, not pairs: a single file is split by its distinct sources, and the
bundled cmudict split holds out words too, so no test word was seen in training
under another pronunciation. Each distinct source is decoded once and scored
against its *closest* reference, the one at the least edit distance from the
output (the first such in file order on a tie), as is standard G2P practice: the
output is correct (WER) if it equals any reference, its errors (PER) are counted
against the nearest one, and BLEU uses that reference too. Rates are per distinct
source (``sources`` in the metrics); the loss is over every pair (``pairs``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import bucket_batches, pad, split_indices
from rnnkit.data.errors import DataError
from rnnkit.data.formats.pairs import read_pairs, split_units
from rnnkit.data.formats.text import read_text
from rnnkit.data.vocab import BOS_ID, EOS_ID, PAD_ID, Vocabulary
from rnnkit.decoding import beam_search, greedy
from rnnkit.metrics import bleu, edit_distance, perplexity, sequence_error_rate, token_error_rate
from rnnkit.models import build_model
from rnnkit.models.seq2seq import PairBatch, Seq2Seq, Seq2SeqConfig
from rnnkit.tasks.task import (
    Evaluation,
    Prediction,
    PredictOptions,
    Prepared,
    artifact,
    artifact_file,
    load_into,
    load_weights,
    read_config,
)
from rnnkit.training.trainer import (
    EarlyStoppingConfig,
    OptimizerConfig,
    Trainer,
    TrainerConfig,
    TrainResult,
)

SOURCE_ARTIFACT = "source_vocab.json"
TARGET_ARTIFACT = "target_vocab.json"
SPLITS = ("train", "valid", "test")

Level = Literal["char", "word"]


@dataclass(frozen=True)
class Seq2SeqTask:
    """What to read, how to cut it into units, and how to decode for the metrics.

    Attributes:
        dataset: a bundled pairs dataset (``rnnkit datasets list``), used when
            ``data`` is not given.
        data: the user's ``source TAB target`` files: one, split 80/10/10 by a
            seeded shuffle of its distinct sources, or three for train, valid, test.
        source_level, target_level: ``char`` units or space-separated ``word``
            tokens (G2P: characters in, phoneme tokens out).
        batch_size: pairs per batch. Batches hold pairs of similar target length
            (:func:`~rnnkit.data.batching.bucket_batches`, fixed for the run; the
            Trainer shuffles their order each epoch), so the decoder, which runs as
            many steps as the batch's longest target, pads little: on cmudict half
            the decoder steps of random batches.
        min_freq: training units seen fewer times become ``<unk>``.
        split_seed: the shuffle that splits a single file.
        beam: the beam width of the metrics' decoding (1: greedy).
        length_penalty: the beam's GNMT length penalty α (0: raw log-probability).
        max_output: the most target units decoded per source.
        eval_decode: also decode the validation sources at every evaluation, so
            training reports (and can stop early on) ``val_sequence_error_rate``.
    """

    dataset: str = "cmudict"
    data: tuple[str, ...] = ()
    source_level: Level = "char"
    target_level: Level = "word"
    batch_size: int = 128
    min_freq: int = 1
    split_seed: int = 0
    beam: int = 1
    length_penalty: float = 1.0
    max_output: int = 50
    eval_decode: bool = True

    def __post_init__(self) -> None:
        check_positive_ints(self, "batch_size", "min_freq", "beam", "max_output")
        if len(self.data) not in (0, 1, 3):
            raise ValueError(
                f"data: expected one file, or three (train, valid, test), got {len(self.data)}"
            )
        if not (math.isfinite(self.length_penalty) and self.length_penalty >= 0):
            raise ValueError(f"length_penalty: expected a number ≥ 0, got {self.length_penalty}")


def _model() -> Seq2SeqConfig:
    # The vocabulary sizes are placeholders that prepare() fills in; the special ids
    # are the Vocabulary's (pad 0, BOS 2, EOS 3).
    # Luong's "general" score: Bahdanau's additive score maps every memory position
    # again at every decoder step, 1.5 times slower on a CPU for no gain on G2P.
    return Seq2SeqConfig(source_vocab=4, target_vocab=4, embed=64, hidden=256,
                         attention="general", pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)  # fmt: skip


def _trainer() -> TrainerConfig:
    # Each training item is a whole bucketed batch (task.batch_size pairs): batch size 1.
    stopping = EarlyStoppingConfig(monitor="val_sequence_error_rate", mode="min", patience=3)
    return TrainerConfig(epochs=10, batch_size=1, clip_norm=5.0,
                         optimizer=OptimizerConfig(lr=3e-3), early_stopping=stopping)  # fmt: skip


@dataclass(frozen=True)
class Seq2SeqRun:
    """The resolved configuration of a seq2seq run (``config.toml``).

    ``model.source_vocab`` and ``model.target_vocab`` are filled in by :func:`prepare`.
    """

    kind: Literal["seq2seq"] = "seq2seq"
    task: Seq2SeqTask = field(default_factory=Seq2SeqTask)
    model: Seq2SeqConfig = field(default_factory=_model)
    trainer: TrainerConfig = field(default_factory=_trainer)


Run = Seq2SeqRun

Pair = tuple[str, str]


@dataclass(frozen=True)
class Corpus:
    """The task's pairs by split, with the vocabularies built on the training pairs."""

    pairs: dict[str, list[Pair]]
    source_vocab: Vocabulary
    target_vocab: Vocabulary


def _split_by_source(pairs: list[Pair], seed: int) -> dict[str, list[Pair]]:
    """80/10/10 of the distinct sources; every pair goes where its source went."""
    sources = list(dict.fromkeys(source for source, _ in pairs))
    parts = split_indices(len(sources), (0.8, 0.1, 0.1), seed)
    where = {sources[i]: name for name, part in zip(SPLITS, parts, strict=True) for i in part}
    out: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        out[where[pair[0]]].append(pair)
    return out


def read_parts(task: Seq2SeqTask) -> dict[str, list[Pair]]:
    """The task's pairs as ``train``, ``valid`` and ``test``."""
    if len(task.data) == 3:
        return {name: read_pairs(path) for name, path in zip(SPLITS, task.data, strict=True)}
    if task.data:
        pairs = read_pairs(task.data[0])
        if len({source for source, _ in pairs}) < 3:
            raise DataError("fewer than 3 distinct sources: too few to split into train, "
                            "valid and test", path=task.data[0])  # fmt: skip
        return _split_by_source(pairs, task.split_seed)
    from rnnkit.data.forms import Pairs
    from rnnkit.data.registry import fetch

    dataset = fetch(task.dataset)
    if not isinstance(dataset, Pairs):
        raise DataError(f"dataset: {task.dataset!r} is not source/target pairs "
                        f"(it is a {type(dataset).__name__})")  # fmt: skip
    return {name: dataset.splits[name] for name in SPLITS}


def read_corpus(task: Seq2SeqTask) -> Corpus:
    """Read and split the pairs; both vocabularies see the training pairs only."""
    parts = read_parts(task)
    for name in ("train", "valid"):
        if not parts[name]:
            raise DataError(f"data: the {name} part has no pairs")
    source_vocab = Vocabulary.build((split_units(s, task.source_level) for s, _ in parts["train"]),
                                    min_freq=task.min_freq)  # fmt: skip
    target_vocab = Vocabulary.build((split_units(t, task.target_level) for _, t in parts["train"]),
                                    min_freq=task.min_freq)  # fmt: skip
    return Corpus(parts, source_vocab, target_vocab)


Example = tuple[list[int], list[int]]


def encode(pairs: Sequence[Pair], source_vocab: Vocabulary, target_vocab: Vocabulary,
           task: Seq2SeqTask) -> list[Example]:  # fmt: skip
    """(source ids, BOS + target ids + EOS) per pair; unknown units become ``<unk>``."""
    out = []
    for source, target in pairs:
        units = split_units(source, task.source_level)
        if not units:
            raise DataError(f"source {source!r} has no {task.source_level} units")
        out.append((source_vocab.encode(units),
                    [BOS_ID, *target_vocab.encode(split_units(target, task.target_level)),
                     EOS_ID]))  # fmt: skip
    return out


def collate(examples: list[Example]) -> PairBatch:
    source, source_lengths = pad([s for s, _ in examples], PAD_ID)
    target, target_lengths = pad([t for _, t in examples], PAD_ID)
    return PairBatch(source, source_lengths, target, target_lengths)


def batches(examples: Sequence[Example], batch_size: int, *, seed: int, shuffle: bool
            ) -> list[PairBatch]:  # fmt: skip
    """The examples as padded batches of similar target lengths."""
    lengths = [len(target) for _, target in examples]
    groups = bucket_batches(lengths, batch_size, seed=seed, shuffle=shuffle)
    return [collate([examples[i] for i in group]) for group in groups]


def _first(items: list[PairBatch]) -> PairBatch:
    return items[0]  # each item is already a whole batch


def references(pairs: Sequence[Pair]) -> dict[str, list[str]]:
    """Each distinct source (in first-seen order) with all its targets, in file order."""
    grouped: dict[str, list[str]] = {}
    for source, target in pairs:
        grouped.setdefault(source, []).append(target)
    return grouped


def closest(output: Sequence[str], refs: Sequence[Sequence[str]]) -> list[str]:
    """The reference at the least edit distance from ``output`` (the first on a tie)."""
    distances = [edit_distance(output, ref) for ref in refs]
    return list(refs[distances.index(min(distances))])


def scores(outputs: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]]
           ) -> dict[str, float]:  # fmt: skip
    """TER, SER and BLEU of each output against its closest reference (module docstring)."""
    chosen = [closest(output, options) for output, options in zip(outputs, refs, strict=True)]
    return {
        "token_error_rate": token_error_rate(outputs, chosen),
        "sequence_error_rate": sequence_error_rate(outputs, chosen),
        "bleu": bleu(outputs, chosen),
        "sources": float(len(outputs)),
    }


@dataclass(frozen=True)
class Output:
    """One decoded target: its units and its log-probability under the model."""

    units: list[str]
    score: float


@torch.no_grad()
def decode(model: Seq2Seq, sources: Sequence[str], source_vocab: Vocabulary,
           target_vocab: Vocabulary, task: Seq2SeqTask, *, beam: int = 1,
           batch_size: int = 256) -> list[Output]:  # fmt: skip
    """Greedy (``beam`` 1) or beam-search outputs for ``sources``, in order."""
    model.eval()
    device = next(model.parameters()).device
    outputs: list[Output] = []
    for start in range(0, len(sources), batch_size):
        chunk = sources[start : start + batch_size]
        ids = [source_vocab.encode(split_units(s, task.source_level)) for s in chunk]
        for i, row in enumerate(ids):
            if not row:
                raise DataError(f"source {chunk[i]!r} has no {task.source_level} units")
        source, lengths = pad(ids, PAD_ID)
        bos, state = model.start(source.to(device), lengths.to(device))
        if beam == 1:
            found = greedy(model, bos, state, max_length=task.max_output, eos_id=EOS_ID,
                           pad_id=PAD_ID)  # fmt: skip
        else:
            found = beam_search(model, bos, state, max_length=task.max_output, beam_size=beam,
                                length_penalty=task.length_penalty, eos_id=EOS_ID,
                                pad_id=PAD_ID).best  # fmt: skip
        for row, length, score in zip(found.tokens.tolist(), found.lengths.tolist(),
                                      found.scores.tolist(), strict=True):  # fmt: skip
            outputs.append(Output(target_vocab.decode(row[:length]), float(score)))
    return outputs


def decoded_scores(model: Seq2Seq, pairs: Sequence[Pair], source_vocab: Vocabulary,
                   target_vocab: Vocabulary, task: Seq2SeqTask, *, beam: int = 1
                   ) -> tuple[dict[str, float], list[tuple[str, list[str], list[list[str]]]]]:  # fmt: skip
    """The decoded metrics over the distinct sources of ``pairs``, and each
    (source, output, references) triple."""
    grouped = references(pairs)
    sources = list(grouped)
    outputs = decode(model, sources, source_vocab, target_vocab, task, beam=beam)
    refs = [[split_units(t, task.target_level) for t in grouped[s]] for s in sources]
    units = [output.units for output in outputs]
    return scores(units, refs), list(zip(sources, units, refs, strict=True))


def prepare(run: Seq2SeqRun) -> Prepared[Seq2SeqRun]:
    """Read the pairs and build both vocabularies; fill in their sizes and special ids."""
    corpus = read_corpus(run.task)
    model = replace(run.model, source_vocab=len(corpus.source_vocab),
                    target_vocab=len(corpus.target_vocab), pad_id=PAD_ID, bos_id=BOS_ID,
                    eos_id=EOS_ID)  # fmt: skip
    trainer = replace(run.trainer, batch_size=1)
    stopping = trainer.early_stopping
    if not run.task.eval_decode and stopping is not None and "error" in stopping.monitor:
        trainer = replace(trainer, early_stopping=replace(stopping, monitor="val_loss", mode="min"))
    run = replace(run, model=model, trainer=trainer)
    summary = []
    for name, pairs in corpus.pairs.items():
        sources = len({s for s, _ in pairs})
        summary.append(f"{name}: {len(pairs):,} pairs, {sources:,} distinct sources")
    train_sources = {s for s, _ in corpus.pairs["train"]}
    shared = sum(s in train_sources for s in {s for s, _ in corpus.pairs["test"]})
    summary.append(f"vocabularies (4 special each, built on train): source "
                   f"{len(corpus.source_vocab):,} {run.task.source_level} units, target "
                   f"{len(corpus.target_vocab):,} {run.task.target_level} units")  # fmt: skip
    summary.append(f"test sources also in train: {shared}")
    return Prepared(run, summary, corpus)


def fit(prepared: Prepared[Seq2SeqRun], out: Path | str, *, resume: bool = False) -> TrainResult:
    """Train (or resume) the prepared run into the folder ``out``."""
    run, corpus = prepared.run, prepared.data
    torch.manual_seed(run.trainer.seed)
    model = build_model(run.model)
    examples = {
        name: encode(corpus.pairs[name], corpus.source_vocab, corpus.target_vocab, run.task)
        for name in ("train", "valid")
    }
    seed, size = run.trainer.seed, run.task.batch_size
    train_items = batches(examples["train"], size, seed=seed, shuffle=True)
    val_items = batches(examples["valid"], size, seed=seed, shuffle=False)

    def evaluate_fn(net: nn.Module, loss_batches: Iterator[PairBatch]) -> dict[str, float]:
        # Decoding reads the validation pairs grouped by source, not the loss batches.
        assert isinstance(net, Seq2Seq)
        metrics, _ = decoded_scores(net, corpus.pairs["valid"], corpus.source_vocab,
                                    corpus.target_vocab, run.task)  # fmt: skip
        return metrics

    trainer = Trainer(
        model,
        run.trainer,
        train_items,
        _first,
        val=val_items,
        evaluate=evaluate_fn if run.task.eval_decode else None,
        run_dir=out,
        resume=resume,
        artifacts={
            SOURCE_ARTIFACT: corpus.source_vocab.to_json().encode(),
            TARGET_ARTIFACT: corpus.target_vocab.to_json().encode(),
        },
        config_to_save=run,
    )
    return trainer.fit()


def train(run: Seq2SeqRun, out: Path | str, *, resume: bool = False) -> TrainResult:
    """Prepare and train (or resume) a run into the folder ``out``."""
    return fit(prepare(run), out, resume=resume)


def load_run(run_dir: Path | str) -> tuple[Seq2Seq, Vocabulary, Vocabulary, Seq2SeqRun]:
    """The trained model (best checkpoint, else last), both vocabularies and the configuration."""
    run = read_config(run_dir, Seq2SeqRun)
    checkpoint = load_weights(run_dir)
    vocabs = [Vocabulary.from_json(artifact(checkpoint, name, run_dir),
                                   path=artifact_file(checkpoint, name))
              for name in (SOURCE_ARTIFACT, TARGET_ARTIFACT)]  # fmt: skip
    model = build_model(run.model)
    assert isinstance(model, Seq2Seq)
    load_into(model, checkpoint)
    model.eval()
    return model, vocabs[0], vocabs[1], run


def _join(units: Sequence[str], level: Level) -> str:
    return "".join(units) if level == "char" else " ".join(units)


@torch.no_grad()
def evaluate(run_dir: Path | str, *, split: str = "test", data: str | None = None) -> Evaluation:
    """Token and sequence error rates and BLEU of the decoded distinct sources (closest
    reference, module docstring), and the teacher-forced loss and perplexity over
    every pair, on a split of the run's data or on the TSV file ``data``."""
    model, source_vocab, target_vocab, run = load_run(run_dir)
    if data is not None:
        pairs, where = read_pairs(data), data
    else:
        pairs, where = read_parts(run.task)[split], split
    if not pairs:
        raise DataError(f"the {where} part has no pairs")
    examples = encode(pairs, source_vocab, target_vocab, run.task)
    total = count = 0.0
    for start in range(0, len(examples), 256):
        loss = model(collate(examples[start : start + 256]))
        total, count = total + float(loss.total), count + float(loss.n_targets)
    metrics, triples = decoded_scores(model, pairs, source_vocab, target_vocab, run.task,
                                      beam=run.task.beam)  # fmt: skip
    level = run.task.target_level
    mistakes = [
        {"source": s, "output": _join(o, level), "references": [_join(r, level) for r in refs]}
        for s, o, refs in triples
        if o not in refs
    ]
    details: dict[str, Any] = {
        "decoding": f"beam {run.task.beam}" if run.task.beam > 1 else "greedy",
        "scoring": "each distinct source against its closest reference",
        "mistakes": mistakes[:10],
    }
    metrics = {**metrics, "loss": total / count,
               "perplexity": perplexity(total, int(count)), "pairs": float(len(pairs))}  # fmt: skip
    return Evaluation(where, metrics, details)


def _inputs(options: PredictOptions) -> list[str]:
    sources = list(options.inputs)
    if options.file is not None:
        sources += [line.strip() for line in read_text(options.file).splitlines() if line.strip()]
    if not sources:
        raise DataError("predict: give sources as arguments or --file (one per line)")
    return sources


@torch.no_grad()
def predict(run_dir: Path | str, options: PredictOptions) -> list[Prediction]:
    """The output sequence of each source (greedy, or ``options.beam`` wide), with its
    log-probability."""
    model, source_vocab, target_vocab, run = load_run(run_dir)
    sources = _inputs(options)
    outputs = decode(model, sources, source_vocab, target_vocab, run.task, beam=options.beam)
    results = []
    for source, output in zip(sources, outputs, strict=True):
        text = _join(output.units, run.task.target_level)
        record = {"input": source, "output": text, "tokens": output.units,
                  "score": round(output.score, 6)}  # fmt: skip
        results.append(Prediction(f"{source} → {text}  ({output.score:.3f})", record))
    return results
