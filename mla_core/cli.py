"""The `python -m mla_core` command line: one subcommand per job.

Every subcommand turns bad input into one line on stderr naming the bad value and
what is allowed, with exit code 2 (see `mla_core.errors.UserError`).
"""

from __future__ import annotations

import argparse
import json
import sys

from mla_core.errors import UserError


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ('error: ...') and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


# --- cache ------------------------------------------------------------------------------


def _add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="KV cache size per token for MHA, GQA, MQA and MLA",
        description="Bytes of KV cache per token (and at a context length) for each attention "
        "kind a model config supports.",
    )
    p.add_argument("--config", required=True, help="built-in config name or a config.json path")
    p.add_argument("--dtype-bytes", type=int, default=2, help="bytes per cached number (default 2)")
    p.add_argument("--context", type=int, default=None, help="also report the cache at T tokens")
    p.add_argument("--gqa-groups", type=int, default=None, help="also report GQA with N groups")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_cache)


def _run_cache(args: argparse.Namespace) -> int:
    from mla_core.cache_size import KIND_LABELS, cache_report, resolve_dims

    dims = resolve_dims(args.config)
    report = cache_report(dims, args.dtype_bytes, args.context, args.gqa_groups)
    if args.json:
        print_json(report)
        return 0
    print(
        f"{report['config']}: {dims.n_layers} layers, {dims.n_heads} heads, head dim "
        f"{dims.head_dim}, {args.dtype_bytes} bytes per number"
    )
    header = f"{'kind':<10}{'numbers/token/layer':>22}{'bytes/token':>16}{'x smaller':>11}"
    if args.context is not None:
        header += f"{'at ' + format(args.context, ',') + ' tokens':>22}"
    print(header)
    for kind, nbytes in report["bytes_per_token"].items():
        label = KIND_LABELS[kind] + (f"-{report['gqa_groups']}" if kind == "gqa" else "")
        line = (
            f"{label:<10}{report['elements_per_token_per_layer'][kind]:>22,}"
            f"{nbytes:>16,}{report['ratios'][kind]:>10.2f}x"
        )
        if args.context is not None:
            line += f"{_human_bytes(report['cache_bytes'][kind]):>22}"
        print(line)
    return 0


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n):,} B"
        n /= 1000
    raise AssertionError("unreachable")


# --- entry point ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m mla_core",
        description="Models, caches and scene data behind the MLA explainer video.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    _add_cache(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
