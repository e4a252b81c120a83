"""``rnnkit train TASK``: fill in the task's configuration from flags and train.

Only the language-model task exists so far (``lm``); the others follow.
"""

from __future__ import annotations

import argparse
from typing import Any

from rnnkit.cli.arguments import positive_int


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on a bundled dataset or your own files",
        description=(
            "Train a model; the run folder gets config.toml, metrics.csv and checkpoints.\n\n"
            "example:\n"
            "  rnnkit train lm --dataset shakespeare --hidden 256 --epochs 1 --out runs/shakespeare"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True,
                                  help="what to train (lm)")  # fmt: skip
    lm = tasks.add_parser("lm", help="a character- or word-level language model")
    data = lm.add_mutually_exclusive_group()
    data.add_argument("--data", help="your UTF-8 text file or folder (split 90/5/5)")
    data.add_argument(
        "--dataset", default="shakespeare", help="a bundled text dataset (shakespeare)"
    )
    lm.add_argument("--level", choices=("char", "word"), default="char", help="token level (char)")
    lm.add_argument("--batch-size", type=positive_int, default=32, help="parallel streams B (32)")
    lm.add_argument(
        "--steps", type=positive_int, default=100, help="tokens per chunk, the BPTT window (100)"
    )
    lm.add_argument(
        "--cell", choices=("lstm", "gru", "rnn"), default="lstm", help="recurrent cell (lstm)"
    )
    lm.add_argument("--embed", type=positive_int, default=64, help="embedding size (64)")
    lm.add_argument("--hidden", type=positive_int, default=256, help="hidden size per layer (256)")
    lm.add_argument("--layers", type=positive_int, default=2, help="recurrent layers (2)")
    lm.add_argument("--dropout", type=float, default=0.0, help="dropout probability (0)")
    lm.add_argument("--tie-weights", action="store_true", help="share embedding and output weights")
    lm.add_argument(
        "--epochs", type=positive_int, default=1, help="passes over the training text (1)"
    )
    lm.add_argument("--max-steps", type=positive_int, help="stop after this many optimizer steps")
    lm.add_argument("--lr", type=float, default=2e-3, help="learning rate (2e-3)")
    lm.add_argument("--optimizer", choices=("adam", "adamw", "sgd", "rmsprop", "adagrad"),
                    default="adam", help="optimizer (adam)")  # fmt: skip
    lm.add_argument(
        "--grad-clip", type=float, default=5.0, help="clip the global gradient norm (5)"
    )
    lm.add_argument("--eval-every", type=positive_int, help="evaluate every N optimizer steps")
    lm.add_argument("--seed", type=int, default=0, help="seed for weights, data order, dropout (0)")
    lm.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto",
                    help="progress display (auto: a bar on a terminal)")  # fmt: skip
    lm.add_argument("--out", required=True, help="the run folder")
    lm.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit.models.language_model import LanguageModelConfig
    from rnnkit.tasks import language_model as task
    from rnnkit.training.trainer import OptimizerConfig, TrainerConfig

    config = task.LanguageModelRun(
        task=task.LanguageModelTask(
            dataset=args.dataset, data=args.data, level=args.level,
            batch_size=args.batch_size, steps=args.steps,
        ),
        model=LanguageModelConfig(
            vocab_size=1, embed=args.embed, hidden=args.hidden, layers=args.layers,
            cell=args.cell, dropout=args.dropout, tie_weights=args.tie_weights,
        ),
        trainer=TrainerConfig(
            epochs=args.epochs, max_steps=args.max_steps, clip_norm=args.grad_clip,
            eval_every=args.eval_every, seed=args.seed, progress=args.progress,
            optimizer=OptimizerConfig(args.optimizer, lr=args.lr), device="cpu",
        ),
    )  # fmt: skip
    result = task.train(config, args.out, resume=args.resume)
    best = (
        ""
        if result.best is None
        else f", best val_loss {result.best:.4f} at step {result.best_step}"
    )
    print(f"trained {result.steps} steps ({result.stop_reason}){best}; run folder {args.out}")
    return 0
