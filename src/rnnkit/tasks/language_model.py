"""The language-model task: text → vocabulary → contiguous streams → LSTM → bits per character.

This is the classic char-rnn / word-language-model recipe, end to end:

1. read the text (a bundled dataset, or the user's files split 90/5/5 by position);
2. tokenise (characters or words), build the vocabulary on the training part only;
3. cut each part into ``batch_size`` contiguous streams and chunks of ``steps`` tokens
   (:func:`rnnkit.data.batching.stream_batches`);
4. train :class:`~rnnkit.models.language_model.LanguageModel` through its stream view
   with the state carried from chunk to chunk (``Trainer(carry_state=True)``);
5. report the validation loss as bits per character (or perplexity for words).

A run folder holds the resolved :class:`LanguageModelRun` (``config.toml``), the
metrics and the checkpoints, whose artifacts include the vocabulary, so
:func:`load_run` rebuilds everything :func:`generate` needs.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from rnnkit.configuration import check_positive_ints, from_mapping
from rnnkit.data.batching import stream_batches
from rnnkit.data.errors import DataError
from rnnkit.data.formats.text import read_text
from rnnkit.data.vocab import CharTokenizer, Vocabulary, WordTokenizer
from rnnkit.decoding import sample
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig, StreamLM, TextBatch
from rnnkit.training.checkpoint import has_checkpoint, load_checkpoint
from rnnkit.training.trainer import Trainer, TrainerConfig, TrainResult

VOCAB_ARTIFACT = "vocab.json"


@dataclass(frozen=True)
class LanguageModelTask:
    """What to read and how to cut it.

    Attributes:
        dataset: a bundled text dataset (``rnnkit datasets list``), used when
            ``data`` is not given.
        data: the user's UTF-8 text file or folder; split 90/5/5 by position.
        level: ``char`` or ``word`` tokens.
        batch_size: parallel streams per chunk (B).
        steps: tokens per chunk (T): truncated BPTT's window.
        min_freq, max_vocab: vocabulary limits (training part only).
    """

    dataset: str = "shakespeare"
    data: str | None = None
    level: Literal["char", "word"] = "char"
    batch_size: int = 32
    steps: int = 100
    min_freq: int = 1
    max_vocab: int | None = None

    def __post_init__(self) -> None:
        check_positive_ints(self, "batch_size", "steps", "min_freq", "max_vocab")


@dataclass(frozen=True)
class LanguageModelRun:
    """The resolved configuration of a language-model run (``config.toml``)."""

    task: LanguageModelTask = field(default_factory=LanguageModelTask)
    model: LanguageModelConfig = field(default_factory=lambda: LanguageModelConfig(1))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass(frozen=True)
class Corpus:
    """The task's text as token ids, with the vocabulary that made them."""

    vocab: Vocabulary
    splits: dict[str, list[int]]


def tokenizer(level: str) -> CharTokenizer | WordTokenizer:
    return CharTokenizer() if level == "char" else WordTokenizer()


def read_corpus(task: LanguageModelTask) -> Corpus:
    """Read, split and encode the task's text; the vocabulary sees training text only."""
    if task.data is not None:
        text = read_text(task.data)
        cut_valid, cut_test = int(len(text) * 0.90), int(len(text) * 0.95)
        parts = {
            "train": text[:cut_valid],
            "valid": text[cut_valid:cut_test],
            "test": text[cut_test:],
        }
    else:
        from rnnkit.data.forms import TextCorpus
        from rnnkit.data.registry import fetch

        dataset = fetch(task.dataset)
        if not isinstance(dataset, TextCorpus):
            raise DataError(
                f"dataset: {task.dataset!r} is not a text corpus (it is a {type(dataset).__name__})"
            )
        parts = dict(dataset.splits)
    split = tokenizer(task.level)
    tokens = {name: split.tokenize(text) for name, text in parts.items()}
    vocab = Vocabulary.build([tokens["train"]], min_freq=task.min_freq, max_size=task.max_vocab)
    return Corpus(vocab, {name: vocab.encode(part) for name, part in tokens.items()})


def chunks(ids: list[int], task: LanguageModelTask) -> list[TextBatch]:
    """Consecutive ``(B, ≤T)`` chunks of B contiguous streams."""
    batches = []
    for inputs, targets in stream_batches(ids, task.batch_size, task.steps):
        lengths = torch.full((inputs.shape[0],), inputs.shape[1], dtype=torch.long)
        batches.append(TextBatch(inputs, targets, lengths))
    return batches


def _first(items: list[TextBatch]) -> TextBatch:
    return items[0]  # each item is already a whole chunk of B streams


def train(run: LanguageModelRun, out: Path | str, *, resume: bool = False) -> TrainResult:
    """Train (or resume) a run into the folder ``out``."""
    corpus = read_corpus(run.task)
    run = replace(run, model=replace(run.model, vocab_size=len(corpus.vocab)))
    # Each training item is one chunk of B streams, in order: batch size 1, no shuffle.
    trainer_config = replace(run.trainer, batch_size=1, shuffle=False, carry_state=True)
    run = replace(run, trainer=trainer_config)
    torch.manual_seed(trainer_config.seed)
    model = LanguageModel(run.model)
    trainer = Trainer(
        StreamLM(model),
        trainer_config,
        chunks(corpus.splits["train"], run.task),
        _first,
        val=chunks(corpus.splits["valid"], run.task),
        run_dir=out,
        resume=resume,
        artifacts={VOCAB_ARTIFACT: corpus.vocab.to_json().encode()},
        config_to_save=run,
    )
    return trainer.fit()


def load_run(run_dir: Path | str) -> tuple[LanguageModel, Vocabulary, LanguageModelRun]:
    """The trained model (best checkpoint, else last), its vocabulary and configuration."""
    folder = Path(run_dir)
    config_file = folder / "config.toml"
    if not config_file.exists():
        raise DataError("not a run folder (config.toml missing)", path=folder)
    run = from_mapping(
        LanguageModelRun, tomllib.loads(config_file.read_text()), where=str(config_file)
    )
    which = (
        folder
        / "checkpoints"
        / ("best" if has_checkpoint(folder / "checkpoints" / "best") else "last")
    )
    checkpoint = load_checkpoint(which)
    vocab = Vocabulary.from_json(checkpoint.artifacts[VOCAB_ARTIFACT], path=str(which))
    model = LanguageModel(run.model)
    # The checkpoint holds the stream view's weights: "model." prefixes.
    model.load_state_dict({k.removeprefix("model."): v for k, v in checkpoint.weights.items()})
    model.eval()
    return model, vocab, run


@torch.no_grad()
def evaluate(run_dir: Path | str, split: str = "test") -> dict[str, float]:
    """Loss per token on a split of the run's data: nats, bits per token, perplexity."""
    model, vocab, run = load_run(run_dir)
    corpus = read_corpus(run.task)
    if corpus.vocab != vocab:
        raise DataError("the data's vocabulary differs from the run's (was the text changed?)")
    total = count = 0.0
    state = None
    for batch in chunks(corpus.splits[split], run.task):
        out, state = StreamLM(model)(batch, state)
        total += float(out.total)
        count += float(out.n_targets)
    nats = total / count
    unit = "bits_per_character" if run.task.level == "char" else "bits_per_word"
    return {"loss": nats, unit: nats / math.log(2), "perplexity": math.exp(nats), "tokens": count}


@torch.no_grad()
def generate(
    run_dir: Path | str,
    start: str,
    *,
    length: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    num_samples: int = 1,
) -> list[str]:
    """``num_samples`` continuations of ``start``, each ``length`` tokens, seeded."""
    model, vocab, run = load_run(run_dir)
    split = tokenizer(run.task.level)
    prompt_ids = vocab.encode(split.tokenize(start)) or [vocab.encode(["\n"])[0]]
    prompt = torch.tensor([prompt_ids] * num_samples)  # (S, P)
    last, state = model.prime(prompt)
    generator = torch.Generator().manual_seed(seed)
    out = sample(model, last, state, max_length=length, temperature=temperature, top_k=top_k,
                 top_p=top_p, generator=generator)  # fmt: skip
    texts = []
    for row in out.tokens.tolist():
        texts.append(start + split.detokenize(vocab.decode(row)) if run.task.level == "char"
                     else " ".join([start, split.detokenize(vocab.decode(row))]))  # fmt: skip
    return texts
