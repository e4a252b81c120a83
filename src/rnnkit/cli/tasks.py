"""The flags of ``rnnkit train TASK``: each task's own and the shared ones, without torch.

They are the command line's view of each task's ``run_type`` (the task declares its
configuration; this table names the keys a flag sets), kept apart from the task
modules so that ``--help`` imports no torch.

Every flag names the dotted key of the task's ``Run`` configuration it sets
(``--hidden`` → ``model.hidden``). Flags default to "not given": the value comes
from the task's defaults, then ``--config FILE.toml``, then the flags actually typed,
in that order. ``tests/cli/test_tasks.py`` checks that every key exists in its
task's ``Run``, so this table cannot drift from the dataclasses.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rnnkit.cli.arguments import (
    finite_float,
    fraction,
    int_list,
    positive_float,
    positive_int,
    seed,
)


def boolean(text: str) -> bool:
    """``yes``/``no`` (also true/false, on/off, 1/0)."""
    value = {"yes": True, "true": True, "on": True, "1": True,
             "no": False, "false": False, "off": False, "0": False}.get(text.lower())  # fmt: skip
    if value is None:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return value


def tbptt(text: str) -> dict[str, int]:
    """``K1`` or ``K1,K2``: TBPTT(k1, k2)'s table."""
    parts = text.split(",")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K1 or K1,K2 (integers), got {text!r}") from None
    if len(values) > 2 or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected K1 or K1,K2 (positive), got {text!r}")
    return {"k1": values[0]} if len(values) == 1 else {"k1": values[0], "k2": values[1]}


@dataclass(frozen=True)
class Option:
    """One ``rnnkit train`` flag and the configuration key it sets.

    Attributes:
        flag: ``--hidden``.
        key: the dotted key of the task's ``Run`` it sets (``model.hidden``).
        help: one line for ``--help``.
        type: converts the text (argparse ``type``); None for switches.
        choices: the allowed values.
        switch: a flag without a value that sets ``True``.
        nargs: argparse ``nargs`` (e.g. ``"+"``); the list becomes a tuple.
        metavar: the value's name in ``--help``.
    """

    flag: str
    key: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False
    nargs: str | None = None
    metavar: str | None = None

    def add_to(self, parser: argparse.ArgumentParser, key: str) -> None:
        kwargs: dict[str, Any] = {"dest": dest_of(self.flag), "default": argparse.SUPPRESS}
        if self.switch:
            kwargs["action"] = "store_const"
            kwargs["const"] = True
        else:
            for name in ("type", "choices", "nargs", "metavar"):
                if getattr(self, name) is not None:
                    kwargs[name] = getattr(self, name)
            if self.metavar is None and self.choices is None:
                # --help shows "--hidden HIDDEN", not the internal dest name.
                kwargs["metavar"] = self.flag.removeprefix("--").upper().replace("-", "_")
        parser.add_argument(self.flag, help=f"{self.help} [{key}]", **kwargs)


def dest_of(flag: str) -> str:
    return "opt_" + flag.removeprefix("--").replace("-", "_")


# The flags shared by the tasks: each task lists the ones that apply to it.
COMMON: dict[str, Option] = {o.flag: o for o in (
    Option("--dataset", "task.dataset", "a bundled dataset (`rnnkit datasets list`)", str),
    Option("--data", "task.data", "your files: one (split by the task) or TRAIN VALID TEST",
           str, nargs="+", metavar="PATH"),
    Option("--cell", "model.cell",
           "recurrent cell; mingru/minlstm (and their _log forms) train by a scan over time",
           choices=("rnn", "lstm", "gru", "mingru", "minlstm", "mingru_log", "minlstm_log")),
    Option("--hidden", "model.hidden", "hidden units per layer and direction", positive_int),
    Option("--layers", "model.layers", "stacked recurrent layers", positive_int),
    Option("--embed", "model.embed", "embedding size", positive_int),
    Option("--dropout", "model.dropout", "dropout probability between layers", fraction),
    Option("--locked-dropout", "model.locked_dropout",
           "the dropout between layers keeps one mask per sequence (variational)",
           switch=True),
    Option("--weight-drop", "model.weight_drop",
           "DropConnect on the hidden-to-hidden weights W, one mask per batch", fraction),
    Option("--zoneout", "model.zoneout",
           "each state unit keeps its previous value with this probability per step "
           "(runs the unrolled backend)", fraction),
    Option("--backend", "model.backend",
           "recurrent backend: auto times fused and native at each new shape and keeps "
           "the faster (`rnnkit backends`), and runs the minimal cells by scan; the others "
           "pin one",
           choices=("auto", "fused", "native", "unrolled", "scan")),
    Option("--bidirectional", "model.bidirectional", "read the sequence both ways",
           switch=True),
    Option("--attention", "model.attention", "attention scorer",
           choices=("none", "bahdanau", "dot", "general")),
    Option("--gate-bias", "model.gate_bias",
           "start the LSTM forget / GRU update gate biased by this (Keras: 1)", finite_float),
    Option("--crf", "model.crf", "a CRF output layer (Viterbi decoding)", switch=True),
    Option("--epochs", "trainer.epochs", "passes over the training data", positive_int),
    Option("--max-steps", "trainer.max_steps", "stop after this many optimizer steps",
           positive_int),
    Option("--max-minutes", "trainer.max_minutes", "stop after this many minutes (wall clock)",
           positive_float),
    Option("--batch-size", "trainer.batch_size", "examples per micro-batch", positive_int),
    Option("--lr", "trainer.optimizer.lr", "learning rate", positive_float),
    Option("--weight-decay", "trainer.optimizer.weight_decay", "L2 penalty", finite_float),
    Option("--optimizer", "trainer.optimizer.name",
           "optimizer (ntasgd: SGD averaging its weights once validation stops improving)",
           choices=("adam", "adamw", "sgd", "rmsprop", "adagrad", "ntasgd")),
    Option("--nonmono", "trainer.optimizer.nonmono",
           "ntasgd: evaluations the averaging trigger looks back past (AWD-LSTM: 5)",
           positive_int),
    Option("--schedule", "trainer.schedule.name", "learning-rate schedule",
           choices=("constant", "step", "cosine", "plateau")),
    Option("--warmup", "trainer.schedule.warmup_steps", "linear warm-up steps", int),
    Option("--accumulate", "trainer.accumulate", "micro-batches per optimizer step",
           positive_int),
    Option("--threads", "trainer.threads",
           "CPU threads torch uses (default: one per core); saved with the run",
           positive_int),
    Option("--grad-clip", "trainer.clip_norm", "clip the global gradient norm to this",
           positive_float),
    Option("--tbptt", "trainer.tbptt", "truncated BPTT: K1 or K1,K2 steps", tbptt,
           metavar="K1[,K2]"),
    Option("--precision", "trainer.precision",
           "bf16 autocasts the forward pass (fused keeps its recurrence in float32)",
           choices=("fp32", "bf16")),
    Option("--seed", "trainer.seed", "seed for weights, data order and dropout", seed),
    Option("--deterministic", "trainer.deterministic", "torch's deterministic algorithms",
           switch=True),
    Option("--patience", "trainer.early_stopping.patience",
           "early stopping: evaluations without improvement", int),
    Option("--eval-every", "trainer.eval_every", "evaluate every N optimizer steps",
           positive_int),
    Option("--device", "trainer.device", "auto, cpu, cuda or cuda:N", str),
    Option("--progress", "trainer.progress", "progress display (auto: a bar on a terminal)",
           choices=("auto", "bar", "lines", "off")),
    Option("--tensorboard", "trainer.tensorboard", "also log to RUN/tensorboard", switch=True),
)}  # fmt: skip

TRAINING = (
    "--epochs", "--max-steps", "--max-minutes", "--batch-size", "--lr", "--weight-decay",
    "--optimizer", "--nonmono", "--schedule", "--warmup", "--accumulate", "--threads",
    "--grad-clip", "--precision",
    "--seed", "--deterministic", "--patience", "--eval-every", "--device", "--progress",
    "--tensorboard",
)  # fmt: skip
MODEL = ("--cell", "--hidden", "--layers", "--dropout", "--locked-dropout", "--weight-drop",
         "--zoneout", "--backend")  # fmt: skip
DATA = ("--dataset", "--data")


@dataclass(frozen=True)
class TaskCommand:
    """``rnnkit train NAME``: its help, the common flags that apply, its own flags.

    Attributes:
        name: the task's name (a key of :data:`rnnkit.tasks.MODULES`).
        help: one line for ``rnnkit train --help``.
        description: what it trains and on what data by default.
        example: one command line.
        common: the flags of :data:`COMMON` that apply.
        options: the task's own flags.
        keys: common flags that set another key here (``--batch-size`` of ``lm``
            sets ``task.batch_size``, the number of streams).
    """

    name: str
    help: str
    description: str
    example: str
    common: tuple[str, ...]
    options: tuple[Option, ...] = ()
    keys: dict[str, str] = field(default_factory=dict)

    def flags(self) -> list[tuple[Option, str]]:
        """Every flag of the command with the key it sets."""
        shared = [(COMMON[flag], self.keys.get(flag, COMMON[flag].key)) for flag in self.common]
        return shared + [(option, option.key) for option in self.options]


TASKS: dict[str, TaskCommand] = {t.name: t for t in (
    TaskCommand(
        "classify", "many-to-one text classification (sentiment, spam)",
        "Read texts with labels, embed their tokens, pool the recurrent states and "
        "classify. Default data: rotten-tomatoes; --data takes CSV/TSV/JSONL with a text "
        "and a label column.",
        "rnnkit train classify --dataset rotten-tomatoes --out runs/rt",
        DATA + MODEL + ("--embed", "--bidirectional") + ("--gate-bias",) + TRAINING,
        options=(
            Option("--pooling", "model.pooling", "one vector per text from the states",
                   choices=("last", "mean", "max", "attention")),
            Option("--head", "model.head", "softmax over the classes, or σ for two",
                   choices=("multiclass", "binary")),
            Option("--min-freq", "task.min_freq", "rarer training words become <unk>",
                   positive_int),
            Option("--max-vocab", "task.max_vocab", "keep the most frequent words",
                   positive_int),
            Option("--max-length", "task.max_length", "tokens kept per text", positive_int),
            Option("--text-column", "task.text_column", "the text's column (or JSONL key)",
                   str),
            Option("--label-column", "task.label_column", "the label's column (or JSONL key)",
                   str),
            Option("--comment", "task.comment", "skip lines of your files starting with this",
                   str),
            Option("--word-dropout", "task.word_dropout",
                   "in training, words become <unk> with this probability", fraction),
            Option("--embed-dropout", "task.embed_dropout", "dropout on the word embeddings",
                   fraction),
            Option("--pool-dropout", "task.pool_dropout", "dropout on the pooled vector",
                   fraction),
            Option("--split-seed", "task.split_seed", "seed of one file's 80/10/10 split",
                   seed),
        ),
    ),
    TaskCommand(
        "tag", "many-to-many aligned tagging (NER, POS), optional CRF",
        "Tag every token of a sentence. Default data: wnut16 (named entities); --data "
        "takes CoNLL files (token and tag columns, blank lines between sentences). "
        "--dataset selective-copying tags Mamba's selective-copying task with a causal "
        "tagger (accuracy on the copied tokens beside chance 1/V, and the exact-sequence "
        "rate).",
        "rnnkit train tag --dataset wnut16 --crf --epochs 10\n"
        "  rnnkit train tag --dataset selective-copying --length 64 --tokens 4 --cell gru "
        "--embed 32 --hidden 64 --dropout 0 --max-steps 2000",
        DATA + MODEL + ("--embed", "--bidirectional", "--crf") + TRAINING,
        options=(
            Option("--lowercase", "task.lowercase", "lowercase words for the vocabulary",
                   switch=True),
            Option("--char-embed", "model.char_embed",
                   "character-aware words: embed each word's characters this wide and read "
                   "them with a BiLSTM (0: off)", int),
            Option("--char-hidden", "model.char_hidden",
                   "units per direction of the characters' BiLSTM", positive_int),
            Option("--min-freq", "task.min_freq", "rarer training words become <unk>",
                   positive_int),
            Option("--token-column", "task.token_column",
                   "the token's column index (0 first, -1 last)", int),
            Option("--tag-column", "task.tag_column",
                   "the tag's column index (0 first, -1 last)", int),
            Option("--comment", "task.comment", "skip CoNLL lines starting with this", str),
            Option("--split-seed", "task.split_seed", "the shuffle that splits one file", seed),
            Option("--length", "task.length",
                   "selective copying: steps the data tokens are scattered in", positive_int),
            Option("--tokens", "task.tokens", "selective copying: data tokens to copy",
                   positive_int),
            Option("--symbols", "task.symbols", "selective copying: data symbols V (≥ 2)",
                   positive_int),
            Option("--train-size", "task.train_size", "selective copying: training sequences",
                   positive_int),
            Option("--valid-size", "task.valid_size", "selective copying: validation sequences",
                   positive_int),
            Option("--test-size", "task.test_size", "selective copying: test sequences",
                   positive_int),
            Option("--data-seed", "task.data_seed",
                   "selective copying: train, valid, test come from seeds S, S+1, S+2", seed),
        ),
    ),
    TaskCommand(
        "lm", "a character- or word-level language model (char-rnn)",
        "Train a language model on contiguous streams of text with the state carried "
        "between chunks. Default data: shakespeare; --data takes UTF-8 text files or a "
        "folder (split 90/5/5 by position).",
        "rnnkit train lm --dataset shakespeare --hidden 256 --epochs 1 --out runs/shakespeare",
        DATA + MODEL + ("--embed", "--tbptt") + TRAINING,
        options=(
            Option("--level", "task.level", "token level", choices=("char", "word")),
            Option("--steps", "task.steps", "tokens per chunk: the BPTT window", positive_int),
            Option("--min-freq", "task.min_freq", "rarer training tokens become <unk>",
                   positive_int),
            Option("--max-vocab", "task.max_vocab", "keep the most frequent tokens",
                   positive_int),
            Option("--embed-dropout", "model.embed_dropout",
                   "in training, drop whole words (rows of the embedding), per batch",
                   fraction),
            Option("--input-dropout", "model.input_dropout",
                   "locked dropout on the embeddings: one mask per sequence", fraction),
            Option("--output-dropout", "model.output_dropout",
                   "locked dropout on the last layer's outputs: one mask per sequence",
                   fraction),
            Option("--adaptive-softmax", "model.adaptive_cutoffs",
                   "an adaptive softmax with these cutoffs (ids by frequency), e.g. 2000,10000",
                   int_list, metavar="C1,C2,…"),
            Option("--ar", "model.ar", "activation regularisation α on the outputs",
                   finite_float),
            Option("--tar", "model.tar", "temporal activation regularisation β", finite_float),
            Option("--tie-weights", "model.tie_weights", "share embedding and output weights",
                   switch=True),
        ),
    ),
    TaskCommand(
        "forecast", "many-to-one time-series forecasting with a horizon",
        "Forecast the next H values of a series from a window of past values; metrics "
        "beside the naive and seasonal-naive baselines. Default data: airpassengers; "
        "--data takes a time-series CSV.",
        "rnnkit train forecast --dataset airpassengers --window 36 --horizon 12 --transform log",
        DATA + MODEL + ("--gate-bias",) + TRAINING,
        options=(
            Option("--column", "task.column", "the column to forecast (default: the target)",
                   str),
            Option("--time-column", "task.time_column", "the CSV's time column "
                   "(default: the one named date, time, timestamp, datetime or ds, else "
                   "the one holding dates)", str),
            Option("--date-format", "task.date_format", "the CSV's dates as a strptime "
                   "format, e.g. '%%d/%%m/%%Y' (default: detected)", str),
            Option("--window", "task.window", "past values the model reads", positive_int),
            Option("--horizon", "task.horizon", "values forecast at once; the test part",
                   positive_int),
            Option("--valid", "task.valid", "validation steps before the test part (0: none)",
                   int),
            Option("--season", "task.season", "seasonal period (default: from the frequency)",
                   positive_int),
            Option("--transform", "task.transform", "model log values or raw ones",
                   choices=("none", "log")),
            Option("--absolute", "task.absolute", "windows in absolute units, not relative "
                   "to their last value", switch=True),
            Option("--loss", "model.loss", "regression loss", choices=("mse", "huber")),
            Option("--pooling", "model.pooling", "how the states become one vector",
                   choices=("last", "mean", "max", "attention")),
        ),
    ),
    TaskCommand(
        "seq2seq", "encoder–decoder for unequal lengths (G2P, translation)",
        "Map a source sequence to a target sequence of another length, with attention. "
        "Default data: cmudict (spelling → phonemes); --data takes TSV pairs.",
        "rnnkit train seq2seq --dataset cmudict --attention bahdanau --epochs 10",
        DATA + MODEL + ("--embed", "--bidirectional", "--attention") + TRAINING,
        options=(
            Option("--source-level", "task.source_level", "source units",
                   choices=("char", "word")),
            Option("--target-level", "task.target_level", "target units",
                   choices=("char", "word")),
            Option("--min-freq", "task.min_freq", "rarer training units become <unk>",
                   positive_int),
            Option("--split-seed", "task.split_seed", "the shuffle that splits one file", seed),
            Option("--teacher-forcing", "model.teacher_forcing",
                   "probability of feeding the gold previous token (1: always)", float),
            Option("--beam", "task.beam", "beam width of the metrics' decoding (1: greedy)",
                   positive_int),
            Option("--length-penalty", "task.length_penalty", "the beam's length penalty α",
                   float),
            Option("--max-output", "task.max_output", "most target units decoded",
                   positive_int),
        ),
        keys={"--bidirectional": "model.bidirectional_encoder"},
    ),
    TaskCommand(
        "music", "polyphonic music as piano rolls (one-to-many generation)",
        "Predict each frame's notes from the frames before (Bernoulli per pitch) and "
        "generate new pieces as MIDI. Default data: bach-chorales; --data takes piano-roll "
        "text files (a line of MIDI pitches per frame) or MIDI files, or folders of them.",
        "rnnkit train music --dataset bach-chorales --epochs 20",
        DATA + MODEL + ("--embed",) + TRAINING,
        options=(
            Option("--low", "task.low", "lowest MIDI pitch modelled (default: the data's)",
                   int),
            Option("--high", "task.high", "highest MIDI pitch modelled (default: the data's)",
                   int),
            Option("--frames-per-quarter", "task.frames_per_quarter",
                   "time grid of MIDI files read (4: 16th notes)", positive_int),
            Option("--smoothing", "task.smoothing", "add-k smoothing of the per-key baseline",
                   positive_float),
            Option("--threshold", "task.threshold",
                   "probability above which a pitch counts as predicted", fraction),
        ),
    ),
    TaskCommand(
        "seqclass", "many-to-one classification of real-valued sequences",
        "Classify multivariate sequences (sensors, speech frames), channels standardised "
        "with training statistics. Default data: japanese-vowels (also mnist-5k); --data "
        "takes .ts or NPZ files. --dataset adding trains the adding problem (regression, "
        "MSE beside the predict-1 baseline of 0.167).",
        "rnnkit train seqclass --dataset japanese-vowels --hidden 128 --bidirectional "
        "--pooling mean\n"
        "  rnnkit train seqclass --dataset adding --length 200 --cell lstm --batch-size 32 "
        "--max-steps 10000 --eval-every 250",
        DATA + MODEL + ("--bidirectional",) + ("--gate-bias",) + TRAINING,
        options=(
            Option("--pooling", "model.pooling", "one vector per sequence from the states",
                   choices=("last", "mean", "max", "attention")),
            Option("--max-length", "task.max_length", "steps kept per sequence",
                   positive_int),
            Option("--valid-fraction", "task.valid_fraction",
                   "share of train held out when the data has no valid split", fraction),
            Option("--split-seed", "task.split_seed",
                   "seed of one file's 80/10/10 split and of the hold-out", seed),
            Option("--length", "task.length", "adding problem: sequence length T",
                   positive_int),
            Option("--train-size", "task.train_size", "adding problem: training sequences",
                   positive_int),
            Option("--valid-size", "task.valid_size", "adding problem: validation sequences",
                   positive_int),
            Option("--test-size", "task.test_size", "adding problem: test sequences",
                   positive_int),
            Option("--data-seed", "task.data_seed",
                   "adding problem: train, valid, test come from seeds S, S+1, S+2", seed),
        ),
    ),
    TaskCommand(
        "caption", "one-to-many generation conditioned on a label or a vector",
        "Generate text from one input: a label (a review for a given sentiment from "
        "rotten-tomatoes, the default; --data takes CSV/TSV/JSONL with a text and a label "
        "column) or a feature vector (--data takes an .npz file with arrays features (N, D) "
        "and texts (N,), or a CSV/TSV of a text column and numeric feature columns with "
        "--condition-kind vector). Then `rnnkit generate RUN --condition LABEL|V1,V2,...`.",
        "rnnkit train caption --dataset rotten-tomatoes --epochs 8 --out runs/caption",
        DATA + MODEL + ("--embed",) + TRAINING,
        options=(
            Option("--level", "task.level", "token level (words are lowercased)",
                   choices=("word", "char")),
            Option("--max-length", "task.max_length", "tokens kept per text (longer: cut)",
                   positive_int),
            Option("--min-freq", "task.min_freq", "rarer training tokens become <unk>",
                   positive_int),
            Option("--max-vocab", "task.max_vocab", "keep the most frequent tokens",
                   positive_int),
            Option("--condition-kind", "task.condition",
                   "what conditions a text (auto: vector for .npz files, else label)",
                   choices=("auto", "label", "vector")),
            Option("--text-column", "task.text_column", "the text column of --data", str),
            Option("--label-column", "task.label_column", "the label column of --data", str),
            Option("--features", "task.feature_columns",
                   "vector CSV/TSV: the feature columns (default: all but the text)", str,
                   nargs="+", metavar="COLUMN"),
            Option("--condition-embed", "model.condition_embed",
                   "size of the encoded condition", positive_int),
            Option("--condition-state", "model.condition_state",
                   "the condition sets the initial state", boolean, metavar="yes|no"),
            Option("--condition-input", "model.condition_input",
                   "the condition joins every step's input", boolean, metavar="yes|no"),
        ),
    ),
)}  # fmt: skip
