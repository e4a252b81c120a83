"""The sections of a run's report, each made from the run folder through public task APIs.

A section is data for the template (:class:`Section`): text, tables, pictures. A
builder that cannot make its section for a run returns one with ``missing`` set,
saying why, so the page never drops a section silently.
"""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rnnkit.report import figures
from rnnkit.report.probe import (
    JACOBIAN_MAX_HIDDEN,
    Captured,
    capture,
    cell_name,
    run_gradient_flow,
    sample_inputs,
)
from rnnkit.tasks import task_module
from rnnkit.training.progress import read_metrics

# Per-step training values that are not curves of the model's quality.
NOT_CURVES = frozenset({"grad_norm", "clipped", "skipped", "tokens_per_s", "lr"})


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    uri: str
    alt: str


@dataclass(frozen=True)
class Section:
    """One part of the page.

    Attributes:
        title: the heading.
        text: paragraphs (plain text, escaped by the template).
        images: pictures as ``data:`` URIs.
        tables: tables of text cells.
        blocks: preformatted text (configuration, samples, tagged sentences).
        missing: why the section could not be made for this run (``None``: it was).
    """

    title: str
    text: list[str] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    missing: str | None = None


@dataclass
class Context:
    """What several sections share, computed once."""

    run_dir: Path
    kind: str
    config: dict[str, Any]
    _captured: Captured | Exception | None = None

    def captured(self) -> Captured:
        if self._captured is None:
            try:
                self._captured = capture(self.run_dir)
            except Exception as error:
                self._captured = error
        if isinstance(self._captured, Exception):
            raise self._captured
        return self._captured


def image(png: bytes, alt: str) -> Image:
    return Image(figures.data_uri(png), alt)


def fmt(value: float) -> str:
    if value != value:
        return "–"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    if abs(value) >= 1000 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4f}"


# --------------------------------------------------------------------------- every run


def configuration(ctx: Context) -> Section:
    text = (ctx.run_dir / "config.toml").read_text(encoding="utf-8")
    return Section(
        "Configuration",
        text=["config.toml, as resolved and saved by training."],
        blocks=[text.strip()],
    )


def _metrics(ctx: Context) -> list[dict[str, Any]]:
    path = ctx.run_dir / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (was the run trained with progress off?)")
    return read_metrics(path)


def training_curves(ctx: Context) -> Section:
    series: dict[str, dict[str, tuple[list[int], list[float]]]] = defaultdict(dict)
    for row in _metrics(ctx):
        if row["split"] == "train" and row["metric"] in NOT_CURVES:
            continue
        steps, values = series[row["metric"]].setdefault(row["split"], ([], []))
        steps.append(row["step"])
        values.append(row["value"])
    if not series:
        return Section("Loss and metrics", missing="metrics.csv has no loss or metric rows")
    order = sorted(series, key=lambda name: (name != "loss", name))
    rows = []
    for name in order:
        for split, (_, values) in series[name].items():
            rows.append(
                [name, split, str(len(values)), fmt(values[-1]), fmt(min(values)), fmt(max(values))]
            )
    return Section(
        "Loss and metrics",
        text=["Training values per optimizer step, validation values at each evaluation."],
        images=[
            image(figures.curves({name: series[name] for name in order}), "loss and metric curves")
        ],
        tables=[Table(["metric", "split", "points", "last", "min", "max"], rows)],
    )


@dataclass(frozen=True)
class Attempt:
    """One optimizer step, taken or skipped, as metrics.csv records it.

    ``step`` is the step it made (a skipped attempt is drawn at the step it failed to
    make: one past the last step taken); ``norm`` is ``None`` when not recorded.
    """

    step: int
    norm: float | None
    clipped: bool
    skipped: bool


def attempts(rows: list[dict[str, Any]]) -> list[Attempt]:
    """The training rows as attempts: each starts with its ``loss`` row (the trainer
    writes ``loss`` first), so a skipped attempt, which repeats the step number of the
    last step taken, stays apart from it."""
    groups: list[tuple[int, dict[str, float]]] = []
    for row in rows:
        if row["split"] != "train":
            continue
        if row["metric"] == "loss" or not groups or groups[-1][0] != row["step"]:
            groups.append((row["step"], {}))
        groups[-1][1][row["metric"]] = row["value"]
    out = []
    for step, values in groups:
        if "grad_norm" not in values and "skipped" not in values:
            continue  # not an optimizer step (an older file, an epoch summary)
        skipped = values.get("skipped", 0.0) > 0
        out.append(
            Attempt(
                step + 1 if skipped else step,
                values.get("grad_norm"),
                values.get("clipped", 0.0) > 0,
                skipped,
            )
        )
    return out


def gradient_norms(ctx: Context) -> Section:
    found = attempts(_metrics(ctx))
    if not found:
        return Section("Gradient norms", missing="metrics.csv has no grad_norm rows")
    clip_norm = ctx.config.get("trainer", {}).get("clip_norm")
    taken = [a for a in found if not a.skipped]
    clipped = [a for a in taken if a.clipped]
    skipped = [a for a in found if a.skipped]
    clipping = f" (clip norm {clip_norm:g})" if clip_norm is not None else " (no clipping)"
    text = [
        f"{len(taken)} steps; {len(clipped)} clipped{clipping}; {len(skipped)} skipped "
        "(a non-finite gradient norm or no targets: no update)."
    ]
    finite = sorted(a.norm for a in taken if a.norm is not None and math.isfinite(a.norm))
    if finite:
        text.append(f"Norm: median {finite[len(finite) // 2]:.3g}, largest {finite[-1]:.3g}.")
    png = figures.gradient_norms(
        [(a.step, a.norm) for a in taken],
        [(a.step, a.norm) for a in clipped],
        [(a.step, a.norm) for a in skipped],
        clip_norm,
    )
    return Section("Gradient norms", text=text, images=[image(png, "gradient norm per step")])


def gradient_flow(ctx: Context) -> Section:
    captured = ctx.captured()
    flow = run_gradient_flow(captured)
    steps = flow.steps
    name = f"{cell_name(captured)}, H = {captured.module.hidden_size}"
    title = f"trained {name}, {ctx.kind} run, {captured.split} batch, T = {steps}"
    first, last = float(flow.state_grad_norms[0]), float(flow.state_grad_norms[-1])
    rows = [[name, str(steps), f"{first:.3e}", f"{last:.3e}", f"{flow.decay():.3e}"]]
    rows_used = int(sample_inputs(captured).shape[0])
    notes = []
    if flow.jacobian_norms is None:
        notes.append(
            f"‖∂h_T/∂h_t‖₂ is left out for H > {JACOBIAN_MAX_HIDDEN} (it costs H "
            "vector-Jacobian products per step)."
        )
    return Section(
        "Gradient flow through time",
        text=[
            f"The trained first recurrent layer (left to right) on {rows_used} sequence"
            f"{'s' if rows_used > 1 else ''} of the {captured.split} split, as the model embeds "
            f"them, cut to T = {steps} steps; probe loss L = ½·mean ‖h_T‖² on the last step, "
            "measured step by step with rnnkit.diagnostics.gradient_flow.",
            *notes,
        ],
        images=[image(figures.gradient_flow({name: flow}, title), "gradient flow through time")],
        tables=[Table(["cell", "T", "‖∂L/∂h_0‖", "‖∂L/∂h_T‖", "first / last"], rows)],
    )


def hidden_states(ctx: Context) -> Section:
    captured = ctx.captured()
    steps = min(captured.length(0), 400)
    states = captured.outputs[0, :steps].T  # (D·H, T)
    directions = captured.module.num_directions
    return Section(
        "Hidden states",
        text=[
            f"The recurrent stack's outputs (last layer, {directions} direction"
            f"{'s' if directions > 1 else ''}) over the first sequence of the "
            f"{captured.split} batch: units down, steps across ({steps} steps)."
        ],
        images=[
            image(
                figures.heatmap(
                    states.numpy(), xlabel="step t", ylabel="unit", title="h_t (units × time)"
                ),
                "hidden-state heatmap",
            )
        ],
    )


def attention(ctx: Context) -> Section:
    title = "Attention"
    if ctx.kind != "seq2seq":
        return Section(
            title, missing=f"only encoder–decoder (seq2seq) runs attend; this is a {ctx.kind} run"
        )
    from rnnkit.tasks import seq2seq as task

    model, source_vocab, target_vocab, run = task.load_run(ctx.run_dir)
    if model.attention is None:
        return Section(title, missing="this seq2seq run has attention = 'none'")
    parts = task.read_parts(run.task)
    split = "test" if parts.get("test") else "valid"
    source, target = parts[split][0]
    example = task.encode([(source, target)], source_vocab, target_vocab, run.task)
    with torch.no_grad():
        weights = model.attention_weights(task.collate(example))[0]  # (T−1, S)
    xs = source_vocab.decode(example[0][0], strip_special=False)
    ys = target_vocab.decode(example[0][1][1:], strip_special=False)
    return Section(
        title,
        text=[
            f"α_t over the source while predicting each target token (teacher-forced on "
            f"the first {split} pair: {source!r} → {target!r})."
        ],
        images=[
            image(
                figures.heatmap(
                    weights[: len(ys), : len(xs)].numpy(),
                    xlabel="source",
                    ylabel="target",
                    title="attention α",
                    xticks=xs,
                    yticks=ys,
                    cmap="Blues",
                    symmetric=False,
                ),
                "attention heatmap",
            )
        ],
    )


# --------------------------------------------------------------------------- per task


def confusion(ctx: Context) -> Section:
    title = "Confusion matrix"
    evaluation = task_module(ctx.kind).evaluate(ctx.run_dir, split="test")
    matrix = evaluation.details.get("confusion_matrix")
    if matrix is None:
        return Section(
            title,
            missing=f"the {ctx.kind} run's evaluation has no confusion matrix (a regression run)",
        )
    labels = list(matrix["labels"])
    metrics = ", ".join(f"{k} {fmt(v)}" for k, v in evaluation.metrics.items())
    return Section(
        title,
        text=[f"Test split: {metrics}. Rows: true label; columns: predicted."],
        images=[
            image(
                figures.heatmap(
                    matrix["matrix"],
                    xlabel="predicted",
                    ylabel="true",
                    title="confusion matrix",
                    xticks=labels,
                    yticks=labels,
                    cmap="Blues",
                    symmetric=False,
                    annotate=True,
                ),
                "confusion matrix",
            )
        ],
    )


Wrong = tuple[float, str, str, str]  # (P(predicted), the example, true, predicted)


def _wrong_texts(ctx: Context, scan: int) -> list[Wrong]:
    from rnnkit.tasks import classification as task
    from rnnkit.tasks.task import PredictOptions

    loaded = task.load_run(ctx.run_dir)
    examples = task.read_parts(loaded.run.task)["test"][:scan]
    options = PredictOptions(inputs=tuple(text for text, _ in examples), top=len(loaded.labels))
    rows = []
    for (text, gold), answer in zip(examples, task.predict(ctx.run_dir, options), strict=True):
        label = answer.record["label"]
        if label != gold:
            rows.append((float(answer.record["probabilities"][label]), text, gold, label))
    return rows


def _wrong_sequences(ctx: Context, scan: int) -> list[Wrong] | None:
    """``None`` for an adding-problem run (a regression: nothing to get wrong)."""
    from rnnkit.tasks import sequence_classification as task
    from rnnkit.tasks.classification import class_probabilities

    loaded = task.load_run(ctx.run_dir)
    if loaded.run.task.adding:
        return None
    xs, targets = task.read_parts(loaded.run.task).splits["test"]
    rows = []
    for start in range(0, min(len(xs), scan), 64):
        inputs, lengths = task.pad_floats(xs[start : start + 64])
        with torch.no_grad():
            probs = class_probabilities(loaded.model, inputs, lengths)
        for offset, row in enumerate(probs):
            index = start + offset
            gold, guess = loaded.labels[int(targets[index])], loaded.labels[int(row.argmax())]
            if guess != gold:
                shown = f"test sequence {index + 1} ({int(lengths[offset])} steps)"
                rows.append((float(row.max()), shown, gold, guess))
    return rows


def confidently_wrong(ctx: Context, limit: int = 10, scan: int = 2000) -> Section:
    title = "Most confidently wrong"
    rows = _wrong_texts(ctx, scan) if ctx.kind == "classify" else _wrong_sequences(ctx, scan)
    if rows is None:
        return Section(title, missing="an adding-problem run regresses; nothing to get wrong")
    rows.sort(key=lambda r: -r[0])
    if not rows:
        return Section(title, text=["No test example is misclassified."])
    return Section(
        title,
        text=[
            f"{len(rows)} test examples are wrong; the {min(limit, len(rows))}"
            " the model was surest of:"
        ],
        tables=[
            Table(
                ["P(predicted)", "example", "true", "predicted"],
                [[f"{p:.3f}", s, t, g] for p, s, t, g in rows[:limit]],
            )
        ],
    )


def _marked(tokens: list[str], spans: list[tuple[str, int, int]]) -> str:
    """``[John Smith]PER visited [Paris]LOC``."""
    out = list(tokens)
    for kind, first, last in spans:
        out[first] = "[" + out[first]
        out[last] = out[last] + "]" + kind
    return " ".join(out)


def tagged_sentences(ctx: Context, limit: int = 8) -> Section:
    from rnnkit.tasks import tagging as task

    model, vocab, tagset, run = task.load_run(ctx.run_dir)
    sentences = task.read_parts(run.task)["test"][:limit]
    if not sentences:
        return Section("Tagged sentences", missing="the test split has no sentences")
    tokens = [[token for token, _ in sentence] for sentence in sentences]
    predicted = task.tag_sentences(model, tokens, vocab, tagset, run.task.lowercase)
    blocks = []
    for words, gold, guess in zip(tokens, sentences, predicted, strict=True):
        true_tags = [tag for _, tag in gold]
        if tagset.scheme is None:  # POS-style tags: no spans, token/tag pairs
            blocks.append(
                "true:      "
                + " ".join(f"{w}/{t}" for w, t in zip(words, true_tags, strict=True))
                + "\npredicted: "
                + " ".join(f"{w}/{t}" for w, t in zip(words, guess, strict=True))
            )
        else:
            blocks.append(
                "true:      "
                + _marked(words, task.entity_spans(true_tags))
                + "\npredicted: "
                + _marked(words, task.entity_spans(guess))
            )
    return Section(
        "Tagged sentences",
        text=[f"The first {len(blocks)} test sentences; [words]TYPE marks a span."],
        blocks=blocks,
    )


def forecast(ctx: Context) -> Section:
    from rnnkit.tasks import forecasting as task

    evaluation = task.evaluate(ctx.run_dir, split="test")
    _, _, run = task.load_run(ctx.run_dir)
    series = task.read_column(run.task)
    back = evaluation.details["backtest"]
    horizon = len(back["actual"])
    start = len(series.values) - horizon
    history = series.values[max(0, start - 4 * horizon) : start]
    season = int(back["season"])
    whole = series.values[:start]
    lines = {
        "actual": back["actual"],
        "model": back["forecast"],
        "naive": [whole[-1]] * horizon,
    }
    if season > 1 and len(whole) >= season:
        lines["seasonal naive"] = [whole[len(whole) - season + k % season] for k in range(horizon)]
    times = series.times[max(0, start - 4 * horizon) : start + horizon]
    report = evaluation.details["metrics"]
    names = sorted({name for values in report.values() for name in values})
    rows = [
        [who, *(fmt(values[n]) if values.get(n) is not None else "–" for n in names)]
        for who, values in report.items()
    ]
    return Section(
        "Forecast",
        text=[
            f"A backtest from {back['origin']}: the last {horizon} steps forecast from "
            f"everything before, beside the naive (last value) and seasonal-naive "
            f"(season {season}) baselines."
        ],
        images=[image(figures.forecast(times, history, lines), "forecast against actual")],
        tables=[Table(["forecast", *names], rows)],
    )


def translations(ctx: Context, limit: int = 10) -> Section:
    from rnnkit.tasks import seq2seq as task

    model, source_vocab, target_vocab, run = task.load_run(ctx.run_dir)
    pairs = task.read_parts(run.task)["test"]
    metrics, triples = task.decoded_scores(
        model, pairs, source_vocab, target_vocab, run.task, beam=run.task.beam
    )
    shown = ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
    rows = [
        [source, " ".join(output), " | ".join(" ".join(r) for r in refs)]
        for source, output, refs in triples[:limit]
    ]
    return Section(
        "Decoded examples",
        text=[f"Test split, beam {run.task.beam}: {shown}. The first {len(rows)} sources:"],
        tables=[Table(["source", "output", "reference(s)"], rows)],
    )


def samples(ctx: Context) -> Section:
    from rnnkit.tasks import language_model as task
    from rnnkit.tasks.task import GenerateOptions

    texts = task.generate(
        ctx.run_dir, GenerateOptions(length=300, temperature=0.8, num_samples=3, seed=1)
    )
    return Section(
        "Generated samples",
        text=["Three samples, temperature 0.8, seed 1, from a newline."],
        blocks=texts,
    )


def captions(ctx: Context, labels: int = 6) -> Section:
    from rnnkit.tasks import captioning as task
    from rnnkit.tasks.task import GenerateOptions

    conditions = task.load_run(ctx.run_dir).conditions
    if conditions.kind != "label":
        return Section(
            "Generated captions",
            missing="a vector-conditioned run: give a vector "
            "to `rnnkit generate RUN --condition` to see its captions",
        )
    blocks = []
    for label in conditions.labels[:labels]:
        options = GenerateOptions(
            length=40, temperature=0.8, num_samples=2, seed=1, condition=label
        )
        texts = task.generate(ctx.run_dir, options)
        blocks.append(f"{label}:\n" + "\n".join(f"  {text}" for text in texts))
    shown = min(labels, len(conditions.labels))
    return Section(
        "Generated captions",
        text=[f"Two samples for each of {shown} labels (temperature 0.8, seed 1)."],
        blocks=blocks,
    )


def piano_roll(ctx: Context) -> Section:
    from rnnkit.tasks import music as task
    from rnnkit.tasks.task import GenerateOptions

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "piece.png"
        task.generate(ctx.run_dir, GenerateOptions(length=64, seed=1, out=str(path)))
        png = path.read_bytes()
    return Section(
        "Generated piece",
        text=["64 frames sampled after a silent frame (seed 1)."],
        images=[image(png, "piano roll of a generated piece")],
    )


COMMON: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    ("Configuration", configuration),
    ("Loss and metrics", training_curves),
    ("Gradient norms", gradient_norms),
    ("Gradient flow through time", gradient_flow),
    ("Hidden states", hidden_states),
    ("Attention", attention),
)

PER_TASK: dict[str, tuple[tuple[str, Callable[[Context], Section]], ...]] = {
    "classify": (("Confusion matrix", confusion), ("Most confidently wrong", confidently_wrong)),
    "seqclass": (("Confusion matrix", confusion), ("Most confidently wrong", confidently_wrong)),
    "tag": (("Tagged sentences", tagged_sentences),),
    "forecast": (("Forecast", forecast),),
    "lm": (("Generated samples", samples),),
    "music": (("Generated piece", piano_roll),),
    "seq2seq": (("Decoded examples", translations),),
    "caption": (("Generated captions", captions),),
}


def build(ctx: Context) -> list[Section]:
    """Every section for the run; a builder that fails leaves a section saying why."""
    builders = [*COMMON, *PER_TASK.get(ctx.kind, ())]
    out = []
    for title, builder in builders:
        try:
            out.append(builder(ctx))
        except Exception as error:
            out.append(
                Section(title, missing=f"could not be made: {type(error).__name__}: {error}")
            )
    if ctx.kind not in PER_TASK:
        out.append(Section("Task", missing=f"no task-specific section for {ctx.kind} runs yet"))
    return out
