"""End to end: optimizer steps per second of ``rnnkit train`` against a hand-written torch.nn loop.

Three cases, each the task's own configuration:

* ``lm``: the main job, ``examples/shakespeare.toml`` (characters, 2×256 LSTM, embed
  64, 32 streams × 100-character chunks, the state carried detached, Adam 0.002, clip 5);
* ``classify``: rotten-tomatoes, the task's defaults (BiLSTM 64, embed 64, max pooling,
  word/embedding/pooling dropout, AdamW 0.002 with decay 0.1, clip 5, 32 texts a batch);
* ``seq2seq``: cmudict G2P, the task's defaults (LSTM 256 encoder, LSTM-cell decoder with
  Luong "general" attention and input feeding, embed 64, 128 pairs a batch, Adam 0.003,
  clip 5; the decoded validation metrics are turned off: they are evaluation, not steps).

``rnnkit`` is ``rnnkit train`` run in this process through ``rnnkit.cli.main.main(argv)``,
exactly as typed on the command line (plus ``--max-steps``, ``--progress off`` and a
temporary ``--out``). Its steps are timed from the Trainer's own record: ``metrics.csv``
stamps every optimizer step with the seconds since training started, and a step's time
is the difference of its stamp and the previous one (1 ms resolution). Start-up
(imports, data, model, the compiled loops) and the first ``warmup`` steps are not
counted, nor is the evaluation and checkpoint after the last step.

``plain`` is the loop a competent user writes: ``nn.Embedding`` + ``nn.LSTM`` (+
``nn.LSTMCell`` and the attention for seq2seq) + ``nn.Linear``, ``torch.optim.Adam``/
``AdamW``, ``clip_grad_norm_`` and ``loss.item()`` per step, timed with
``time.perf_counter`` around the same steps. It is fed *the same tensors* rnnkit's data
pipeline makes (the task's ``prepare``, ``examples`` and ``collate`` on the run's
resolved ``config.toml``) in the order the Trainer takes them
(:class:`rnnkit.training.sampler.Sampler`), so both see the same batch shapes.

The two run alternately (rnnkit, plain, plain, rnnkit, …) in one process with the same
torch threads. Step k of every run takes the same batch, so the table gives, for each,
the median over the runs of each step's time, averaged over the timed steps (a burst of
load from another process that hits one run drops out), and the speed of rnnkit against
the plain loop (> 1: rnnkit is faster).

    python benchmarks/end_to_end.py                          # all three cases
    python benchmarks/end_to_end.py --cases lm --steps 10 --repeats 3   # ≤ 3 minutes
    python benchmarks/end_to_end.py --write BENCHMARKS.md    # also replace the table there
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit import allocator, tasks
from rnnkit.cli.main import main as rnnkit_main
from rnnkit.data.vocab import PAD_ID, UNK_ID
from rnnkit.training.progress import read_metrics
from rnnkit.training.runs import read_config
from rnnkit.training.sampler import Geometry, Sampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, publish
from common import machine as describe_machine

ROOT = Path(__file__).resolve().parents[1]

# A plain step: (model, optimizer, batch) -> None; it runs forward, backward, clip, step.
PlainStep = Callable[[Any], None]


@dataclass(frozen=True)
class Case:
    """One end-to-end case: the ``rnnkit train`` arguments and the plain loop beside it."""

    name: str
    what: str
    argv: tuple[str, ...]  # after `rnnkit`, without --max-steps/--progress/--out
    config: str | None = None  # extra TOML written to a file and passed as --config


CASES = {
    "lm": Case(
        "lm",
        "character LM, shakespeare (the main job): 2×256 LSTM, embed 64, B 32 × T 50, carried state",
        ("train", "lm", "--config", str(ROOT / "examples" / "shakespeare.toml")),
    ),
    "classify": Case(
        "classify",
        "classifier, rotten-tomatoes: BiLSTM 64, embed 64, max pooling, B 32",
        ("train", "classify", "--dataset", "rotten-tomatoes"),
    ),
    "seq2seq": Case(
        "seq2seq",
        "seq2seq, cmudict: LSTM 256 + Luong attention, embed 64, B 128",
        ("train", "seq2seq", "--dataset", "cmudict"),
        # The decoded validation metrics are evaluation, not training steps.
        config="[task]\neval_decode = false\n",
    ),
}


# --------------------------------------------------------------------------- rnnkit


def rnnkit_step_seconds(case: Case, steps: int, warmup: int, out: Path) -> list[float]:
    """Seconds of each optimizer step ``warmup``+1 … ``warmup+steps`` of ``rnnkit train``:
    the differences of the stamps in the run's own ``metrics.csv`` (1 ms resolution)."""
    argv = [*case.argv]
    if case.config is not None:
        extra = out.parent / f"{case.name}.toml"
        extra.write_text(case.config)
        argv += ["--config", str(extra)]
    total = warmup + steps
    argv += ["--max-steps", str(total), "--progress", "off", "--out", str(out), "--no-report"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = rnnkit_main(argv)
    if code != 0:
        raise RuntimeError(f"rnnkit {' '.join(argv)} exited with {code}")
    stamps = {
        row["step"]: row["seconds"]
        for row in read_metrics(out / "metrics.csv")
        if row["split"] == "train" and row["metric"] == "loss"
    }
    return [stamps[k] - stamps[k - 1] for k in range(warmup + 1, total + 1)]


# --------------------------------------------------------------------------- plain loops


class PlainLM(nn.Module):
    """char-rnn as written by hand: Embedding → LSTM → Linear."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, ids: Tensor, state: Any) -> tuple[Tensor, Any]:
        outputs, state = self.lstm(self.embedding(ids), state)  # (B, T, H)
        return self.out(outputs), state  # (B, T, V)


class PlainClassifier(nn.Module):
    """A BiLSTM text classifier as written by hand: packed sequences, masked max pooling."""

    def __init__(self, vocab: int, embed: int, hidden: int, classes: int, task: Any) -> None:
        super().__init__()
        self.task = task
        self.embedding = nn.Embedding(vocab, embed, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, classes)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        t = self.task
        if self.training and t.word_dropout > 0:
            drop = (torch.rand(ids.shape) < t.word_dropout) & (ids != PAD_ID)
            ids = ids.masked_fill(drop, UNK_ID)
        x = F.dropout(self.embedding(ids), t.embed_dropout, self.training)  # (B, T, E)
        packed = pack_padded_sequence(x, lengths, batch_first=True)  # longest first already
        outputs, _ = self.lstm(packed)
        padded, _ = pad_packed_sequence(outputs, batch_first=True, padding_value=float("-inf"))
        pooled = padded.max(dim=1).values  # (B, 2H): padding is −inf, never the max
        return self.out(F.dropout(pooled, t.pool_dropout, self.training))  # (B, C)


class PlainSeq2Seq(nn.Module):
    """Luong's encoder–decoder as written by hand: LSTM encoder, LSTMCell decoder with
    input feeding and "general" attention, the output layer applied once after the loop."""

    def __init__(self, source_vocab: int, target_vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.source_embedding = nn.Embedding(source_vocab, embed, padding_idx=PAD_ID)
        self.target_embedding = nn.Embedding(target_vocab, embed, padding_idx=PAD_ID)
        self.encoder = nn.LSTM(embed, hidden, batch_first=True)
        self.decoder = nn.LSTMCell(embed + hidden, hidden)
        self.attention = nn.Linear(hidden, hidden, bias=False)  # score = qᵀ W m
        self.combine = nn.Linear(2 * hidden, hidden)
        self.out = nn.Linear(hidden, target_vocab)

    def forward(self, source: Tensor, source_lengths: Tensor, target: Tensor) -> Tensor:
        packed = pack_padded_sequence(
            self.source_embedding(source), source_lengths, batch_first=True, enforce_sorted=False
        )
        memory, (h, c) = self.encoder(packed)
        memory, _ = pad_packed_sequence(memory, batch_first=True, total_length=source.shape[1])
        mask = torch.arange(source.shape[1]) < source_lengths[:, None]  # (B, S)
        h, c = h[0], c[0]  # (B, H)
        feed = memory.new_zeros(h.shape)  # h̃_0
        inputs = self.target_embedding(target[:, :-1])  # (B, T−1, E): teacher forcing
        feeds = []
        for t in range(inputs.shape[1]):
            h, c = self.decoder(torch.cat([inputs[:, t], feed], dim=1), (h, c))
            scores = torch.bmm(memory, self.attention(h).unsqueeze(2)).squeeze(2)  # (B, S)
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
            context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, H)
            feed = torch.tanh(self.combine(torch.cat([h, context], dim=1)))  # (B, H)
            feeds.append(feed)
        return self.out(torch.stack(feeds, dim=1))  # (B, T−1, V)


def optimizer_for(model: nn.Module, config: Any) -> torch.optim.Optimizer:
    """The run's optimizer, constructed directly (Adam or AdamW, as the runs here use)."""
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    kind = kinds[config.name]
    return kind(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class Plain:
    """A plain loop ready to run: its step function and the batches in the Trainer's order."""

    step: PlainStep
    batches: list[Any]


def update(loss: Tensor, model: nn.Module, optimizer: torch.optim.Optimizer, clip: float) -> None:
    """The plain loop's update, as a user writes it: backward, clip, step, log the loss."""
    optimizer.zero_grad()
    loss.backward()  # type: ignore[no-untyped-call]
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    loss.item()


def prepared_run(kind: str, run_dir: Path) -> tuple[Any, list[Any]]:
    """The run's resolved configuration, and the batches of its first epoch in the
    order the Trainer takes them (one per step: the global batch of each step)."""
    task = tasks.get(kind)
    prepared = task.prepare(read_config(run_dir, task.run_type))
    run = prepared.run
    examples = task.examples(prepared, "train")
    t = run.trainer
    sampler = Sampler(examples, Geometry(t.batch_size, t.accumulate), seed=t.seed,
                      shuffle=t.shuffle)  # fmt: skip
    batches = [task.collate([examples.items[i] for i in batch])
               for batch in sampler.global_batches(0)]  # fmt: skip
    return run, batches


def plain_lm(run_dir: Path) -> Plain:
    run, batches = prepared_run("lm", run_dir)
    m = run.model
    torch.manual_seed(run.trainer.seed)
    model = PlainLM(m.vocab_size, m.embed, m.hidden, m.layers)
    optimizer = optimizer_for(model, run.trainer.optimizer)
    clip = run.trainer.clip_norm
    state: list[Any] = [None]

    def step(batch: Any) -> None:
        logits, hidden = model(batch.inputs, state[0])
        state[0] = tuple(s.detach() for s in hidden)  # repackage_hidden
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1))
        update(loss, model, optimizer, clip)

    return Plain(step, batches)


def plain_classify(run_dir: Path) -> Plain:
    run, batches = prepared_run("classify", run_dir)
    m = run.model
    torch.manual_seed(run.trainer.seed)
    model = PlainClassifier(m.vocab_size, m.embed, m.hidden, m.num_classes, run.task)
    optimizer = optimizer_for(model, run.trainer.optimizer)
    clip = run.trainer.clip_norm

    def step(batch: Any) -> None:
        loss = F.cross_entropy(model(batch.inputs, batch.lengths), batch.targets)
        update(loss, model, optimizer, clip)

    return Plain(step, batches)


def plain_seq2seq(run_dir: Path) -> Plain:
    run, batches = prepared_run("seq2seq", run_dir)
    m = run.model
    torch.manual_seed(run.trainer.seed)
    model = PlainSeq2Seq(m.source_vocab, m.target_vocab, m.embed, m.hidden)
    optimizer = optimizer_for(model, run.trainer.optimizer)
    clip = run.trainer.clip_norm

    def step(batch: Any) -> None:
        logits = model(batch.source, batch.source_lengths, batch.target)  # (B, T−1, V)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch.target[:, 1:].reshape(-1),
            ignore_index=PAD_ID,
        )  # fmt: skip
        update(loss, model, optimizer, clip)

    return Plain(step, batches)


PLAIN: dict[str, Callable[[Path], Plain]] = {
    "lm": plain_lm,
    "classify": plain_classify,
    "seq2seq": plain_seq2seq,
}


def plain_step_seconds(plain: Plain, steps: int, warmup: int) -> list[float]:
    """Seconds of each of the plain loop's steps ``warmup``+1 … ``warmup+steps``, over the
    same batches as the rnnkit run's steps."""
    torch.manual_seed(0)
    stamps = []
    for batch in plain.batches[: warmup + steps]:
        plain.step(batch)
        stamps.append(time.perf_counter())
    return [b - a for a, b in zip(stamps[warmup - 1 :], stamps[warmup:], strict=False)]


def per_step(runs: list[list[float]]) -> float:
    """Seconds per step: the mean over the steps of each step's median over the runs.

    Every run takes the same batches in the same order, so step k of one run is
    comparable with step k of another; the median per step drops a burst of load
    from another process that hit one run, which a median of run totals would not.
    """
    return statistics.fmean(statistics.median(column) for column in zip(*runs, strict=True))


# --------------------------------------------------------------------------- the table


def measure(case: Case, steps: int, warmup: int, repeats: int) -> tuple[float, float]:
    """(rnnkit, plain) seconds per step (:func:`per_step`), from ``repeats`` runs of each,
    alternating rnnkit, plain, plain, rnnkit, …"""
    ours: list[list[float]] = []
    theirs: list[list[float]] = []
    plain: Plain | None = None
    with tempfile.TemporaryDirectory(prefix="rnnkit-e2e-") as scratch:
        for r in range(repeats):
            out = Path(scratch) / f"run{r}"
            order = ("rnnkit", "plain") if r % 2 == 0 or plain is None else ("plain", "rnnkit")
            for who in order:
                if who == "rnnkit":
                    ours.append(rnnkit_step_seconds(case, steps, warmup, out))
                    if plain is None:  # the plain loop reads the run's resolved configuration
                        plain = PLAIN[case.name](out)
                        if len(plain.batches) < warmup + steps:
                            raise SystemExit(f"{case.name}: an epoch has too few steps")
                else:
                    assert plain is not None
                    theirs.append(plain_step_seconds(plain, steps, warmup))
            print(f"  {case.name} repeat {r + 1}: rnnkit {1e3 * statistics.fmean(ours[-1]):.1f} "
                  f"ms/step, plain {1e3 * statistics.fmean(theirs[-1]):.1f} ms/step (means)",
                  flush=True)  # fmt: skip
    return per_step(ours), per_step(theirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="lm,classify,seq2seq",
                        help="comma-separated of lm, classify, seq2seq (all)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (5)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each, alternating (5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch intra-op threads (all cores)")  # fmt: skip
    parser.add_argument("--write", type=Path, help="replace the end-to-end table in this file")
    args = parser.parse_args(argv)
    names = args.cases.split(",")
    unknown = [name for name in names if name not in CASES]
    if unknown or args.steps < 1 or args.warmup < 1 or args.repeats < 1:
        parser.error(f"--cases: expected names among {', '.join(CASES)}, --steps/--warmup/"
                     f"--repeats ≥ 1 (got {', '.join(unknown) or 'bad counts'})")  # fmt: skip
    torch.set_num_threads(args.threads)
    # As `rnnkit train` sets it on its first call, set here for both sides from the start.
    allocator.keep_freed_memory()
    machine = describe_machine()
    rows: dict[str, tuple[str, str]] = {}  # case → (table row, how it was measured)
    for name in names:
        case = CASES[name]
        a, b = measure(case, args.steps, args.warmup, args.repeats)
        row = (f"| {name} | {case.what} | {1e3 * a:.1f} | {1e3 * b:.1f} | {1 / a:.2f} "
               f"| {1 / b:.2f} | {b / a:.2f}× |")  # fmt: skip
        print(row, flush=True)
        rows[name] = (row, f"- {name}: {command_line('end_to_end.py', argv)[9:]} on {machine}")
    if args.write is not None:
        rows = {**kept_rows(args.write), **rows}
    publish(args.write, "end_to_end", table(rows))
    return 0


HEADER = """\
`rnnkit train` (in process, through `rnnkit.cli.main.main`) against the torch.nn loop
written out in `benchmarks/end_to_end.py`: the same model sizes, batches (the tensors
rnnkit's data pipeline makes, in the Trainer's order), optimizer and clipping. Steady
state only: the first `--warmup` steps of every run are not timed, nor start-up or the
evaluation after the last step; rnnkit's steps are timed from the stamps of its own
metrics.csv (1 ms resolution), the loop's with perf_counter. The runs alternate in one
process; the figure is each step's median over the runs, averaged over the steps.
Above 1× rnnkit is faster."""

TABLE_HEAD = (
    "| case | what | rnnkit ms/step | plain torch.nn ms/step | rnnkit steps/s "
    "| plain steps/s | rnnkit vs plain |\n|---|---|---:|---:|---:|---:|---:|"
)


def table(rows: dict[str, tuple[str, str]]) -> str:
    """The section: what is compared, the table (cases in CASES order), how each row was made."""
    order = [name for name in CASES if name in rows]
    lines = [HEADER, "", TABLE_HEAD, *(rows[name][0] for name in order), ""]
    lines += ["Commands, one locked run per case, and the machine of each:", ""]
    return "\n".join(lines + [rows[name][1] for name in order])


def kept_rows(path: Path) -> dict[str, tuple[str, str]]:
    """The rows (and their command lines) already in ``path``'s section, by case, so that
    measuring one case keeps the others' figures."""
    text = path.read_text() if path.exists() else ""
    begin, end = "<!-- end_to_end:begin -->", "<!-- end_to_end:end -->"
    if begin not in text or end not in text:
        return {}
    section = text.split(begin, 1)[1].split(end, 1)[0].splitlines()
    kept = {}
    for name in CASES:
        row = next((line for line in section if line.startswith(f"| {name} |")), None)
        how = next((line for line in section if line.startswith(f"- {name}: ")), None)
        if row is not None and how is not None:
            kept[name] = (row, how)
    return kept


if __name__ == "__main__":
    sys.exit(main())
