"""The caption task: one-to-many generation of a text from one condition (a label or a vector).

A :class:`~rnnkit.models.generator.ConditionedGenerator` learns p(text | c), one
token at a time after ``<bos>``, up to ``<eos>``. The condition c is either

* a **label**: a review for a given sentiment. The default data is rotten-tomatoes
  (``fresh``/``rotten``); tweets-sentiment works too, and ``--data`` takes the
  CSV/TSV/JSONL files of :func:`~rnnkit.data.formats.table.read_labelled_texts`
  (a text and a label column); or
* a **feature vector** (the captioning pattern: an image's features → its
  description), from the user's ``.npz`` or CSV/TSV files
  (:func:`~rnnkit.data.formats.features.read_feature_texts`). Features are
  standardised with the training part's mean and standard deviation (saved with
  the run and applied to ``--condition`` vectors too;
  :class:`~rnnkit.data.captions.Conditions`).

One file is split 80/10/10 by a permutation seeded with ``split_seed``; three
files are train, valid and test. Texts become lowercased words or characters;
the vocabulary sees the training part only. A text longer than ``max_length``
tokens is cut, and a cut text gets no ``<eos>`` (the model must not learn to end
where a text was only cut). The Trainer gets one example per text and batches
texts of similar length.

Metrics (:meth:`Caption.evaluate`): the loss per token and the perplexity, with
``<eos>`` counted as a token. For label conditions, whether the condition matters:
every text is scored under each label, and ``label_preference`` is the fraction of
texts whose own label gives the lowest NLL (chance: 1/K; also a validation metric
during training); ``other_label_perplexity`` is the perplexity of the same texts
under the other label(s). For vector conditions the same check pairs each text with
another text's vector (a seeded random pairing): ``vector_preference`` (over the
pairs of different texts) and ``other_vector_perplexity``.

:meth:`Caption.predict` reads the model as a generative classifier: for a text x
and each label y, p(y | x) = p(x | y) / Σ_y' p(x | y'), i.e. a softmax over
−NLL(x | y) (a uniform prior over labels), so its accuracy on a split is
``label_preference``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor

from rnnkit.data.batching import pad
from rnnkit.data.captions import (
    CaptionAssets,
    CaptionData,
    CaptionTask,
    Example,
    Part,
    read_data,
    read_file,
    tokenizer,
)
from rnnkit.data.errors import DataError
from rnnkit.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from rnnkit.metrics import confusion_matrix, perplexity
from rnnkit.models.generator import ConditionedBatch, ConditionedGenerator, GeneratorConfig
from rnnkit.report.page import Section
from rnnkit.tasks.options import GenerateOptions, PredictOptions
from rnnkit.tasks.task import Evaluation, Loaded, Prediction, Prepared, Task
from rnnkit.training.distributed import world_size
from rnnkit.training.sampler import Examples, Geometry, Sampler
from rnnkit.training.trainer import EarlyStoppingConfig, OptimizerConfig, TrainerConfig


@dataclass(frozen=True)
class CaptionRun:
    """The resolved configuration of a caption run (``config.toml``)."""

    kind: Literal["caption"] = "caption"
    task: CaptionTask = field(default_factory=CaptionTask)
    # vocab_size and the condition (num_labels or condition_size) come from the data.
    model: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(
        1, num_labels=1, embed=128, hidden=256, dropout=0.3, pad_id=PAD_ID, bos_id=BOS_ID,
        eos_id=EOS_ID))  # fmt: skip
    # 32 texts a step; the loss per token stops improving within a few epochs.
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=10, batch_size=32, clip_norm=5.0, optimizer=OptimizerConfig(lr=2e-3),
        early_stopping=EarlyStoppingConfig(patience=3)))  # fmt: skip


# --------------------------------------------------------------------------- the task

CaptionLoaded = Loaded[CaptionRun, CaptionAssets, ConditionedGenerator]


class Caption(Task[CaptionRun, CaptionData, CaptionAssets, Example, ConditionedBatch,
                   ConditionedGenerator]):  # fmt: skip
    """``rnnkit train caption``: texts with a label or a vector each → a conditioned generator."""

    name = "caption"
    generative = True

    def prepare(self, run: CaptionRun) -> Prepared[CaptionRun, CaptionAssets, CaptionData]:
        """Read and encode the data; fill in the vocabulary size and the condition."""
        data = read_data(run.task)
        vocab, c = data.assets.vocab, data.assets.conditions
        if c.kind == "label" and len(c.labels) < 2:
            raise DataError(f"data: the training part has one label ({c.labels[0]!r}); a label "
                            "condition needs at least two")  # fmt: skip
        model = replace(run.model, vocab_size=len(vocab),
                        num_labels=len(c.labels) if c.kind == "label" else None,
                        condition_size=len(c.features) if c.kind == "vector" else None,
                        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)  # fmt: skip
        run = replace(run, model=model)
        unit = "characters" if run.task.level == "char" else "words"
        summary = []
        for name, part in data.splits.items():
            tokens = sum(len(ids) - 1 for ids in part.ids)  # targets: tokens and EOS
            cut = sum(ids[-1] != EOS_ID for ids in part.ids)
            summary.append(f"{name}: {len(part.ids):,} texts, {tokens:,} target tokens "
                           f"({unit} + <eos>), {cut:,} cut at {run.task.max_length}")  # fmt: skip
        size = run.trainer.batch_size * run.trainer.accumulate * world_size()  # texts a step
        steps = -(-len(data.splits["train"].ids) // size)
        summary += [f"vocabulary: {len(vocab):,} tokens (4 special), built on train",
                    f"condition: {c.describe(data.splits['train'].condition)}",
                    f"an epoch: {steps:,} steps of ≤ {size} texts, batched by length"]  # fmt: skip
        return Prepared(run, summary, data.assets, data)

    def examples(self, prepared: Prepared[CaptionRun, CaptionAssets, CaptionData],
                 split: str) -> Examples[Example]:  # fmt: skip
        return prepared.data.splits[split].examples()

    def collate(self, examples: list[Example]) -> ConditionedBatch:
        tokens, lengths = pad([ids for _, ids in examples], PAD_ID)
        return ConditionedBatch(torch.stack([c for c, _ in examples]), tokens, lengths)

    def metrics(self, prepared: Prepared[CaptionRun, CaptionAssets, CaptionData],
                model: ConditionedGenerator,
                batches: Iterable[ConditionedBatch]) -> dict[str, float]:  # fmt: skip
        """Label runs: ``label_preference``, the fraction of texts whose own label scores best."""
        if model.config.num_labels is None:
            return {}
        hits = total = 0
        for batch in batches:
            nll = model.label_nll(batch)
            hits += int((nll.argmin(dim=1) == batch.condition.cpu()).sum())
            total += nll.shape[0]
        return {"label_preference": hits / max(total, 1)}

    # ----------------------------------------------------------------- answers

    def _split(self, loaded: CaptionLoaded, split: str, data: str | None) -> tuple[str, Part]:
        """A split of the run's data, or the user's file ``data``, encoded for the run."""
        task, vocab, conditions = loaded.run.task, loaded.assets.vocab, loaded.assets.conditions
        if data is not None:
            names, rows = read_file(data, conditions.kind, task)
            conditions.check(names, [c for _, c in rows], data)
            return data, Part.encode(rows, vocab, conditions, task.level, task.max_length)
        corpus = read_data(task)
        if corpus.assets.vocab != vocab or corpus.assets.conditions.labels != conditions.labels:
            raise DataError("the data's vocabulary or labels differ from the run's (was the data "
                            "changed?)")  # fmt: skip
        return split, corpus.splits[split]

    def _scores(self, loaded: CaptionLoaded, part: Part,
                score: Callable[[ConditionedBatch], Tensor]) -> Tensor:  # fmt: skip
        """``score`` of every text of ``part``, batched by length, in the part's order."""
        examples = part.examples()
        sampler = Sampler(examples, Geometry(loaded.run.trainer.batch_size), shuffle=False)
        values, order = [], []
        for group in sampler.global_batches(0):
            values.append(score(self.collate([examples.items[i] for i in group])))
            order += group
        return torch.cat(values)[torch.tensor(order).argsort()]

    def evaluate(self, loaded: CaptionLoaded, split: str, data: str | None) -> Evaluation:
        """Loss per token and perplexity on a split (or the user's file ``data``), and how
        much the condition matters (see the module's docstring). Unknown tokens count as
        ``<unk>``."""
        where, part = self._split(loaded, split, data)
        conditions, model, n = loaded.assets.conditions, loaded.model, len(part.ids)
        name = conditions.kind
        if name == "label":  # each text under every label; every text counts
            nll = self._scores(loaded, part, model.label_nll)  # (N, K)
            own_index, counts = part.condition[:, None], torch.ones(n, dtype=torch.bool)
        else:
            # Under its own vector and another text's (a permutation seeded with 0); a text
            # paired with an identical text does not count (equal NLLs by construction).
            other = torch.randperm(n, generator=torch.Generator().manual_seed(0))
            paired = Part(part.condition[other], part.ids)
            nll = torch.stack([self._scores(loaded, part, model.text_nll),
                               self._scores(loaded, paired, model.text_nll)], dim=1)  # (N, 2)  # fmt: skip
            own_index = torch.zeros(n, 1, dtype=torch.long)
            ids = part.ids
            counts = torch.tensor([ids[i] != ids[j] for i, j in enumerate(other.tolist())])
        own = nll.gather(1, own_index).squeeze(1)  # (N,)
        others = nll[torch.ones_like(nll, dtype=torch.bool).scatter(1, own_index, False)]
        others = others.view(n, -1)  # (N, K − 1)
        tokens = sum(len(ids) - 1 for ids in part.ids)
        metrics = {
            "loss": float(own.sum()) / tokens,
            "perplexity": perplexity(float(own.sum()), tokens),
            # Strictly below every other condition's NLL: a tie does not count.
            f"{name}_preference": float((own[:, None] < others).all(dim=1)[counts].double().mean()),
            f"other_{name}_perplexity": perplexity(float(others.mean(dim=1).sum()), tokens),
            "texts": float(n),
            "tokens": float(tokens),
        }
        details: dict[str, Any] = {}
        if name == "label":
            labels = list(conditions.labels)
            details["chance_preference"] = 1 / len(labels)
            gold = [labels[i] for i in part.condition.tolist()]
            predicted = [labels[i] for i in nll.argmin(dim=1).tolist()]
            details["confusion_matrix"] = {
                "labels": labels, "matrix": confusion_matrix(predicted, gold, labels)}  # fmt: skip
        return Evaluation(where, metrics, details)

    @torch.no_grad()
    def predict(self, loaded: CaptionLoaded, options: PredictOptions) -> list[Prediction]:
        """The likeliest label of each text: a softmax over −NLL(text | label)."""
        vocab, conditions = loaded.assets.vocab, loaded.assets.conditions
        if conditions.kind != "label":
            raise DataError("a vector-conditioned run has no labels to choose among; use "
                            "`rnnkit generate RUN --condition v1,v2,…` or `rnnkit evaluate`")  # fmt: skip
        texts = options.lines("texts")
        labels, task = conditions.labels, loaded.run.task
        rows = [(text, labels[0]) for text in texts]  # scored under every label: any stands in
        part = Part.encode(rows, vocab, conditions, task.level, task.max_length)
        scored = self._scores(loaded, part, loaded.model.label_nll)  # (N, K)
        results = []
        for text, ids, nll in zip(texts, part.ids, scored, strict=True):
            probs = torch.softmax(-nll, dim=0)
            order = probs.argsort(descending=True)[: options.top].tolist()
            pairs = [(labels[i], round(float(probs[i]), 6)) for i in order]
            shown = "  ".join(f"{label} {p:.3f}" for label, p in pairs)
            per_token = {label: round(float(nll[i]) / (len(ids) - 1), 6)
                         for i, label in enumerate(labels)}  # fmt: skip
            record = {"input": text, "label": pairs[0][0], "probabilities": [list(p) for p in pairs],
                      "nll_per_token": per_token}  # fmt: skip
            results.append(Prediction(f"{shown}\t{text}", record))
        return results

    def stream(self, loaded: CaptionLoaded, options: GenerateOptions) -> Iterator[Iterator[str]]:
        """``num_samples`` texts for ``--condition``, sampled (seeded) or by beam search,
        each at most ``length`` tokens after the optional prompt ``start``, yielded piece
        by piece as generated, one after another (one seeded generator for all). The
        options are checked before this returns."""
        model, vocab, conditions = loaded.model, loaded.assets.vocab, loaded.assets.conditions
        if options.condition is None:
            raise DataError(f"--condition is required for a caption run ({conditions.wanted()})")
        if options.beam > 1 and options.num_samples > 1:
            raise DataError("beam search gives one best text; drop --num-samples or sample "
                            "instead of --beam")  # fmt: skip
        condition = conditions.encode([conditions.parse(options.condition)])  # one row
        char = loaded.run.task.level == "char"
        prompt = vocab.encode(tokenizer(loaded.run.task.level).tokenize(options.start))
        # Never generated: padding and BOS are not text, and a caption that says "<unk>"
        # (a word too rare for the vocabulary) reads as a defect; EOS ends the text.
        banned = (PAD_ID, BOS_ID, UNK_ID)
        generator = torch.Generator().manual_seed(options.seed)

        def pieces() -> Iterator[str]:
            start = options.start.strip()
            yield start if char or not start else start + " "
            first = True
            tokens = model.tokens(condition, prompt, length=options.length, beam=options.beam,
                                  temperature=options.temperature, top_k=options.top_k,
                                  top_p=options.top_p, generator=generator, banned=banned)  # fmt: skip
            for token in tokens:
                for text in vocab.decode([token]):  # nothing for EOS and pad
                    yield text if char or first else " " + text
                    first = False

        return (pieces() for _ in range(options.num_samples))

    def report(self, loaded: CaptionLoaded, labels: int = 6) -> list[Section]:
        """Two generated captions for each of the first ``labels`` labels."""
        title, conditions = "Generated captions", loaded.assets.conditions
        if conditions.kind != "label":
            return [Section(title, missing="a vector-conditioned run: give a vector to "
                            "`rnnkit generate RUN --condition` to see its captions")]  # fmt: skip
        blocks = []
        for label in conditions.labels[:labels]:
            options = GenerateOptions(length=40, temperature=0.8, num_samples=2, seed=1,
                                      condition=label)  # fmt: skip
            texts = ["".join(pieces) for pieces in self.stream(loaded, options)]
            blocks.append(f"{label}:\n" + "\n".join(f"  {text}" for text in texts))
        shown = min(labels, len(conditions.labels))
        text = f"Two samples for each of {shown} labels (temperature 0.8, seed 1)."
        return [Section(title, text=[text], blocks=blocks)]

    def step_names(self, loaded: CaptionLoaded, batch: ConditionedBatch) -> list[str]:
        """The first text's input tokens: ``<bos>`` and its words (the targets' inputs)."""
        inputs = batch.tokens[0, : int(batch.lengths[0]) - 1]
        return loaded.assets.vocab.decode(inputs, strip_special=False)


TASK = Caption()
