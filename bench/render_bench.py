"""Benchmark: how long rendering the video takes on this machine, per scene (not a test).

Runs render.py as `make video` does, with `--force` so every scene is rendered again, and
times it end to end. Per-scene times are the ones render.py prints as each scene finishes
(the manim process, from start to the scene's mp4); the concatenation is the time from
render.py's "concatenating" line to its exit. Each scene's video length comes from its mp4,
so the table also shows seconds of rendering per second of video. The CPU time of render.py
and every process it starts (manim, LaTeX) is reported too: on a busy machine it is steadier
than the wall times.

By default everything is cold, as on a fresh checkout: a new temporary media folder (no
manim text/LaTeX/partial-movie caches) and a new scene-data cache (the model's arrays are
computed again). `--warm` uses the project's media/ and .cache/ instead.

    .venv/bin/python bench/render_bench.py                      # the whole video, low quality
    .venv/bin/python bench/render_bench.py --scenes Hook,CacheSizePerToken   # some scenes only
    .venv/bin/python bench/render_bench.py --quality medium --jobs 2

With --scenes, render.py renders those scenes (`render.py render ... --force`) and does not
concatenate. `--then-edit SCENE` (whole video only) then appends a comment line to that
scene's file, renders the video again into the same media folder and data cache without
--force, and restores the file: the warm time after an edit to one scene, and which scenes
were rendered again (only that one should be). Prints a table and writes
bench/results/render_bench_<quality>.json (render_bench_<quality>_partial.json with --scenes).
Run it on a quiet machine (`nice` changes nothing about what it measures, only how much of
the machine it gets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import render  # noqa: E402
from mla_core.atomic import write_text_atomically  # noqa: E402
from mla_core.bench.timer import Stopwatch  # noqa: E402
from mla_core.rendering.video_file import count_frames  # noqa: E402
from mla_core.scene_data.store import CACHE_DIR_ENV  # noqa: E402
from scenes import STORY, find_scene  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"

# render.py's line when a scene is done: "[####----] 1/6 Hook: 12.3 s -> media/... (5 left)"
SCENE_DONE = re.compile(
    r"^\[[#-]+\] \d+/\d+ (?P<scene>\S+): (?P<seconds>\d+(?:\.\d+)?) s -> (?P<path>.+) \(\d+ left\)$"
)
CONCATENATING = "concatenating "


def children_cpu_s() -> float:
    """CPU seconds (user + system) of every finished child process and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_streaming(command: list[str], env: dict[str, str]) -> tuple[int, float, float, list]:
    """Run `command` from the repository root, echoing its output as it comes; returns the
    exit code, the wall time, the CPU time of it and its subprocesses, and
    [(seconds since start, line)] for every output line."""
    lines = []
    wall, cpu = Stopwatch(), Stopwatch(clock=children_cpu_s)
    with subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            at = wall.seconds()
            line = line.rstrip("\n")
            lines.append((at, line))
            print(f"  {at:7.1f}s | {line}", flush=True)
        code = process.wait()
    return code, wall.seconds(), cpu.seconds(), lines


def edit_and_render_again(command: list[str], env: dict[str, str], scene) -> dict:
    """Append a comment to `scene`'s file, run `command` again without --force (same media
    and data cache), restore the file; the wall time and which scenes manim rendered."""
    original = scene.path.read_bytes()
    again = [part for part in command if part != "--force"]
    shown = " ".join(again[2:])
    print(f"$ (after editing {scene.path.relative_to(ROOT)}) python render.py {shown}")
    try:
        scene.path.write_bytes(original + b"\n# render_bench.py --then-edit: a one-line edit\n")
        code, wall, cpu, lines = run_streaming(again, env)
    finally:
        scene.path.write_bytes(original)
    if code != 0:
        raise SystemExit(f"error: render.py exited {code} after the edit")
    rendered = [m["scene"] for _, line in lines if (m := SCENE_DONE.match(line))]
    unchanged = sum("unchanged, not re-rendered" in line for _, line in lines)
    return {
        "edited": scene.name,
        "wall_s": wall,
        "cpu_s": cpu,
        "rendered_again": rendered,
        "unchanged": unchanged,
    }


def git_commit() -> str | None:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return result.stdout.strip() or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", default="low", help=f"one of {', '.join(render.QUALITIES)}")
    parser.add_argument("--jobs", type=int, default=1, help="scenes rendered at once")
    parser.add_argument(
        "--scenes", default=None, help="comma-separated scene names (default: the whole video)"
    )
    parser.add_argument(
        "--warm", action="store_true", help="use the project's media/ and .cache/ (not cold)"
    )
    parser.add_argument(
        "--then-edit",
        default=None,
        metavar="SCENE",
        help="afterwards, edit SCENE's file (a comment) and time the warm re-render",
    )
    args = parser.parse_args()
    if args.quality not in render.QUALITIES:
        parser.error(f"--quality {args.quality!r}; allowed: {', '.join(render.QUALITIES)}")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be >= 1")
    quality = render.QUALITIES[args.quality]
    if args.scenes:
        names = [n.strip() for n in args.scenes.split(",") if n.strip()]
        unknown = [n for n in names if find_scene(n) is None]
        if unknown:
            parser.error(f"unknown scene(s) {unknown}; allowed: {', '.join(render.scene_names())}")
        scenes = [find_scene(n) for n in names]
    else:
        scenes = list(STORY)
    edited = find_scene(args.then_edit) if args.then_edit else None
    if args.then_edit and (edited is None or args.scenes):
        parser.error(f"--then-edit {args.then_edit!r}: a scene of the video, without --scenes")

    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        env = dict(os.environ)
        if args.warm:
            media = render.DEFAULT_MEDIA_DIR
        else:
            media = Path(tmp) / "media"
            env[CACHE_DIR_ENV] = str(Path(tmp) / "scene_data")
        command = [sys.executable, str(ROOT / "render.py"), "--media-dir", str(media)]
        if args.scenes:
            command += ["render", *(s.name for s in scenes)]
        else:
            command += ["video"]
        command += ["--quality", quality.name, "--jobs", str(args.jobs), "--force"]
        shown = " ".join(["python", "render.py", *command[2:]])
        print(f"$ {shown}", flush=True)
        load_start = os.getloadavg()
        code, wall, cpu, lines = run_streaming(command, env)
        if code != 0:
            print(f"error: render.py exited {code}; nothing written", file=sys.stderr)
            return 1

        per_scene = {}
        for _, line in lines:
            match = SCENE_DONE.match(line)
            if match:
                per_scene[match["scene"]] = float(match["seconds"])
        missing = [s.name for s in scenes if s.name not in per_scene]
        if missing:
            print(f"error: render.py reported no time for {missing}", file=sys.stderr)
            return 1
        concat_start = next((at for at, line in lines if line.startswith(CONCATENATING)), None)
        rows = []
        for scene in scenes:
            frames = count_frames(render.video_path(scene, quality, media))
            video_s = frames / quality.fps
            render_s = per_scene[scene.name]
            rows.append(
                {
                    "scene": scene.name,
                    "render_s": render_s,
                    "frames": frames,
                    "video_s": video_s,
                    "render_s_per_video_s": render_s / video_s if video_s else None,
                }
            )
        warm_after_edit = None
        if edited is not None:
            warm_after_edit = edit_and_render_again(command, env, edited)

    results = {
        "what": "render.py " + ("render (some scenes)" if args.scenes else "video") + ", --force",
        "command": shown,
        "quality": quality.name,
        "resolution": f"{quality.width}x{quality.height}@{quality.fps}",
        "jobs": args.jobs,
        "caches": "warm (media/, .cache/)" if args.warm else "cold (fresh media and data cache)",
        "wall_s": wall,
        "cpu_s": cpu,  # render.py, manim, LaTeX...: every process, all cores together
        "scenes": rows,
        "scenes_total_s": sum(r["render_s"] for r in rows),
        "concat_s": wall - concat_start if concat_start is not None else None,
        "video_s": sum(r["video_s"] for r in rows),
        "warm_after_edit": warm_after_edit,
        "commit": git_commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(load_start),
        "load_average_at_end": list(os.getloadavg()),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }

    print(
        f"\n{results['what']} at {quality.name} quality ({results['resolution']}), "
        f"{args.jobs} job(s), {results['caches']}; load average {load_start[0]:.1f} "
        f"on {results['cpus']} CPUs"
    )
    header = f"{'scene':<22}{'render':>10}{'video':>10}{'render/video':>14}"
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['render_s_per_video_s']:.1f}x" if r["render_s_per_video_s"] else "-"
        print(f"{r['scene']:<22}{r['render_s']:>9.1f}s{r['video_s']:>9.1f}s{ratio:>14}")
    if results["concat_s"] is not None:
        print(f"{'concatenation':<22}{results['concat_s']:>9.1f}s")
    print(f"{'total (wall)':<22}{wall:>9.1f}s{results['video_s']:>9.1f}s")
    print(f"{'total (CPU, all procs)':<22}{cpu:>9.1f}s")
    if warm_after_edit is not None:
        print(
            f"after editing {warm_after_edit['edited']}: {warm_after_edit['wall_s']:.1f} s "
            f"(rendered again: {', '.join(warm_after_edit['rendered_again']) or 'none'}; "
            f"{warm_after_edit['unchanged']} unchanged)"
        )

    suffix = "_partial" if args.scenes else ""
    path = RESULTS_DIR / f"render_bench_{quality.name}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(results, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
