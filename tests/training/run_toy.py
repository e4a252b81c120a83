"""Train the toy tagger in a process of its own: for kill/resume and torchrun tests.

python -m tests.training.run_toy --run-dir R --out W.safetensors [--kill-at N] ...
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

import torch
from safetensors.torch import save_file

from rnnkit.training.trainer import Callback, Interrupted, OptimizerConfig, Trainer, TrainerConfig
from tests.training.toy import Tagger, collate, examples


class Signal(Callback):
    """Sends this process a signal right after optimizer step ``at`` (or after the
    evaluation at that step, with ``on_eval``)."""

    def __init__(self, at: int, signum: int, on_eval: bool = False) -> None:
        self.at = at
        self.signum = signum
        self.on_eval = on_eval

    def on_step_end(self, trainer: Trainer, metrics: Any) -> None:
        if trainer.state.step == self.at and not self.on_eval:
            os.kill(os.getpid(), self.signum)

    def on_evaluate(self, trainer: Trainer, metrics: Any) -> None:
        if trainer.state.step == self.at and self.on_eval:
            os.kill(os.getpid(), self.signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir")
    parser.add_argument("--out", required=True)
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int)
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--val", type=int, default=0, help="validation examples (0: none)")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--double", action="store_true")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--kill-on-eval", type=int, help="SIGKILL after the evaluation at step N")
    parser.add_argument("--interrupt-at", type=int)
    args = parser.parse_args(argv)
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it
    # ignored; Ctrl-C at a terminal always reaches the process, so restore that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Tagger(args.dropout)
    if args.double:
        model = model.double()
    config = TrainerConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        accumulate=args.accumulate,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        max_steps=args.max_steps,
        progress="lines",
        device="cpu",
        optimizer=OptimizerConfig("adam", lr=0.01),
    )
    callbacks: list[Callback] = []
    if args.kill_at:
        callbacks.append(Signal(args.kill_at, signal.SIGKILL))
    if args.kill_on_eval:
        callbacks.append(Signal(args.kill_on_eval, signal.SIGKILL, on_eval=True))
    if args.interrupt_at:
        callbacks.append(Signal(args.interrupt_at, signal.SIGINT))
    trainer = Trainer(
        model,
        config,
        examples(args.examples),
        collate,
        val=examples(args.val, seed=1) if args.val else None,
        run_dir=args.run_dir,
        resume=args.resume,
        callbacks=callbacks,
    )
    try:
        trainer.fit()
    except Interrupted:
        return 130
    if trainer.world.main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
