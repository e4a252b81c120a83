"""``rnnkit export RUN --onnx FILE``: a trained run's model as an ONNX graph."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a trained run's model as an ONNX file (onnxruntime and other runtimes)",
        description=(
            "Write the run's model (best checkpoint, else last) as an ONNX graph built on "
            "ONNX's own RNN, LSTM and GRU operators, with dynamic batch and time axes: a "
            "classifier (classify, seqclass, forecast) takes tokens or features and their "
            "lengths and gives logits and probabilities (or the forecast, in the run's "
            "scaled units); a tagger gives the emissions per token, and the tags when it has "
            "no CRF; a language model is exported as one decoding step, tokens and state in, "
            "logits and state out. The file keeps the run's task, configuration and assets "
            "(vocabulary, labels) in its metadata. Encoder-decoder, captioning and music runs "
            "cannot be exported. Needs the export extra: pip install 'rnnkit[export]'.\n\n"
            "example:\n"
            "  rnnkit export runs/classify --onnx classify.onnx"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN", help="the run folder")
    parser.add_argument("--onnx", metavar="FILE", required=True, help="the ONNX file to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit import tasks
    from rnnkit.export import OPSET, describe, require_onnx, save_onnx, to_onnx
    from rnnkit.tasks.task import run_kind
    from rnnkit.training.runs import config_file

    kind = run_kind(args.run_dir)  # a folder without a run: one line, status 2
    onnx = require_onnx()  # a missing extra is said before the run loads
    task = tasks.get(kind)
    loaded = task.load(args.run_dir)
    try:
        graph = to_onnx(loaded.model)
    except ValueError as error:  # a model ONNX's recurrent operators cannot express
        message = str(error).removeprefix("export: ")
        raise ValueError(f"{args.run_dir}: a {kind} run cannot be exported: {message}") from None
    metadata = {"rnnkit.kind": kind,
                "rnnkit.config.toml": config_file(args.run_dir).read_text(encoding="utf-8")}  # fmt: skip
    for name, data in task.save_assets(loaded.assets).items():
        try:
            metadata[f"rnnkit.assets.{name}"] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a binary asset: the run folder keeps it
    path = save_onnx(graph, args.onnx, metadata=metadata)
    print(f"wrote {path} (the {kind} run's {type(loaded.model).__name__}, ONNX opset {OPSET})")
    for line in describe(onnx.load(str(path))):
        print(f"  {line}")
    return 0
