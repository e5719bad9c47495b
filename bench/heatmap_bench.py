"""Benchmark: a 64x64 heatmap drawn as ONE image vs as 4,096 squares (not a test).

The same 64x64 array (a causal attention-like pattern, fixed seed) coloured by the same fixed
colour scale (`scenes.components.PATTERN_SCALE`) is drawn three ways:

- `image`: the components' `Heatmap` without grid lines: one nearest-neighbour ImageMobject;
- `image+grid`: the same `Heatmap` with its 130 grid lines (what the scenes draw);
- `squares`: 4,096 filled `Square`s in a VGroup, the usual Manim way.

For each way and each quality (low = 854x480, high = 1920x1080) it times building the
mobject and rendering one frame of a scene holding it (Cairo, in-process), `--repeats`
times after one warm-up, and reports the medians of wall time and of this process's CPU time
(on a busy machine the CPU time is the steadier of the two). It also checks that the image
and the squares draw the same picture (mean |difference| of the two frames). Prints a table
and writes bench/results/heatmap_bench.json.

    .venv/bin/python bench/heatmap_bench.py [--repeats N] [--qualities low,high] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from manim import ManimColor, Scene, Square, VGroup, tempconfig  # noqa: E402
from manim import __version__ as manim_version  # noqa: E402

from mla_core.atomic import write_text_atomically  # noqa: E402
from mla_core.bench.timer import PROCESS_CPU, time_calls  # noqa: E402
from render import QUALITIES  # noqa: E402
from scenes.components import BACKGROUND, PATTERN_SCALE, ColorScale, Heatmap  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "heatmap_bench.json"
FRAME_FILL = 0.8  # the heatmap's side as a fraction of the frame height


def pattern(n: int, seed: int = 0) -> np.ndarray:
    """An n x n causal attention-like pattern: rows are softmaxes over the past."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0.0, 2.0, size=(n, n))
    scores[np.triu_indices(n, k=1)] = -np.inf
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def as_image(values: np.ndarray, scale: ColorScale, cell: float, grid: bool) -> Heatmap:
    return Heatmap(values, scale, cell_size=cell, grid=grid)


def as_squares(values: np.ndarray, scale: ColorScale, cell: float) -> VGroup:
    """One filled square per cell, coloured by the same scale, cell (0, 0) at the top left."""
    n_rows, n_cols = values.shape
    rgb = scale.rgb(values)
    squares = VGroup()
    for i in range(n_rows):
        for j in range(n_cols):
            square = Square(side_length=cell, stroke_width=0)
            square.set_fill(ManimColor.from_rgb(tuple(rgb[i, j])), opacity=1)
            square.move_to([(j - (n_cols - 1) / 2) * cell, ((n_rows - 1) / 2 - i) * cell, 0])
            squares.add(square)
    return squares


def render_frame(mobject) -> np.ndarray:
    """One frame of a scene holding `mobject` (the current tempconfig), RGB uint8."""
    scene = Scene()
    scene.add(mobject)
    scene.renderer.update_frame(scene)
    return scene.renderer.get_frame()[..., :3].copy()


def bench_quality(quality_name: str, size: int, repeats: int) -> dict:
    quality = QUALITIES[quality_name]
    values = pattern(size)
    with tempfile.TemporaryDirectory(prefix="heatmap-bench-") as media:
        settings = {
            "pixel_width": quality.width,
            "pixel_height": quality.height,
            "frame_rate": quality.fps,
            "background_color": BACKGROUND,
            "media_dir": media,
            "format": "none",
            "disable_caching": True,
            "verbosity": "WARNING",
            "progress_bar": "none",
        }
        with tempconfig(settings):
            from manim import config

            cell = FRAME_FILL * config.frame_height / size
            builders: dict[str, Callable[[], object]] = {
                "image": lambda: as_image(values, PATTERN_SCALE, cell, grid=False),
                "image+grid": lambda: as_image(values, PATTERN_SCALE, cell, grid=True),
                "squares": lambda: as_squares(values, PATTERN_SCALE, cell),
            }
            cases, frames = {}, {}
            for name, build in builders.items():
                # wall and CPU seconds of `repeats` calls after one warm-up call
                built = time_calls(build, repeats, cpu_clock=PROCESS_CPU)
                mobject = built.result
                drawn = time_calls(
                    lambda m=mobject: render_frame(m), repeats, cpu_clock=PROCESS_CPU
                )
                frames[name] = drawn.result
                case = {"mobjects": len(mobject.get_family())}
                for clock, build_s, render_s in (
                    ("wall", built.samples, drawn.samples),
                    ("cpu", built.cpu_samples, drawn.cpu_samples),
                ):
                    case[f"build_{clock}_s"] = build_s
                    case[f"render_{clock}_s"] = render_s
                    case[f"build_{clock}_median_s"] = statistics.median(build_s)
                    case[f"render_{clock}_median_s"] = statistics.median(render_s)
                    case[f"total_{clock}_median_s"] = statistics.median(
                        build_s
                    ) + statistics.median(render_s)
                cases[name] = case
    diff = np.abs(frames["image"].astype(int) - frames["squares"].astype(int))
    return {
        "width": quality.width,
        "height": quality.height,
        "cases": cases,
        "image_vs_squares_mean_abs_diff": float(diff.mean()),
        "squares_over_image": {
            f"{part}_{clock}": cases["squares"][f"{part}_{clock}_median_s"]
            / cases["image"][f"{part}_{clock}_median_s"]
            for part in ("build", "render", "total")
            for clock in ("cpu", "wall")
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--qualities", default="low,high", help="comma-separated, from render.py")
    parser.add_argument("--size", type=int, default=64, help="heatmap side (cells)")
    args = parser.parse_args()
    qualities = [q.strip() for q in args.qualities.split(",") if q.strip()]
    unknown = [q for q in qualities if q not in QUALITIES]
    if unknown or args.repeats < 1 or args.size < 2:
        parser.error(
            f"bad --qualities {unknown} (allowed: {', '.join(QUALITIES)}), "
            "or --repeats < 1, or --size < 2"
        )
    results = {
        "what": f"{args.size}x{args.size} heatmap: one ImageMobject vs {args.size**2} Squares",
        "repeats": args.repeats,
        "manim": manim_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "qualities": {},
    }
    for name in qualities:
        print(f"{name} quality...", flush=True)
        results["qualities"][name] = bench_quality(name, args.size, args.repeats)
    results["load_average_at_end"] = list(os.getloadavg())

    print(
        f"\n{results['what']}, median of {args.repeats} (after a warm-up); "
        f"load average {results['load_average_at_start'][0]:.1f} on {results['cpus']} CPUs"
    )
    header = (
        f"{'quality':<8}{'drawn as':<12}{'mobjects':>9}"
        f"{'build cpu':>11}{'render cpu':>12}{'total cpu':>11}{'total wall':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, q in results["qualities"].items():
        for case, r in q["cases"].items():
            print(
                f"{name:<8}{case:<12}{r['mobjects']:>9,}{r['build_cpu_median_s']:>10.3f}s"
                f"{r['render_cpu_median_s']:>11.3f}s{r['total_cpu_median_s']:>10.3f}s"
                f"{r['total_wall_median_s']:>11.3f}s"
            )
        ratio = q["squares_over_image"]
        print(
            f"{name:<8}{'squares/image':<21}{ratio['build_cpu']:>10,.0f}x"
            f"{ratio['render_cpu']:>11.1f}x{ratio['total_cpu']:>10.0f}x{ratio['total_wall']:>11.0f}x"
        )
    for name, q in results["qualities"].items():
        print(
            f"{name}: the image and the squares frames differ by "
            f"{q['image_vs_squares_mean_abs_diff']:.2f} grey levels on average (same picture)"
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(RESULTS, json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
