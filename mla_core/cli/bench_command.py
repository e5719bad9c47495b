"""`python -m mla_core bench decode`: one attention decode step against the roofline."""

from __future__ import annotations

import argparse

from mla_core.cli.args import OneLineArgumentParser


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks (decode: attention decode step against the roofline)",
        description="Speed benchmarks; each one prints a table and writes JSON and a plot.",
    )
    actions = p.add_subparsers(
        dest="bench", required=True, parser_class=OneLineArgumentParser, metavar="{decode}"
    )
    d = actions.add_parser(
        "decode",
        help="one decode step of MHA, GQA, MQA and MLA at DeepSeek-V3 widths vs the roofline",
        description="Time one decode step of one attention layer (DeepSeek-V3 widths) for MHA, "
        "GQA-8, MQA, naive and absorbed MLA, and compare each with this machine's roofline "
        "floor max(bytes / bandwidth, FLOPs / matmul rate).",
    )
    d.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    d.add_argument(
        "--dtype", nargs="+", default=None, help="float32 and/or bfloat16 (default float32)"
    )
    d.add_argument(
        "--contexts",
        nargs="+",
        default=None,
        help="cache lengths, e.g. 1k 8k 16384 (default 1k..32k)",
    )
    d.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes (default 1 4)")
    d.add_argument("--variants", nargs="+", default=None, help="subset of the five variants")
    d.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run kernels through torch.compile (default: on for cpu, off for cuda)",
    )
    d.add_argument("--quick", action="store_true", help="contexts 1k 4k, batch 1 2, short timings")
    d.add_argument(
        "--json", default=None, help="JSON output (default bench/results/decode_<device>.json)"
    )
    d.add_argument("--plot", default=None, help="PNG output (default: the JSON path with .png)")
    d.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per core)")
    d.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="wall time (default) or, with --threads 1, the thread's CPU time (shared machines)",
    )
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    d.set_defaults(handler=_run_bench_decode)


def _run_bench_decode(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mla_core.atomic import check_output_file

    # the output files are checked before the benchmark, not after minutes of timing
    json_path = Path(args.json or f"bench/results/decode_{args.device}.json")
    plot_path = Path(args.plot) if args.plot else json_path.with_suffix(".png")
    check_output_file(json_path, "--json", parents_made=True)
    check_output_file(plot_path, "--plot", parents_made=True)

    from mla_core.bench.decode import (
        DEFAULT_CONTEXTS,
        QUICK_CONTEXTS,
        parse_contexts,
        run_decode_benchmark,
    )
    from mla_core.bench.decode_attention import VARIANTS
    from mla_core.bench.decode_report import format_table, write_json, write_plot

    if args.contexts is not None:
        contexts = parse_contexts(args.contexts)
    else:
        contexts = list(QUICK_CONTEXTS if args.quick else DEFAULT_CONTEXTS)
    batches = args.batches or ([1, 2] if args.quick else [1, 4])
    report = run_decode_benchmark(
        device=args.device,
        dtypes=args.dtype or ["float32"],
        contexts=contexts,
        batches=batches,
        variants=args.variants or list(VARIANTS),
        compile_kernels=args.compile,
        quick=args.quick,
        progress=not args.no_progress,
        threads=args.threads,
        clock=args.clock,
    )
    write_json(report, json_path)
    write_plot(report, plot_path)
    print(format_table(report))
    print(f"wrote {json_path} and {plot_path}")
    return 0
