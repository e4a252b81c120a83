"""The language-model task: text → vocabulary → contiguous streams → LSTM → bits per character.

This is the classic char-rnn / word-language-model recipe, end to end:

1. read the text (a bundled dataset, or the user's files: one file or folder split
   90/5/5 by position, or three files for train, valid and test);
2. tokenise (characters or words), build the vocabulary on the training part only;
3. cut each part into ``batch_size`` contiguous streams and chunks of ``steps`` tokens
   (:func:`rnnkit.data.batching.stream_batches`);
4. train :class:`~rnnkit.models.language_model.LanguageModel` through its stream view
   with the state carried from chunk to chunk (``Trainer(carry_state=True)``), or
   through TBPTT(k1, k2) within each chunk when ``trainer.tbptt`` is set;
5. report the loss as bits per character (or perplexity for words).

The task follows the contract of :mod:`rnnkit.tasks.task`; the checkpoint's
artifacts include the vocabulary, so :func:`load_run` rebuilds everything
:func:`generate` and :func:`predict` need.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from rnnkit import decoding
from rnnkit.configuration import check_positive_ints
from rnnkit.data.batching import stream_batches
from rnnkit.data.errors import DataError
from rnnkit.data.formats.text import read_text
from rnnkit.data.vocab import BOS, EOS, PAD, UNK, CharTokenizer, Vocabulary, WordTokenizer
from rnnkit.decoding import beam_search
from rnnkit.models.language_model import (
    LanguageModel,
    LanguageModelConfig,
    SequenceLM,
    StreamLM,
    TextBatch,
)
from rnnkit.tasks.task import (
    Evaluation,
    GenerateOptions,
    Prediction,
    PredictOptions,
    Prepared,
    artifact,
    artifact_file,
    load_into,
    load_weights,
    read_config,
)
from rnnkit.training.trainer import OptimizerConfig, Trainer, TrainerConfig, TrainResult

VOCAB_ARTIFACT = "vocab.json"


@dataclass(frozen=True)
class LanguageModelTask:
    """What to read and how to cut it.

    Attributes:
        dataset: a bundled text dataset (``rnnkit datasets list``), used when
            ``data`` is not given.
        data: the user's UTF-8 text: one file or folder, split 90/5/5 by position,
            or three paths for train, valid and test.
        level: ``char`` or ``word`` tokens.
        batch_size: parallel streams per chunk (B).
        steps: tokens per chunk (T): truncated BPTT's window.
        min_freq, max_vocab: vocabulary limits (training part only).
    """

    dataset: str = "shakespeare"
    data: tuple[str, ...] = ()
    level: Literal["char", "word"] = "char"
    batch_size: int = 32
    steps: int = 100
    min_freq: int = 1
    max_vocab: int | None = None

    def __post_init__(self) -> None:
        check_positive_ints(self, "batch_size", "steps", "min_freq", "max_vocab")
        if len(self.data) not in (0, 1, 3):
            raise ValueError(
                f"data: expected one file or folder, or three (train, valid, test), "
                f"got {len(self.data)}"
            )


def _trainer() -> TrainerConfig:
    # Each training item is one chunk of B streams, in order: batch size 1, no shuffle,
    # the state carried across chunks. Clipping at 5 is char-rnn's and Zaremba's.
    return TrainerConfig(epochs=1, batch_size=1, shuffle=False, carry_state=True,
                         clip_norm=5.0, optimizer=OptimizerConfig(lr=2e-3))  # fmt: skip


@dataclass(frozen=True)
class LanguageModelRun:
    """The resolved configuration of a language-model run (``config.toml``).

    ``model.vocab_size`` is filled in from the data by :func:`prepare`.
    """

    kind: Literal["lm"] = "lm"
    task: LanguageModelTask = field(default_factory=LanguageModelTask)
    model: LanguageModelConfig = field(default_factory=lambda: LanguageModelConfig(1, embed=64))
    trainer: TrainerConfig = field(default_factory=_trainer)


Run = LanguageModelRun


@dataclass(frozen=True)
class Corpus:
    """The task's text as token ids, with the vocabulary that made them."""

    vocab: Vocabulary
    splits: dict[str, list[int]]


# Word level: whitespace-separated words, and each line end a token of its own (the
# <eos> of the word-language-model recipe), so PTB's 887,521 words and 42,068 lines
# give its standard 929,589 training tokens and a pre-tokenised ``<unk>`` stays one token.
WORDS_AND_LINE_ENDS = r"[^\s]+|\n"


def tokenizer(level: str) -> CharTokenizer | WordTokenizer:
    return CharTokenizer() if level == "char" else WordTokenizer(pattern=WORDS_AND_LINE_ENDS)


def detokenize(tokens: list[str], level: str) -> str:
    if level == "char":
        return "".join(tokens)
    return " ".join(tokens).replace(" \n ", "\n").replace(" \n", "\n").replace("\n ", "\n")


def read_parts(task: LanguageModelTask) -> dict[str, str]:
    """The task's text as ``train``, ``valid`` and ``test`` strings."""
    if len(task.data) == 3:
        return dict(zip(("train", "valid", "test"), map(read_text, task.data), strict=True))
    if task.data:
        text = read_text(task.data[0])
        cut_valid, cut_test = int(len(text) * 0.90), int(len(text) * 0.95)
        return {
            "train": text[:cut_valid],
            "valid": text[cut_valid:cut_test],
            "test": text[cut_test:],
        }
    from rnnkit.data.forms import TextCorpus
    from rnnkit.data.registry import fetch

    dataset = fetch(task.dataset)
    if not isinstance(dataset, TextCorpus):
        raise DataError(
            f"dataset: {task.dataset!r} is not a text corpus (it is a {type(dataset).__name__})"
        )
    return dict(dataset.splits)


def read_corpus(task: LanguageModelTask) -> Corpus:
    """Read, split and encode the task's text; the vocabulary sees training text only."""
    parts = read_parts(task)
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


def prepare(run: LanguageModelRun) -> Prepared[LanguageModelRun]:
    """Read and encode the text; fill in the vocabulary size."""
    corpus = read_corpus(run.task)
    for name in ("train", "valid"):
        if len(corpus.splits[name]) < 2 * run.task.batch_size:
            raise DataError(
                f"data: the {name} part has {len(corpus.splits[name])} tokens, too few for "
                f"{run.task.batch_size} streams (lower --batch-size or give more text)"
            )
    trainer = replace(run.trainer, batch_size=1, shuffle=False, carry_state=True)
    run = replace(run, model=replace(run.model, vocab_size=len(corpus.vocab)), trainer=trainer)
    unit = "characters" if run.task.level == "char" else "words"
    summary = [f"{name}: {len(ids):,} {unit}" for name, ids in corpus.splits.items()]
    summary.append(f"vocabulary: {len(corpus.vocab):,} tokens (4 special), built on train")
    train_chunks = len(chunks(corpus.splits["train"], run.task))
    summary.append(f"an epoch: {train_chunks:,} chunks of {run.task.batch_size} streams × "
                   f"{run.task.steps} tokens")  # fmt: skip
    return Prepared(run, summary, corpus)


def fit(
    prepared: Prepared[LanguageModelRun], out: Path | str, *, resume: bool = False
) -> TrainResult:
    """Train (or resume) the prepared run into the folder ``out``."""
    run, corpus = prepared.run, prepared.data
    torch.manual_seed(run.trainer.seed)
    model = LanguageModel(run.model)
    view = SequenceLM(model) if run.trainer.tbptt is not None else StreamLM(model)
    trainer = Trainer(
        view,
        run.trainer,
        chunks(corpus.splits["train"], run.task),
        _first,
        val=chunks(corpus.splits["valid"], run.task),
        run_dir=out,
        resume=resume,
        artifacts={VOCAB_ARTIFACT: corpus.vocab.to_json().encode()},
        config_to_save=run,
    )
    return trainer.fit()


def train(run: LanguageModelRun, out: Path | str, *, resume: bool = False) -> TrainResult:
    """Prepare and train (or resume) a run into the folder ``out``."""
    return fit(prepare(run), out, resume=resume)


def load_run(run_dir: Path | str) -> tuple[LanguageModel, Vocabulary, LanguageModelRun]:
    """The trained model (best checkpoint, else last), its vocabulary and configuration."""
    run = read_config(run_dir, LanguageModelRun)
    checkpoint = load_weights(run_dir)
    vocab = Vocabulary.from_json(
        artifact(checkpoint, VOCAB_ARTIFACT, run_dir),
        path=artifact_file(checkpoint, VOCAB_ARTIFACT),
    )
    model = LanguageModel(run.model)
    # The checkpoint holds the stream view's weights: "model." prefixes.
    load_into(model, checkpoint, prefix="model.")
    model.eval()
    return model, vocab, run


@torch.no_grad()
def evaluate(run_dir: Path | str, *, split: str = "test", data: str | None = None) -> Evaluation:
    """Loss per token on a split of the run's data (or the text file ``data``):
    nats, bits per token, perplexity. Unknown tokens of a file count as ``<unk>``."""
    model, vocab, run = load_run(run_dir)
    if data is not None:
        ids = vocab.encode(tokenizer(run.task.level).tokenize(read_text(data)))
        split = data
    else:
        corpus = read_corpus(run.task)
        if corpus.vocab != vocab:
            raise DataError("the data's vocabulary differs from the run's (was the text changed?)")
        ids = corpus.splits[split]
    if len(ids) < 2:
        raise DataError("too little text to evaluate (expected at least 2 tokens)",
                        path=data)  # fmt: skip
    task = replace(run.task, batch_size=min(run.task.batch_size, max(1, len(ids) // 2)))
    total = count = 0.0
    state = None
    for batch in chunks(ids, task):
        out, state = StreamLM(model)(batch, state)
        total += float(out.total)
        count += float(out.n_targets)
    nats = total / count
    unit = "bits_per_character" if run.task.level == "char" else "bits_per_word"
    metrics = {"loss": nats, unit: nats / math.log(2), "perplexity": math.exp(nats),
               "tokens": count}  # fmt: skip
    return Evaluation(split, metrics)


def banned_tokens(vocab: Vocabulary, run: LanguageModelRun) -> tuple[int, ...]:
    """Tokens a stream model never saw as targets, so never samples.

    A stream model's targets are text: ``<pad>``, ``<bos>`` and ``<eos>`` never occur,
    and ``<unk>`` occurs only where the vocabulary cut rare tokens (``min_freq``,
    ``max_vocab``) or the text writes it (PTB).
    """
    specials = [PAD, BOS, EOS]
    cut = run.task.min_freq > 1 or run.task.max_vocab is not None
    if run.task.level == "char" and not cut:
        specials.append(UNK)  # every training character has its own id
    return tuple(vocab.encode(specials))


# A stream model meets a zero state only at the very start of the corpus, so read cold
# a prompt is nearly noise to it ("ROMEO." → 'B' 7 %); read after a blank line, as a
# new speech or paragraph starts in the text, it is what it was trained on ('\n' 70 %).
WARM_UP = "\n\n"


def _prompt_ids(text: str, vocab: Vocabulary, level: str) -> list[int]:
    return vocab.encode(tokenizer(level).tokenize(WARM_UP + text))


@torch.no_grad()
def predict(run_dir: Path | str, options: PredictOptions) -> list[Prediction]:
    """The ``top`` likeliest next tokens after each prompt, with probabilities."""
    model, vocab, run = load_run(run_dir)
    prompts = list(options.inputs)
    if options.file is not None:
        prompts += read_text(options.file).splitlines()
    if not prompts:
        raise DataError("predict: give prompts as arguments or --file (one per line)")
    results = []
    for prompt in prompts:
        last, state = model.prime(torch.tensor([_prompt_ids(prompt, vocab, run.task.level)]))
        logits, _ = model.decode_step(last, state)  # (1, V)
        probs = torch.softmax(logits[0].float(), dim=-1)  # (V,)
        values, ids = probs.topk(min(options.top, probs.numel()))
        tokens = vocab.decode(ids.tolist(), strip_special=False)
        pairs = [(t, round(float(p), 6)) for t, p in zip(tokens, values, strict=True)]
        shown = "  ".join(f"{t!r} {p:.3f}" for t, p in pairs)
        results.append(Prediction(f"{prompt!r} → {shown}",
                                  {"input": prompt, "next": [list(x) for x in pairs]}))  # fmt: skip
    return results


@torch.no_grad()
def generate(run_dir: Path | str, options: GenerateOptions) -> list[str]:
    """``num_samples`` continuations of ``start``, each ``length`` tokens, seeded."""
    return ["".join(pieces) for pieces in stream(run_dir, options)]


def stream(run_dir: Path | str, options: GenerateOptions) -> Iterator[Iterator[str]]:
    """The samples of :func:`generate`, each yielded piece by piece (the prompt, then
    one token's text at a time) as it is generated, one sample after another.

    Sampling holds one row's state and nothing else, whatever the length; the
    samples share one seeded generator, so sample 1 is the same whatever
    ``num_samples``. The run is loaded and the options checked before this returns.
    """
    model, vocab, run = load_run(run_dir)
    if options.beam > 1 and options.num_samples > 1:
        raise DataError("generate: beam search gives one text, the likeliest; sample "
                        "several with --num-samples and no --beam")  # fmt: skip
    start = options.start or "\n"
    prompt = torch.tensor([_prompt_ids(start, vocab, run.task.level)])  # (1, P)
    banned = banned_tokens(vocab, run)
    level = run.task.level
    joiner = "" if level == "char" or start.endswith("\n") else " "
    generator = torch.Generator().manual_seed(options.seed)

    def tokens() -> Iterator[int]:
        with torch.no_grad():  # the stepper's path (this body runs outside generate's)
            last, state = model.prime(prompt)  # (1,), state after the prompt
        if options.beam > 1:
            # The likeliest continuation of exactly ``length`` tokens (no EOS in a stream
            # model), found by beam search; α = 0 ranks by log-probability alone.
            yield from beam_search(model, last, state, max_length=options.length,
                                   beam_size=options.beam, length_penalty=0.0,
                                   banned=banned).best.tokens[0].tolist()  # fmt: skip
            return
        for step in decoding.stream(model, last, state, max_length=options.length,
                                    temperature=options.temperature, top_k=options.top_k,
                                    top_p=options.top_p, generator=generator,
                                    banned=banned):  # fmt: skip
            yield int(step.tokens[0])

    def pieces() -> Iterator[str]:
        # detokenize, one token at a time: word tokens are joined by a space, except
        # next to a newline.
        previous: str | None = None
        for token in tokens():
            (text,) = vocab.decode([token]) or [""]
            if previous is None:
                yield start + joiner + text
            elif level == "char" or previous.endswith("\n") or text.startswith("\n"):
                yield text
            else:
                yield " " + text
            previous = text

    return (pieces() for _ in range(options.num_samples))
