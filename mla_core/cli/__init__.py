"""The `python -m mla_core` command line: one subcommand per job.

Every subcommand turns bad input into one line on stderr naming the bad value and
what is allowed, with exit code 2 (see `mla_core.errors.UserError`).

- `args`: the one-line argument parser and the flags every model command shares;
- `cache_command`: `cache`;
- `gpt2_commands`: `predict`, `attention`, `heads`;
- `mla_commands`: `convert`, `sweep`, `deepseek-attention` (and `attention --model mla`);
- `bench_command`: `bench decode`;
- `ablation_command`: `ablation` (train MHA, GQA, MQA and MLA alike and compare them).
"""

from __future__ import annotations

import argparse
import sys

from mla_core.cli.args import OneLineArgumentParser
from mla_core.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: importing `mla_core.cli.args` (render.py, train) runs this
    # file, and should not load every command with it.
    from mla_core.cli.ablation_command import add_ablation
    from mla_core.cli.bench_command import add_bench
    from mla_core.cli.cache_command import add_cache
    from mla_core.cli.gpt2_commands import add_attention, add_heads, add_predict
    from mla_core.cli.mla_commands import add_convert, add_deepseek_attention, add_sweep

    parser = OneLineArgumentParser(
        prog="python -m mla_core",
        description="Models, caches and scene data behind the MLA explainer video.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    add_cache(sub)
    add_predict(sub)
    add_attention(sub)
    add_convert(sub)
    add_sweep(sub)
    add_deepseek_attention(sub)
    add_bench(sub)
    add_heads(sub)
    add_ablation(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as typed, for commands that record it
    try:
        return args.handler(args) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
