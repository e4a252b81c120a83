"""The sequence-to-sequence task: source → target of another length (G2P, translation).

1. read ``(source, target)`` pairs (a bundled dataset, cmudict by default, or the
   user's TSV files: one file split 80/10/10, or three for train, valid and test);
2. split each side into units (``char`` or space-separated ``word`` tokens) and build
   a source and a target vocabulary on the training pairs only;
3. hand the Trainer one example per pair, with its target length: it batches pairs
   of similar target length (:mod:`rnnkit.training.sampler`), so the decoder, which
   runs as many steps as the batch's longest target, pads little (on cmudict, half
   the decoder steps of random batches);
4. train :class:`~rnnkit.models.seq2seq.Seq2Seq` (encoder–decoder with attention),
   teacher-forced (or with a constant teacher-forcing ratio below 1);
5. decode every held-out source greedily or with a beam (``task.beam``) and score
   the outputs: token error rate (PER for G2P), sequence error rate (WER for G2P)
   and corpus BLEU, beside the teacher-forced loss and perplexity.

Several references per source. CMUdict lists several pronunciations for some words
(``read``: R EH1 D and R IY1 D). Pairs are grouped by their source, and what is held
out is sources, not pairs: a single file is split by its distinct sources, and the
bundled cmudict split holds out words too, so no test word was seen in training
under another pronunciation. Each distinct source is decoded once and scored
against its *closest* reference (:func:`rnnkit.metrics.closest_reference_scores`),
as is standard G2P practice. Rates are per distinct source (``sources`` in the
metrics); the loss is over every pair (``pairs``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import pad
from rnnkit.data.errors import DataError
from rnnkit.data.formats.pairs import Level, read_pairs, split_units
from rnnkit.data.forms import Pairs
from rnnkit.data.registry import fetch_splits
from rnnkit.data.splits import SPLITS, check_data_paths, check_parts, split_groups
from rnnkit.data.vocab import BOS_ID, EOS_ID, PAD_ID, Vocabulary
from rnnkit.metrics import closest_reference_scores, perplexity
from rnnkit.models.seq2seq import PairBatch, Seq2Seq, Seq2SeqConfig
from rnnkit.report import figures
from rnnkit.report.page import Section, Table, fmt, image
from rnnkit.tasks.options import PredictOptions
from rnnkit.tasks.task import Evaluation, Loaded, Prediction, Prepared, Task
from rnnkit.training.sampler import Examples
from rnnkit.training.trainer import EarlyStoppingConfig, OptimizerConfig, TrainerConfig

# What the metrics are called on grapheme-to-phoneme data (the README's names).
G2P_NAMES = {"token_error_rate": "PER (phoneme error rate) on G2P data",
             "sequence_error_rate": "WER (word error rate) on G2P data"}  # fmt: skip


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
    min_freq: int = 1
    split_seed: int = 0
    beam: int = 1
    length_penalty: float = 1.0
    max_output: int = 50
    eval_decode: bool = True

    def __post_init__(self) -> None:
        check_positive_ints(self, "min_freq", "beam", "max_output")
        check_data_paths(self.data)
        if not (math.isfinite(self.length_penalty) and self.length_penalty >= 0):
            raise ValueError(f"length_penalty: expected a number ≥ 0, got {self.length_penalty}")


@dataclass(frozen=True)
class Seq2SeqRun:
    """The resolved configuration of a seq2seq run (``config.toml``)."""

    kind: Literal["seq2seq"] = "seq2seq"
    task: Seq2SeqTask = field(default_factory=Seq2SeqTask)
    # The vocabulary sizes are placeholders that prepare() fills in; the special ids
    # are the Vocabulary's (pad 0, BOS 2, EOS 3). Luong's "general" score: Bahdanau's
    # additive score maps every memory position again at every decoder step, 1.5
    # times slower on a CPU for no gain on G2P.
    model: Seq2SeqConfig = field(default_factory=lambda: Seq2SeqConfig(
        source_vocab=4, target_vocab=4, embed=64, hidden=256, attention="general",
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID))  # fmt: skip
    # 128 pairs a batch; early stopping on the decoded validation WER (PER's sibling).
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=10, batch_size=128, clip_norm=5.0, optimizer=OptimizerConfig(lr=3e-3),
        early_stopping=EarlyStoppingConfig(monitor="val_sequence_error_rate", mode="min",
                                           patience=3)))  # fmt: skip


Pair = tuple[str, str]
Example = tuple[list[int], list[int]]  # source ids, BOS + target ids + EOS
Parts = dict[str, list[Pair]]  # the task's pairs by split


@dataclass(frozen=True)
class Vocabularies:
    """What a trained encoder–decoder keeps: its source and target vocabularies."""

    source: Vocabulary
    target: Vocabulary


def read_parts(task: Seq2SeqTask) -> Parts:
    """The task's pairs as ``train``, ``valid`` and ``test``; a single file is split
    80/10/10 by its distinct sources, every pair going where its source went."""
    if len(task.data) == 3:
        return {name: read_pairs(path) for name, path in zip(SPLITS, task.data, strict=True)}
    if task.data:
        return split_groups(read_pairs(task.data[0]), lambda pair: pair[0], seed=task.split_seed,
                            least=10, what="distinct sources", path=task.data[0])  # fmt: skip
    return fetch_splits(task.dataset, Pairs, "source/target pairs")


def vocabularies(task: Seq2SeqTask, parts: Parts) -> Vocabularies:
    """Both vocabularies, built on the training pairs only."""
    check_parts(parts, "pairs", ("train", "valid"))
    train = parts["train"]
    source = Vocabulary.build((split_units(s, task.source_level) for s, _ in train),
                              min_freq=task.min_freq)  # fmt: skip
    target = Vocabulary.build((split_units(t, task.target_level) for _, t in train),
                              min_freq=task.min_freq)  # fmt: skip
    return Vocabularies(source, target)


def source_ids(source: str, vocab: Vocabulary, task: Seq2SeqTask) -> list[int]:
    """A source's ids; unknown units become ``<unk>``."""
    units = split_units(source, task.source_level)
    if not units:
        raise DataError(f"source {source!r} has no {task.source_level} units")
    return vocab.encode(units)


def encode(task: Seq2SeqTask, vocabs: Vocabularies, pairs: Sequence[Pair]) -> Examples[Example]:
    """One example per pair, (source ids, BOS + target ids + EOS), bucketed by the
    target's length: the decoder's steps are most of a batch's work."""
    items = [(source_ids(source, vocabs.source, task),
              [BOS_ID, *vocabs.target.encode(split_units(target, task.target_level)), EOS_ID])
             for source, target in pairs]  # fmt: skip
    return Examples(items, lengths=[len(target) for _, target in items])


def _join(units: Sequence[str], level: Level) -> str:
    return "".join(units) if level == "char" else " ".join(units)


# One decoded source: (the source, its output units, its references as units).
Scored = tuple[str, list[str], list[list[str]]]


SeqLoaded = Loaded[Seq2SeqRun, Vocabularies, Seq2Seq]


class Transduce(Task[Seq2SeqRun, Parts, Vocabularies, Example, PairBatch, Seq2Seq]):
    """``rnnkit train seq2seq``: source/target pairs → an encoder–decoder."""

    name = "seq2seq"

    def prepare(self, run: Seq2SeqRun) -> Prepared[Seq2SeqRun, Vocabularies, Parts]:
        """Read the pairs and build both vocabularies; fill in their sizes and special ids."""
        parts = read_parts(run.task)
        vocabs = vocabularies(run.task, parts)
        model = replace(run.model, source_vocab=len(vocabs.source),
                        target_vocab=len(vocabs.target), pad_id=PAD_ID, bos_id=BOS_ID,
                        eos_id=EOS_ID)  # fmt: skip
        trainer, stopping = run.trainer, run.trainer.early_stopping
        if not run.task.eval_decode and stopping is not None and "error" in stopping.monitor:
            # Without decoding there is no error rate to watch: the loss stands in.
            stopping = replace(stopping, monitor="val_loss", mode="min")
            trainer = replace(trainer, early_stopping=stopping)
        run = replace(run, model=model, trainer=trainer)
        summary = [f"{name}: {len(pairs):,} pairs, {len({s for s, _ in pairs}):,} distinct sources"
                   for name, pairs in parts.items()]  # fmt: skip
        train_sources = {s for s, _ in parts["train"]}
        shared = sum(s in train_sources for s in {s for s, _ in parts["test"]})
        summary.append(f"vocabularies (4 special each, built on train): source "
                       f"{len(vocabs.source):,} {run.task.source_level} units, target "
                       f"{len(vocabs.target):,} {run.task.target_level} units")  # fmt: skip
        summary.append(f"test sources also in train: {shared}")
        return Prepared(run, summary, vocabs, parts)

    def examples(self, prepared: Prepared[Seq2SeqRun, Vocabularies, Parts],
                 split: str) -> Examples[Example]:  # fmt: skip
        return encode(prepared.run.task, prepared.assets, prepared.data[split])

    def collate(self, examples: list[Example]) -> PairBatch:
        source, source_lengths = pad([s for s, _ in examples], PAD_ID)
        target, target_lengths = pad([t for _, t in examples], PAD_ID)
        return PairBatch(source, source_lengths, target, target_lengths)

    def metrics(self, prepared: Prepared[Seq2SeqRun, Vocabularies, Parts], model: Seq2Seq,
                batches: Iterable[PairBatch]) -> dict[str, float]:  # fmt: skip
        """The decoded validation scores (``task.eval_decode``), greedy. Decoding reads
        the validation pairs grouped by source, not the loss batches."""
        run = prepared.run
        if not run.task.eval_decode:
            return {}
        return self._scored(model, run, prepared.assets, prepared.data["valid"], beam=1)[0]

    def _decode(self, model: Seq2Seq, run: Seq2SeqRun, vocabs: Vocabularies,
                sources: Sequence[str], beam: int) -> list[tuple[list[str], float]]:  # fmt: skip
        """Each source's output units and log-probability (greedy, or ``beam`` wide),
        in order, in batches of the run's batch size."""
        device = next(model.parameters()).device
        task, size = run.task, run.trainer.batch_size
        outputs = []
        for start in range(0, len(sources), size):
            ids = [source_ids(s, vocabs.source, task) for s in sources[start : start + size]]
            source, lengths = pad(ids, PAD_ID)
            found = model.translate(source.to(device), lengths.to(device), beam=beam,
                                    max_length=task.max_output,
                                    length_penalty=task.length_penalty)  # fmt: skip
            outputs += [(vocabs.target.decode(row[:n]), float(score))
                        for row, n, score in zip(found.tokens.tolist(), found.lengths.tolist(),
                                                 found.scores.tolist(), strict=True)]  # fmt: skip
        return outputs

    def _scored(self, model: Seq2Seq, run: Seq2SeqRun, vocabs: Vocabularies,
                pairs: Sequence[Pair], beam: int) -> tuple[dict[str, float], list[Scored]]:  # fmt: skip
        """Decode each distinct source of ``pairs`` once and score it against its
        closest reference: the metrics, and each source with its output and references."""
        grouped: dict[str, list[list[str]]] = {}
        for source, target in pairs:
            grouped.setdefault(source, []).append(split_units(target, run.task.target_level))
        outputs = [units for units, _ in self._decode(model, run, vocabs, list(grouped), beam)]
        metrics = closest_reference_scores(outputs, list(grouped.values()))
        scored = [(s, o, refs) for (s, refs), o in zip(grouped.items(), outputs, strict=True)]
        return {**metrics, "sources": float(len(grouped))}, scored

    def evaluate(self, loaded: SeqLoaded, split: str, data: str | None) -> Evaluation:
        """Token and sequence error rates and BLEU of the decoded distinct sources
        (closest reference, module docstring), and the teacher-forced loss and
        perplexity over every pair, on a split of the run's data or on the TSV file
        ``data``."""
        run = loaded.run
        if data is not None:
            pairs, where = read_pairs(data), data
        else:
            pairs, where = read_parts(run.task)[split], split
        if not pairs:
            raise DataError(f"the {where} part has no pairs")
        examples = encode(run.task, loaded.assets, pairs)
        total, count = self.loss(loaded.model, examples, run.trainer.batch_size)
        metrics, scored = self._scored(loaded.model, run, loaded.assets, pairs, run.task.beam)
        level = run.task.target_level
        mistakes = [{"source": s, "output": _join(o, level),
                     "references": [_join(r, level) for r in refs]}
                    for s, o, refs in scored if o not in refs]  # fmt: skip
        details: dict[str, Any] = {
            "decoding": f"beam {run.task.beam}" if run.task.beam > 1 else "greedy",
            "scoring": "each distinct source against its closest reference",
            "names": G2P_NAMES,
            "mistakes": mistakes[:10],
        }
        metrics = {**metrics, "loss": total / count,
                   "perplexity": perplexity(total, int(count)), "pairs": float(len(pairs))}  # fmt: skip
        return Evaluation(where, metrics, details)

    def predict(self, loaded: SeqLoaded, options: PredictOptions) -> list[Prediction]:
        """The output sequence of each source (greedy, or ``options.beam`` wide), with
        its log-probability."""
        sources = options.lines("sources")
        outputs = self._decode(loaded.model, loaded.run, loaded.assets, sources, options.beam)
        results = []
        for source, (units, score) in zip(sources, outputs, strict=True):
            text = _join(units, loaded.run.task.target_level)
            record = {"input": source, "output": text, "tokens": units, "score": round(score, 6)}
            results.append(Prediction(f"{source} → {text}  ({score:.3f})", record))
        return results

    def report(self, loaded: SeqLoaded) -> list[Section]:
        """The attention over the first held-out pair, and the test split decoded."""
        parts = read_parts(loaded.run.task)
        return [self._attention(loaded, parts), self._translations(loaded, parts["test"])]

    def _attention(self, loaded: SeqLoaded, parts: Parts) -> Section:
        title = "Attention"
        if loaded.model.attention is None:
            return Section(title, missing="this seq2seq run has attention = 'none'")
        split = "test" if parts["test"] else "valid"
        source, target = parts[split][0]
        [example] = encode(loaded.run.task, loaded.assets, [(source, target)]).items
        weights = loaded.model.attention_weights(self.collate([example]))[0]  # (T−1, S)
        xs = loaded.assets.source.decode(example[0], strip_special=False)
        ys = loaded.assets.target.decode(example[1][1:], strip_special=False)
        png = figures.heatmap(weights[: len(ys), : len(xs)].numpy(), xlabel="source",
                              ylabel="target", title="attention α", xticks=xs, yticks=ys,
                              cmap="Blues", symmetric=False)  # fmt: skip
        return Section(title, text=[f"α_t over the source while predicting each target token "
                                    f"(teacher-forced on the first {split} pair: {source!r} → "
                                    f"{target!r})."], images=[image(png, "attention heatmap")])  # fmt: skip

    def _translations(self, loaded: SeqLoaded, pairs: list[Pair], limit: int = 10) -> Section:
        beam = loaded.run.task.beam
        metrics, scored = self._scored(loaded.model, loaded.run, loaded.assets, pairs, beam)
        shown = ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
        rows = [[source, " ".join(output), " | ".join(" ".join(r) for r in refs)]
                for source, output, refs in scored[:limit]]  # fmt: skip
        return Section("Decoded examples",
                       text=[f"Test split, beam {beam}: {shown}. The first {len(rows)} sources:"],
                       tables=[Table(["source", "output", "reference(s)"], rows)])  # fmt: skip

    def step_names(self, loaded: SeqLoaded, batch: PairBatch) -> list[str]:
        """The first row's source units: the encoder's steps."""
        return loaded.assets.source.decode(batch.source[0, : int(batch.source_lengths[0])],
                                           strip_special=False)  # fmt: skip


TASK = Transduce()
