"""`python -m mla_core cache`: KV cache bytes per token for MHA, GQA, MQA and MLA."""

from __future__ import annotations

import argparse

from mla_core.cli.args import print_json


def add_cache(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        help="with --context: how many sequences fit in G GB (10^9 bytes) of cache memory",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_cache)


def _run_cache(args: argparse.Namespace) -> int:
    from mla_core.analysis.cache_size import KIND_LABELS, cache_report, resolve_dims

    dims = resolve_dims(args.config)
    report = cache_report(dims, args.dtype_bytes, args.context, args.gqa_groups, args.memory_gb)
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
    if args.memory_gb is not None:
        header += f"{'seqs in ' + format(args.memory_gb, 'g') + ' GB':>18}"
    print(header)
    for kind, nbytes in report["bytes_per_token"].items():
        label = KIND_LABELS[kind] + (f"-{report['gqa_groups']}" if kind == "gqa" else "")
        line = (
            f"{label:<10}{report['elements_per_token_per_layer'][kind]:>22,}"
            f"{nbytes:>16,}{report['ratios'][kind]:>10.2f}x"
        )
        if args.context is not None:
            line += f"{_human_bytes(report['cache_bytes'][kind]):>22}"
        if args.memory_gb is not None:
            line += f"{report['sequences_that_fit'][kind]:>18,}"
        print(line)
    return 0


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n):,} B"
        n /= 1000
    raise AssertionError("unreachable")
