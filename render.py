#!/usr/bin/env python
"""The one driver for the video: list, render, still and video.

    python render.py list                       scenes in story order
    python render.py render SCENE... [-q Q]     render scenes to mp4 under media/
    python render.py still SCENE... [-q Q]      last frame of each scene as a PNG in figures/
    python render.py video [-q Q]               every scene in story order, one mp4 in media/

Each scene is rendered by Manim in its own `python -m manim` process, run from the
repository root with the project's manim.cfg passed explicitly, so this works from any
current directory. Bad input (an unknown scene or quality) prints one line naming the
bad value and the allowed ones, and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mla_core.cli import OneLineArgumentParser  # noqa: E402
from mla_core.errors import UserError  # noqa: E402
from scenes import STORY, StoryScene, find_scene, scene_names  # noqa: E402

MANIM_CFG = REPO / "manim.cfg"
DEFAULT_MEDIA_DIR = REPO / "media"
DEFAULT_FIGURES_DIR = REPO / "figures"


@dataclass(frozen=True)
class Quality:
    name: str
    flag: str  # manim's -q flag
    width: int
    height: int
    fps: int

    @property
    def folder(self) -> str:
        """The folder manim writes this quality's videos to, e.g. '480p15'."""
        return f"{self.height}p{self.fps}"


# The same resolutions and frame rates as manim's own quality presets (a test checks).
QUALITIES = {
    q.name: q
    for q in (
        Quality("low", "l", 854, 480, 15),
        Quality("medium", "m", 1280, 720, 30),
        Quality("high", "h", 1920, 1080, 60),
        Quality("4k", "k", 3840, 2160, 60),
    )
}
DEFAULT_QUALITY = "low"


class RenderError(RuntimeError):
    """Manim failed on a scene (not the user's fault: a bug to report)."""


# --- looking things up ------------------------------------------------------------------


def resolve_scenes(names: Sequence[str]) -> list[StoryScene]:
    """StoryScene entries for scene names, in the order given; unknown name -> UserError."""
    found = []
    for name in names:
        scene = find_scene(name)
        if scene is None:
            raise UserError(f"unknown scene {name!r}; allowed: {', '.join(scene_names())}")
        found.append(scene)
    return found


def resolve_quality(name: str) -> Quality:
    if name not in QUALITIES:
        raise UserError(f"unknown quality {name!r}; allowed: {', '.join(QUALITIES)}")
    return QUALITIES[name]


def video_path(scene: StoryScene, quality: Quality, media_dir: Path) -> Path:
    """Where manim writes the scene's mp4 (media/videos/<module>/<480p15>/<Scene>.mp4)."""
    return media_dir / "videos" / scene.path.stem / quality.folder / f"{scene.name}.mp4"


def still_name(scene: StoryScene, quality: Quality) -> str:
    """Stills are named by scene AND quality, so a high still never overwrites a low one."""
    return f"{scene.name}_{quality.name}"


# --- running manim ----------------------------------------------------------------------


def manim_command(
    scene: StoryScene, quality: Quality, media_dir: Path, still: bool = False
) -> list[str]:
    output = still_name(scene, quality) if still else scene.name
    command = [
        sys.executable,
        "-m",
        "manim",
        "render",
        "--config_file",
        str(MANIM_CFG),
        "--media_dir",
        str(media_dir),
        "--quality",
        quality.flag,
        "--output_file",
        output,
    ]
    if still:
        command += ["--format", "png"]
    return command + [str(scene.path), scene.name]


def run_manim(scene: StoryScene, quality: Quality, media_dir: Path, still: bool = False) -> None:
    """Render one scene in a fresh manim process, from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        manim_command(scene, quality, media_dir, still),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise RenderError(f"manim failed on {scene.name} (exit {result.returncode}):\n{tail}")


def render_scenes(
    scenes: Sequence[StoryScene], quality: Quality, media_dir: Path = DEFAULT_MEDIA_DIR
) -> list[Path]:
    """Render scenes to mp4, one after the other, printing progress; returns the mp4 paths."""
    paths = []
    for i, scene in enumerate(scenes):
        left = len(scenes) - i - 1
        print(f"[{i + 1}/{len(scenes)}] rendering {scene.name} ({quality.name})...", flush=True)
        start = time.perf_counter()
        run_manim(scene, quality, media_dir)
        path = video_path(scene, quality, media_dir)
        if not path.is_file():
            raise RenderError(f"manim reported success but {path} does not exist")
        print(
            f"      done in {time.perf_counter() - start:.1f} s -> {_shown(path)}"
            f" ({left} scene{'s' if left != 1 else ''} left)",
            flush=True,
        )
        paths.append(path)
    return paths


def render_stills(
    scenes: Sequence[StoryScene],
    quality: Quality,
    media_dir: Path = DEFAULT_MEDIA_DIR,
    figures_dir: Path = DEFAULT_FIGURES_DIR,
) -> list[Path]:
    """Each scene's last frame as figures/<Scene>_<quality>.png; returns the PNG paths."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(scenes):
        print(f"[{i + 1}/{len(scenes)}] still of {scene.name} ({quality.name})...", flush=True)
        run_manim(scene, quality, media_dir, still=True)
        name = still_name(scene, quality) + ".png"
        rendered = media_dir / "images" / scene.path.stem / name
        if not rendered.is_file():
            raise RenderError(f"manim reported success but {rendered} does not exist")
        target = figures_dir / name
        _copy_atomically(rendered, target)
        print(f"      -> {_shown(target)}", flush=True)
        paths.append(target)
    return paths


def build_video(
    scenes: Sequence[StoryScene],
    quality: Quality,
    media_dir: Path = DEFAULT_MEDIA_DIR,
    output: Path | None = None,
) -> Path:
    """Render `scenes` and concatenate them, in order, into one mp4 (default
    media/mla_video_<quality>.mp4); returns its path."""
    output = output or media_dir / f"mla_video_{quality.name}.mp4"
    parts = render_scenes(scenes, quality, media_dir)
    print(f"concatenating {len(parts)} scene(s) into {_shown(output)}...", flush=True)
    frames = concat_videos(parts, output, fps=quality.fps)
    print(f"wrote {_shown(output)}: {frames} frames, {frames / quality.fps:.1f} s", flush=True)
    return output


# --- concatenation (PyAV, no system ffmpeg) ------------------------------------------------


def concat_videos(
    inputs: Sequence[Path], output: Path, fps: int, crf: int = 18, preset: str = "medium"
) -> int:
    """Decode each input mp4 in turn and encode every frame into ONE H.264 mp4 at `fps`.

    Re-encoding (rather than re-muxing) gives one clean, constant-rate timeline whatever
    timestamps each scene's file carries. The file is written under a temporary name and
    renamed, so an interrupted run never leaves a broken `output`. Returns frames written.
    """
    import av

    if not inputs:
        raise UserError("no videos to concatenate")
    sizes = {}
    for path in inputs:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            sizes[path] = (stream.codec_context.width, stream.codec_context.height)
    if len(set(sizes.values())) != 1:
        detail = ", ".join(f"{p.name}: {w}x{h}" for p, (w, h) in sizes.items())
        raise RenderError(f"scenes differ in resolution, cannot concatenate: {detail}")
    width, height = next(iter(sizes.values()))

    output.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".mp4", dir=output.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    frames = 0
    try:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, fps)
            stream.codec_context.options = {"crf": str(crf), "preset": preset}
            for path in inputs:
                with av.open(str(path)) as container:
                    for frame in container.decode(video=0):
                        frame = frame.reformat(format="yuv420p")
                        frame.pts = frames
                        frame.time_base = Fraction(1, fps)
                        out.mux(stream.encode(frame))
                        frames += 1
            out.mux(stream.encode(None))  # flush the encoder
        _make_readable(tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return frames


def count_frames(path: Path) -> int:
    """Frames in a video, by decoding it (a check that it plays)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# --- command line -------------------------------------------------------------------------


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="render.py", description="Render the MLA explainer video's scenes with Manim."
    )
    parser.add_argument(
        "--media-dir", type=Path, default=DEFAULT_MEDIA_DIR, help="where videos go (media/)"
    )
    parser.add_argument(
        "--figures-dir", type=Path, default=DEFAULT_FIGURES_DIR, help="where stills go (figures/)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="scenes in story order").set_defaults(handler=_run_list)

    def add_quality(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-q",
            "--quality",
            default=DEFAULT_QUALITY,
            help=f"one of {', '.join(QUALITIES)} (default {DEFAULT_QUALITY}: 854x480, 15 fps)",
        )

    p = sub.add_parser("render", help="render scenes to mp4 under media/")
    p.add_argument("scenes", nargs="+", metavar="SCENE")
    add_quality(p)
    p.set_defaults(handler=_run_render)

    p = sub.add_parser("still", help="last frame of scenes as PNG in figures/")
    p.add_argument("scenes", nargs="+", metavar="SCENE")
    add_quality(p)
    p.set_defaults(handler=_run_still)

    p = sub.add_parser("video", help="all scenes in story order, concatenated into one mp4")
    add_quality(p)
    p.set_defaults(handler=_run_video)
    return parser


def _run_list(args: argparse.Namespace) -> int:
    width = max(len(s.name) for s in STORY)
    for i, scene in enumerate(STORY, start=1):
        print(f"{i:>2}. {scene.name:<{width}}  {scene.description}")
    return 0


def _run_render(args: argparse.Namespace) -> int:
    quality = resolve_quality(args.quality)
    render_scenes(resolve_scenes(args.scenes), quality, args.media_dir.resolve())
    return 0


def _run_still(args: argparse.Namespace) -> int:
    quality = resolve_quality(args.quality)
    scenes = resolve_scenes(args.scenes)
    render_stills(scenes, quality, args.media_dir.resolve(), args.figures_dir.resolve())
    return 0


def _run_video(args: argparse.Namespace) -> int:
    quality = resolve_quality(args.quality)
    build_video(STORY, quality, args.media_dir.resolve())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except RenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it (shorter progress lines)."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def _copy_atomically(source: Path, target: Path) -> None:
    handle, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent
    )
    os.close(handle)
    try:
        shutil.copyfile(source, tmp_name)
        _make_readable(Path(tmp_name))
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _make_readable(path: Path) -> None:
    """mkstemp creates files only the owner can read; give them the usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


if __name__ == "__main__":
    sys.exit(main())
