"""The decode benchmark's report as a terminal table, a JSON file and a plot.

The report is what `mla_core.bench.decode.run_decode_benchmark` returns.
"""

from __future__ import annotations

import json
from pathlib import Path

from mla_core.atomic import write_atomically
from mla_core.bench.decode_attention import VARIANTS


def format_table(report: dict) -> str:
    """The terminal table: one block per dtype, one row per (batch, context, variant).

    bytes / FLOPs: what one step must read and compute (from the shapes); ms: median step;
    GB/s, GFLOP/s: achieved; floor: max(bytes / bandwidth, FLOPs / rate); eff: floor / ms;
    +-: interquartile range of the samples over the median; block: the tokens per block
    the case was tuned to (GQA, MQA, absorbed MLA in torch), or C where the whole step ran in
    the C kernels (`native_kernels`); floor*: the floor of this path at the
    moment, probed in alternation with the kernel, round by round (memory-bound cases: their
    bytes at the bandwidth of one read of the case's own cache; GQA, MQA and absorbed MLA: at
    least the time of their two matrix products alone, `shape_floor`), median over rounds;
    eff*: the median over rounds of floor* / kernel time, in the same round;
    speed-up: MHA time / this time, measured and by the roofline.
    """
    lines = [
        f"device {report['device']} ({report['device_name']}), torch {report['torch']}, "
        f"{report['threads']} threads, compiled kernels: {report['compiled']}, "
        f"clock: {report['clock']}"
    ]
    header = (
        f"{'B':>3} {'T':>6} {'variant':<13}{'MB read':>10}{'GFLOP':>9}{'ms':>9}{'GB/s':>8}"
        f"{'GFLOP/s':>9}{'+-':>6}{'block':>6}{'floor ms':>10}{'bound':>8}{'eff':>6}"
        f"{'floor*':>8}{'eff*':>6}{'x MHA':>8}{'roofline':>9}"
    )
    for run in report["runs"]:
        roof = run["roofline"]
        lines.append("")
        lines.append(
            f"{run['dtype']}: memory read {roof['bandwidth'] / 1e9:.1f} GB/s, "
            f"matmul {roof['matmul_rate'] / 1e9:.0f} GFLOP/s"
        )
        lines.append(header)
        for r in run["results"]:
            speedup = r["speedup_vs_mha"]
            lines.append(
                f"{r['batch']:>3} {r['context']:>6} {r['label']:<13}{r['bytes'] / 1e6:>10,.1f}"
                f"{r['flops'] / 1e9:>9.2f}{r['median_s'] * 1e3:>9.2f}{r['achieved_gb_per_s']:>8.1f}"
                f"{r['achieved_gflop_per_s']:>9.1f}{r.get('spread', 0.0):>6.0%}"
                f"{'C' if r.get('kernel') == 'C' else _block(r.get('block')):>6}"
                f"{r['floor_s'] * 1e3:>10.2f}{r['bound']:>8}{r['efficiency']:>6.2f}"
                f"{r.get('path_floor_s', r['floor_s']) * 1e3:>8.2f}"
                f"{r.get('path_efficiency', r['efficiency']):>6.2f}"
                + (
                    f" {speedup:>6.2f}x {r['speedup_vs_mha_roofline']:>7.2f}x"
                    if speedup is not None
                    else f"{'-':>8}{'-':>9}"
                )
            )
        for s in run["skipped"]:
            lines.append(
                f"{s['batch']:>3} {s['context']:>6} {s['label']:<13}skipped: {s['skipped']}"
            )
    return "\n".join(lines)


def write_json(report: dict, path: Path) -> None:
    """Write the report as JSON via a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))


def write_plot(report: dict, path: Path) -> None:
    """Step time against context, one panel per (dtype, batch); roofline floors dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    batches = sorted({r["batch"] for run in runs for r in run["results"]})
    if not batches:
        return
    fig, axes = plt.subplots(
        len(runs), len(batches), figsize=(5.5 * len(batches), 4.2 * len(runs)), squeeze=False
    )
    colors = dict(zip(VARIANTS, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for row_axes, run in zip(axes, runs, strict=True):
        for ax, batch in zip(row_axes, batches, strict=True):
            for variant in VARIANTS:
                rows = [
                    r for r in run["results"] if r["variant"] == variant and r["batch"] == batch
                ]
                if not rows:
                    continue
                rows.sort(key=lambda r: r["context"])
                t = [r["context"] for r in rows]
                ax.plot(t, [r["median_s"] * 1e3 for r in rows], "o-", color=colors[variant],
                        label=rows[0]["label"])  # fmt: skip
                ax.plot(t, [r["floor_s"] * 1e3 for r in rows], "--", color=colors[variant])
            ax.set_xscale("log", base=2)
            contexts = sorted({r["context"] for r in run["results"] if r["batch"] == batch})
            ax.set_xticks(contexts, [_token_label(t) for t in contexts])
            ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel("context T (tokens)")
            ax.set_ylabel("decode step (ms)")
            ax.set_title(f"{run['dtype']}, batch {batch} (dashed: roofline floor)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"One attention layer, DeepSeek-V3 widths, {report['device_name']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _token_label(tokens: int) -> str:
    return f"{tokens // 1024}k" if tokens % 1024 == 0 else str(tokens)


def _block(tokens: int | None) -> str:
    """1024 -> "1k"; None (no blocks, or not tuned) -> "-"."""
    return _token_label(tokens) if tokens else "-"
