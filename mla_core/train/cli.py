"""`python -m mla_core.train`: the flags of a run, checked, then `loop.train`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import torch

from mla_core.cli.args import OneLineArgumentParser
from mla_core.errors import UserError
from mla_core.train.loop import train
from mla_core.train.settings import TrainSettings

DEFAULT_OUT = Path("assets/models/demo-gpt2")
DEFAULT_CHECKPOINT_DIR = Path(".cache/train-checkpoint")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="python -m mla_core.train",
        description="Train the embedded demo GPT-2 on Wikipedia summaries (fixed seeds).",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model folder to write")
    p.add_argument("--steps", type=int, default=1400, help="optimizer steps (fixed, no timer)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per step")
    p.add_argument("--n-ctx", type=int, default=256, help="context length (tokens)")
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=3)
    p.add_argument("--n-embd", type=int, default=192)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=1e-4, help="learning rate at the last step")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--val-fraction", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--eval-every", type=int, default=100, help="steps between validation checks")
    p.add_argument("--eval-windows", type=int, default=24, help="validation windows per check")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument(
        "--position-init",
        choices=("normal", "sinusoidal"),
        default="sinusoidal",
        help="starting values of the learned position embedding (default sinusoidal)",
    )
    p.add_argument(
        "--position-std",
        type=float,
        default=0.02,
        help="std of the sinusoidal position init (0.02 = GPT-2's init scale)",
    )
    p.add_argument(
        "--repeat-fraction",
        type=float,
        default=0.0,
        help="share of training windows given one repeated span of their own text (0..1)",
    )
    p.add_argument(
        "--random-repeat-fraction",
        type=float,
        default=0.0,
        help="share of training windows that are a random token sequence repeated (0..1)",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from the weights of this GPT-2 folder (same shape) instead of random ones",
    )
    p.add_argument(
        "--fused-adamw",
        action="store_true",
        help="use torch's fused AdamW (faster for small batches; rounding differs slightly)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile forward and loss as one graph (needs a C++ compiler; faster)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR)
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    return p


def main(argv: list[str] | None = None) -> int:
    from mla_core.loading.weights import check_device

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        for name in (
            "steps",
            "batch_size",
            "n_ctx",
            "eval_every",
            "eval_windows",
            "checkpoint_every",
        ):
            if getattr(args, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")
        if args.warmup_steps < 0 or args.warmup_steps >= args.steps:
            raise UserError(f"--warmup-steps {args.warmup_steps} must be in 0..steps-1")
        if not args.position_std > 0:
            raise UserError(f"--position-std {args.position_std} must be > 0")
        if not 0.0 <= args.repeat_fraction <= 1.0:
            raise UserError(f"--repeat-fraction {args.repeat_fraction} must be in 0..1")
        if not 0.0 <= args.random_repeat_fraction <= 1.0:
            raise UserError(
                f"--random-repeat-fraction {args.random_repeat_fraction} must be in 0..1"
            )
        device = check_device(args.device)
        if args.threads is not None:
            if args.threads < 1:
                raise UserError(f"--threads {args.threads} must be >= 1")
            torch.set_num_threads(args.threads)
        else:
            torch.set_num_threads(os.cpu_count() or 1)
        settings = TrainSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            n_ctx=args.n_ctx,
            n_layer=args.n_layer,
            n_head=args.n_head,
            n_embd=args.n_embd,
            lr=args.lr,
            min_lr=args.min_lr,
            warmup_steps=args.warmup_steps,
            weight_decay=args.weight_decay,
            grad_clip=args.grad_clip,
            val_fraction=args.val_fraction,
            seed=args.seed,
            eval_every=args.eval_every,
            eval_windows=args.eval_windows,
            precision=args.precision,
            position_init=args.position_init,
            repeat_fraction=args.repeat_fraction,
            position_std=args.position_std,
            fused_adamw=args.fused_adamw,
            compile=args.compile,
            random_repeat_fraction=args.random_repeat_fraction,
            init_from=str(args.init_from) if args.init_from else "",
        )
        # The command as it would be typed again (without --resume: resuming changes nothing).
        command = "python -m mla_core.train " + shlex.join(a for a in argv if a != "--resume")
        train(
            settings,
            args.out,
            device,
            args.checkpoint_dir,
            args.checkpoint_every,
            args.resume,
            command.strip(),
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0
