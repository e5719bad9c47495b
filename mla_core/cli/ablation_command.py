"""`python -m mla_core ablation`: train MHA, GQA, MQA and MLA alike and write the table."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

DEFAULTS_NOTE = "(default %(default)s)"
DEFAULT_OUT = Path("assets/data/attention_ablation.json")
DEFAULT_CHECKPOINT_ROOT = Path(".cache/ablation")


def add_ablation(sub: argparse._SubParsersAction) -> None:
    from mla_core.models.configs import ABLATION_KINDS as KINDS
    from mla_core.models.configs import AblationShape
    from mla_core.train.settings import AblationSettings

    shape, s = AblationShape(), AblationSettings()
    p = sub.add_parser(
        "ablation",
        help="train MHA, GQA, MQA and MLA models alike and compare them",
        description="Train four small DeepSeek-style models that differ only in attention "
        "(same data, steps, seed; parameter counts matched), then write their validation "
        "loss, KV cache bytes, parameters and training time as JSON. Resumable.",
    )
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        metavar="KIND",
        help=f"attention kinds to train, of {', '.join(KINDS)} (default all)",
    )
    p.add_argument("--steps", type=int, default=s.steps, help=f"optimizer steps {DEFAULTS_NOTE}")
    p.add_argument("--batch-size", type=int, default=s.batch_size, help=DEFAULTS_NOTE)
    p.add_argument("--lr", type=float, default=s.lr, help=f"peak learning rate {DEFAULTS_NOTE}")
    p.add_argument("--min-lr", type=float, default=s.min_lr, help=DEFAULTS_NOTE)
    p.add_argument("--warmup-steps", type=int, default=s.warmup_steps, help=DEFAULTS_NOTE)
    p.add_argument("--seed", type=int, default=s.seed, help=DEFAULTS_NOTE)
    p.add_argument(
        "--eval-every",
        type=int,
        default=s.eval_every,
        help=f"steps between cheap validation checks {DEFAULTS_NOTE}",
    )
    p.add_argument(
        "--eval-windows",
        type=int,
        default=s.eval_windows,
        help=f"validation windows per cheap check {DEFAULTS_NOTE}",
    )
    p.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default=s.precision,
        help=f"bf16 autocast or plain float32 {DEFAULTS_NOTE}",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=s.compile,
        help="torch.compile forward + loss (needs a C++ compiler)",
    )
    p.add_argument(
        "--fused-adamw",
        action=argparse.BooleanOptionalAction,
        default=s.fused_adamw,
        help="torch's fused AdamW kernel",
    )
    for flag, field in (
        ("--n-layers", "n_layers"),
        ("--hidden-size", "hidden_size"),
        ("--n-heads", "n_heads"),
        ("--head-dim", "head_dim"),
        ("--n-ctx", "n_ctx"),
        ("--gqa-kv-heads", "gqa_kv_heads"),
        ("--kv-lora-rank", "kv_lora_rank"),
        ("--qk-nope-head-dim", "qk_nope_head_dim"),
        ("--qk-rope-head-dim", "qk_rope_head_dim"),
        ("--v-head-dim", "v_head_dim"),
    ):
        p.add_argument(flag, type=int, default=getattr(shape, field), help=DEFAULTS_NOTE)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON table {DEFAULTS_NOTE}")
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=DEFAULT_CHECKPOINT_ROOT,
        help=f"one folder per kind {DEFAULTS_NOTE}",
    )
    p.add_argument("--checkpoint-every", type=int, default=100, help=DEFAULTS_NOTE)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue unfinished kinds from their checkpoints, skip finished ones",
    )
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available"
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument(
        "--save-mla",
        type=Path,
        default=None,
        metavar="DIR",
        help="also save the trained MLA model (safetensors + config.json) in DIR",
    )
    p.set_defaults(handler=_run_ablation)


def _run_ablation(args: argparse.Namespace) -> int:
    import torch

    from mla_core.atomic import check_output_file, check_output_folder
    from mla_core.errors import UserError
    from mla_core.loading.weights import check_device
    from mla_core.models.configs import AblationShape
    from mla_core.train.ablation import run_ablation
    from mla_core.train.settings import AblationSettings

    at_least_one = (
        "steps",
        "batch_size",
        "eval_every",
        "eval_windows",
        "checkpoint_every",
        "n_layers",
        "hidden_size",
        "n_heads",
        "head_dim",
        "n_ctx",
        "gqa_kv_heads",
        "kv_lora_rank",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "v_head_dim",
    )
    for name in at_least_one:
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")
    if not 0 <= args.warmup_steps < args.steps:
        raise UserError(f"--warmup-steps {args.warmup_steps} must be in 0..steps-1")
    if not (args.lr > 0 and 0 <= args.min_lr <= args.lr):
        raise UserError(f"--lr {args.lr} and --min-lr {args.min_lr} need 0 <= min-lr <= lr, lr > 0")
    for flag, value in (
        ("--head-dim", args.head_dim),
        ("--qk-rope-head-dim", args.qk_rope_head_dim),
    ):
        if value % 2:
            raise UserError(f"{flag} {value} must be even (RoPE rotates pairs)")
    if args.n_heads % args.gqa_kv_heads or args.gqa_kv_heads > args.n_heads:
        raise UserError(f"--gqa-kv-heads {args.gqa_kv_heads} must divide --n-heads {args.n_heads}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads {args.threads} must be >= 1")
    device = check_device(args.device)
    out = check_output_file(args.out, "--out", parents_made=True)
    check_output_folder(args.checkpoint_dir, "--checkpoint-dir")
    if args.save_mla is not None:
        check_output_folder(args.save_mla, "--save-mla")
        if "mla" not in args.kinds:
            raise UserError("--save-mla needs the mla kind in --kinds")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)

    shape = AblationShape(
        n_layers=args.n_layers,
        hidden_size=args.hidden_size,
        n_heads=args.n_heads,
        head_dim=args.head_dim,
        n_ctx=args.n_ctx,
        gqa_kv_heads=args.gqa_kv_heads,
        kv_lora_rank=args.kv_lora_rank,
        qk_nope_head_dim=args.qk_nope_head_dim,
        qk_rope_head_dim=args.qk_rope_head_dim,
        v_head_dim=args.v_head_dim,
    )
    settings = AblationSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        eval_every=args.eval_every,
        eval_windows=args.eval_windows,
        precision=args.precision,
        compile=args.compile,
        fused_adamw=args.fused_adamw,
    )
    # The command as it would be typed again (without --resume: resuming changes nothing).
    argv = [a for a in getattr(args, "argv", []) if a != "--resume"]
    command = "python -m mla_core " + shlex.join(argv) if argv else "python -m mla_core ablation"
    run_ablation(
        shape,
        settings,
        args.kinds,
        out,
        device,
        args.checkpoint_dir,
        args.checkpoint_every,
        args.resume,
        command,
        args.save_mla,
    )
    return 0
