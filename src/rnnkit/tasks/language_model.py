"""The language-model task: text → vocabulary → contiguous streams → LSTM → bits per character.

This is the classic char-rnn / word-language-model recipe, end to end:

1. read the text (a bundled dataset, or the user's files: one file or folder split
   90/5/5 by position, or three files for train, valid and test);
2. tokenise (characters or words), build the vocabulary on the training part only
   (:mod:`rnnkit.data.corpus`);
3. cut each part into R contiguous rows, R = ``trainer.batch_size`` ×
   ``trainer.accumulate`` × processes, and each row into chunks of ``steps`` tokens,
   continuous examples: the Trainer carries each row's state from chunk to chunk
   (and runs TBPTT(k1, k2) within a chunk with ``trainer.tbptt``);
4. train a :class:`~rnnkit.models.language_model.LanguageModel`;
5. report the loss as bits per character (or perplexity for words).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from rnnkit.configuration import check_positive_ints
from rnnkit.data import corpus
from rnnkit.data.corpus import Chunk, Corpus
from rnnkit.data.errors import DataError
from rnnkit.data.formats.text import read_text
from rnnkit.data.forms import TextCorpus
from rnnkit.data.registry import fetch_as
from rnnkit.data.splits import check_data_paths
from rnnkit.data.vocab import Vocabulary
from rnnkit.metrics import bits_per_character, perplexity
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig, TextBatch
from rnnkit.report.page import Section, Table, fmt
from rnnkit.tasks.options import GenerateOptions, PredictOptions
from rnnkit.tasks.task import Evaluation, Loaded, Prediction, Prepared, Task
from rnnkit.training.distributed import world_size
from rnnkit.training.sampler import Examples
from rnnkit.training.trainer import OptimizerConfig, TrainerConfig


@dataclass(frozen=True)
class LanguageModelTask:
    """What to read and how to cut it (the streams per micro-batch: ``trainer.batch_size``).

    Attributes:
        dataset: the bundled text read when ``data`` is empty (``rnnkit datasets
            list``: shakespeare, ptb, ptb-char, …).
        data: the user's UTF-8 text: one file or folder, split 90/5/5 by position,
            or three paths for train, valid and test.
        level: ``char`` or ``word`` tokens.
        steps: tokens per chunk (T): the window of BPTT; the state goes on across.
        min_freq, max_vocab: vocabulary limits (training part only).
    """

    dataset: str = "shakespeare"
    data: tuple[str, ...] = ()
    level: Literal["char", "word"] = "char"
    steps: int = 100
    min_freq: int = 1
    max_vocab: int | None = None

    def __post_init__(self) -> None:
        check_positive_ints(self, "steps", "min_freq", "max_vocab")
        check_data_paths(self.data)


@dataclass(frozen=True)
class LanguageModelRun:
    """The resolved configuration of a language-model run (``config.toml``)."""

    kind: Literal["lm"] = "lm"
    task: LanguageModelTask = field(default_factory=LanguageModelTask)
    # vocab_size: filled in from the data by LanguageModeling.prepare
    model: LanguageModelConfig = field(default_factory=lambda: LanguageModelConfig(1, embed=64))
    # 32 streams a step, one chunk each, in order (streams are never shuffled); clipping
    # at 5 is char-rnn's and Zaremba's.
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        epochs=1, batch_size=32, shuffle=False, clip_norm=5.0,
        optimizer=OptimizerConfig(lr=2e-3)))  # fmt: skip


@dataclass(frozen=True)
class LMAssets:
    """What a trained language model keeps besides its weights: its vocabulary."""

    vocab: Vocabulary


Trained = Loaded[LanguageModelRun, LMAssets, LanguageModel]


def read_corpus(task: LanguageModelTask) -> Corpus:
    """Read, split and encode the task's text (the user's files, else the bundled
    dataset); the vocabulary sees training text only."""
    parts = (corpus.read_files(task.data) if task.data
             else fetch_as(task.dataset, TextCorpus, "a text corpus").splits)  # fmt: skip
    return corpus.encode(parts, task.level, task.min_freq, task.max_vocab)


def rows(run: LanguageModelRun) -> int:
    """R, the streams a split is cut into: all the rows of one optimizer step."""
    return run.trainer.batch_size * run.trainer.accumulate * world_size()


class LanguageModeling(Task[LanguageModelRun, Corpus, LMAssets, Chunk, TextBatch,
                            LanguageModel]):  # fmt: skip
    """``rnnkit train lm``: running text → a character- or word-level language model."""

    name = "lm"
    generative = True

    def prepare(self, run: LanguageModelRun) -> Prepared[LanguageModelRun, LMAssets, Corpus]:
        """Read and encode the text; fill in the vocabulary size."""
        text, R = read_corpus(run.task), rows(run)
        for name in ("train", "valid"):
            if len(text.splits[name]) < 2 * R:
                raise DataError(f"data: the {name} part has {len(text.splits[name])} tokens, too "
                                f"few for {R} streams (lower --batch-size or give more text)")  # fmt: skip
        run = replace(run, model=replace(run.model, vocab_size=len(text.vocab)))
        unit = "characters" if run.task.level == "char" else "words"
        summary = [f"{name}: {len(ids):,} {unit}" for name, ids in text.splits.items()]
        summary.append(f"vocabulary: {len(text.vocab):,} tokens (4 special), built on train")
        chunks = -(-(len(text.splits["train"]) // R - 1) // run.task.steps)
        summary.append(f"an epoch: {chunks:,} chunks of {R} streams × {run.task.steps} tokens")
        return Prepared(run, summary, LMAssets(text.vocab), text)

    def examples(self, prepared: Prepared[LanguageModelRun, LMAssets, Corpus],
                 split: str) -> Examples[Chunk]:  # fmt: skip
        run = prepared.run
        return corpus.stream_examples(prepared.data.splits[split], rows(run), run.task.steps)

    def collate(self, examples: list[Chunk]) -> TextBatch:
        return corpus.collate_chunks(examples)

    def evaluate(self, loaded: Trained, split: str, data: str | None) -> Evaluation:
        """Loss per token on a split of the run's data (or the text file ``data``): nats,
        bits per token, perplexity. Unknown tokens of a file count as ``<unk>``."""
        task, vocab = loaded.run.task, loaded.assets.vocab
        if data is not None:
            ids, split = vocab.encode(corpus.tokenizer(task.level).tokenize(read_text(data))), data
        else:
            text = read_corpus(task)
            if text.vocab != vocab:
                raise DataError("the data's vocabulary differs from the run's (was the text "
                                "changed?)")  # fmt: skip
            ids = text.splits[split]
        if len(ids) < 2:
            raise DataError("too little text to evaluate (expected at least 2 tokens)", path=data)
        R = min(rows(loaded.run), len(ids) // 2)  # the training rows; fewer for a short text
        total, count = self.loss(loaded.model, corpus.stream_examples(ids, R, task.steps), R)
        unit, n = "bits_per_character" if task.level == "char" else "bits_per_word", int(count)
        return Evaluation(split, {"loss": total / count, unit: bits_per_character(total, n),
                                  "perplexity": perplexity(total, n), "tokens": count})  # fmt: skip

    @torch.no_grad()
    def predict(self, loaded: Trained, options: PredictOptions) -> list[Prediction]:
        """The ``top`` likeliest next tokens after each prompt, with probabilities."""
        model, vocab = loaded.model, loaded.assets.vocab
        prompts = [*options.inputs, *(read_text(options.file).splitlines() if options.file else [])]
        if not prompts:
            raise DataError("give prompts as arguments or --file (one per line)")
        results = []
        for prompt in prompts:
            ids = torch.tensor([corpus.prompt_ids(prompt, vocab, loaded.run.task.level)])
            logits, _ = model.decode_step(*model.prime(ids))  # (1, V)
            probs = torch.softmax(logits[0].float(), dim=-1)  # (V,)
            values, top = probs.topk(min(options.top, probs.numel()))
            tokens = vocab.decode(top.tolist(), strip_special=False)
            pairs = [(t, round(float(p), 6)) for t, p in zip(tokens, values, strict=True)]
            shown = "  ".join(f"{t!r} {p:.3f}" for t, p in pairs)
            results.append(Prediction(f"{prompt!r} → {shown}",
                                      {"input": prompt, "next": [list(x) for x in pairs]}))  # fmt: skip
        return results

    def stream(self, loaded: Trained, options: GenerateOptions) -> Iterator[Iterator[str]]:
        """``num_samples`` continuations of ``start`` (a newline if none), each ``length``
        tokens, each yielded piece by piece: the prompt, then one token's text at a time.

        A sample holds one row's state and nothing else, whatever the length; the
        samples share one seeded generator, so sample 1 is the same whatever
        ``num_samples``. The options are checked before this returns.
        """
        model, vocab, level = loaded.model, loaded.assets.vocab, loaded.run.task.level
        if options.beam > 1 and options.num_samples > 1:
            raise DataError("beam search gives one text, the likeliest; sample several with "
                            "--num-samples and no --beam")  # fmt: skip
        start = options.start or "\n"
        prompt = torch.tensor([corpus.prompt_ids(start, vocab, level)])  # (1, P)
        cut = loaded.run.task.min_freq > 1 or loaded.run.task.max_vocab is not None
        banned = corpus.never_targets(vocab, level, cut)  # never sampled
        generator = torch.Generator().manual_seed(options.seed)

        def tokens() -> Iterator[int]:
            with torch.no_grad():  # the stepper's path (this body runs outside any caller's)
                last, state = model.prime(prompt)  # (1,), the state after the prompt
            # No EOS in a stream model: exactly `length` tokens; beam search (α = 0) ranks
            # by log-probability alone.
            yield from options.tokens(model, last, state, generator, banned,
                                      length_penalty=0.0)  # fmt: skip

        return (corpus.pieces(tokens(), vocab, level, start) for _ in range(options.num_samples))

    def report(self, loaded: Trained) -> list[Section]:
        """The headline figure, bits per character (perplexity for words), on the
        validation and test splits; and three generated samples."""
        char = loaded.run.task.level == "char"
        unit = "bits_per_character" if char else "bits_per_word"
        scores = {split: self.evaluate(loaded, split, None).metrics for split in ("valid", "test")}
        bits, ppl = fmt(scores["valid"][unit]), fmt(scores["valid"]["perplexity"])
        head = (f"{bits} bits per character (perplexity {ppl})" if char
                else f"perplexity {ppl} ({bits} bits per word)")  # fmt: skip
        table = Table(["split", unit.replace("_", " "), "perplexity", "loss (nats)", "tokens"],
                      [[s, *(fmt(m[k]) for k in (unit, "perplexity", "loss", "tokens"))]
                       for s, m in scores.items()])  # fmt: skip
        figure = Section("Bits per character" if char else "Perplexity", tables=[table],
                         text=[f"Validation split: {head}."])  # fmt: skip
        options = GenerateOptions(length=300, temperature=0.8, num_samples=3, seed=1)
        samples = ["".join(pieces) for pieces in self.stream(loaded, options)]
        text = "Three samples, temperature 0.8, seed 1, from a newline."
        return [figure, Section("Generated samples", text=[text], blocks=samples)]

    def step_names(self, loaded: Trained, batch: TextBatch) -> list[str]:
        return loaded.assets.vocab.decode(batch.inputs[0].tolist(), strip_special=False)


TASK = LanguageModeling()
