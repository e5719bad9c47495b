#!/usr/bin/env python
"""The one driver for the video.

    python render.py list                         scenes in story order
    python render.py render SCENE... [-q Q]       render scenes to mp4 under media/
    python render.py still SCENE... [--extras]    last frame (and mid-scene stills) as PNG
    python render.py figures [-q Q]               every scene's stills (final frame + extras)
    python render.py video [-q Q] [--jobs N]      all scenes in story order, one mp4 in media/
                           [--voice]              ... with the narration spoken (espeak-ng)
    python render.py data SCENE [--save F.npz]    the numbers and arrays a scene will draw

Scene parameters (prompt, weights, heads, quality...) come from video.toml; override any
with `--set NAME=VALUE` (repeatable), e.g. `--set prompt=" The cat sat on the"`.
`weights = "auto"` is resolved once per run, before any manim process starts (it may
download GPT-2 from the Hugging Face hub; `--no-download` stays offline), and every scene
uses that answer.

Each scene is rendered by Manim in its own `python -m manim` process, run from the
repository root with the project's manim.cfg passed explicitly, so this works from any
current directory, and `--jobs N` renders N scenes at once. Beside every video and still
goes a provenance manifest (JSON): per scene the model and its sha256, prompt, token ids,
device and every number printed on screen. A scene whose sources, parameters, model and
quality are unchanged since its last render is not rendered again (`--force` does).
Bad input prints one line naming the bad value and the allowed ones, and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mla_core.atomic import (  # noqa: E402
    check_output_file,
    check_output_folder,
    copy_atomically,
    write_atomically,
    write_text_atomically,
)
from mla_core.cli.args import OneLineArgumentParser  # noqa: E402
from mla_core.errors import UserError  # noqa: E402
from mla_core.loading.weights_setting import AUTO, AUTO_CHOICE_ENV, parse_weights_spec  # noqa: E402
from mla_core.narration import find_voice_engine  # noqa: E402
from mla_core.rendering.manifest import (  # noqa: E402
    is_up_to_date,
    manifest_path,
    write_manifest,
)
from mla_core.rendering.manim_job import RenderError, run_manim, work_lock  # noqa: E402
from mla_core.rendering.progress import Progress  # noqa: E402
from mla_core.rendering.quality import QUALITIES, Quality, resolve_quality  # noqa: E402
from mla_core.rendering.subtitles import Narration  # noqa: E402
from mla_core.rendering.video_file import concat_videos  # noqa: E402
from mla_core.scene_data import check_scene_data, computed_in_scene_process  # noqa: E402
from mla_core.scene_data.params import (  # noqa: E402
    PARAM_NAMES,
    VideoParams,
    load_params,
    parse_overrides,
)
from scenes import STORY, StoryScene, find_scene, scene_names  # noqa: E402

DEFAULT_MEDIA_DIR = REPO / "media"
DEFAULT_FIGURES_DIR = REPO / "figures"
PARTIAL_SUFFIX = "-rendering"  # a scene's mp4 while manim writes it


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


def video_path(scene: StoryScene, quality: Quality, media_dir: Path) -> Path:
    """Where manim writes the scene's mp4 (media/videos/<module>/<480p15>/<Scene>.mp4)."""
    return media_dir / "videos" / scene.path.stem / quality.folder / f"{scene.name}.mp4"


def still_name(scene: StoryScene, quality: Quality, label: str | None = None) -> str:
    """Stills are named by scene (and extra-still label) AND quality, so a high still never
    overwrites a low one: 'Hook_low', 'AttentionPatterns-gallery_high'."""
    return f"{scene.name}{'-' + label if label else ''}_{quality.name}"


# --- rendering scenes, stills and the video ------------------------------------------------


def render_scenes(
    scenes: Sequence[StoryScene],
    quality: Quality,
    params: VideoParams,
    media_dir: Path = DEFAULT_MEDIA_DIR,
    jobs: int = 1,
    force: bool = False,
) -> list[Path]:
    """Render scenes to mp4 (up to `jobs` at once), skipping unchanged ones unless `force`.
    Returns the mp4 paths in the order of `scenes`."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs} must be >= 1")
    progress = Progress(len(scenes), f"rendering at {quality.name} quality, {jobs} job(s)")

    def render_one(scene: StoryScene) -> Path:
        path = video_path(scene, quality, media_dir)
        with work_lock(media_dir, scene.name):  # another render.py may be rendering it
            if not force and is_up_to_date(path, params, quality):
                progress.finished(scene.name, "unchanged, not re-rendered")
                return path
            progress.started(scene.name)
            start = time.perf_counter()
            # manim writes under a temporary name, renamed into place once complete: an
            # interrupted render never leaves a broken mp4 where a good one is expected
            partial = f"{scene.name}{PARTIAL_SUFFIX}"
            record = run_manim(scene, quality, media_dir, params, output_name=partial,
                               work_name=scene.name)  # fmt: skip
            rendered = path.with_name(f"{partial}.mp4")
            if not rendered.is_file():
                raise RenderError(f"manim reported success but {rendered} does not exist")
            subtitles = rendered.with_suffix(".srt")
            if subtitles.is_file():
                os.replace(subtitles, path.with_suffix(".srt"))
            else:
                path.with_suffix(".srt").unlink(missing_ok=True)
            os.replace(rendered, path)
            write_manifest(path, record, params, quality)
        progress.finished(scene.name, f"{time.perf_counter() - start:.1f} s -> {_shown(path)}")
        return path

    unique = list(dict.fromkeys(scenes))  # a scene listed twice is rendered once
    # scenes that compute their own data (a quick benchmark) start first, beside the others
    unique.sort(key=lambda scene: not computed_in_scene_process(scene.name))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rendered = dict(zip(unique, pool.map(render_one, unique), strict=True))
    return [rendered[s] for s in scenes]


def render_stills(
    scenes: Sequence[StoryScene],
    quality: Quality,
    params: VideoParams,
    media_dir: Path = DEFAULT_MEDIA_DIR,
    figures_dir: Path = DEFAULT_FIGURES_DIR,
    extras: bool = False,
    jobs: int = 1,
) -> list[Path]:
    """Each scene's last frame (and, with `extras`, its declared extra stills) as PNGs in
    figures/, each with its manifest; returns the PNG paths."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs} must be >= 1")
    check_output_folder(figures_dir, "--figures-dir")
    figures_dir.mkdir(parents=True, exist_ok=True)
    wanted: list[tuple[StoryScene, str | None, int | None]] = []
    for scene in scenes:
        wanted.append((scene, None, None))
        if extras:
            wanted += [(scene, label, index) for label, index in scene.extra_stills]
    progress = Progress(len(wanted), f"stills at {quality.name} quality")

    def still_one(item: tuple[StoryScene, str | None, int | None]) -> Path:
        scene, label, upto = item
        name = still_name(scene, quality, label)
        progress.started(name)
        with work_lock(media_dir, name):
            record = run_manim(scene, quality, media_dir, params, True, upto, output_name=name)
            rendered = media_dir / "images" / scene.path.stem / f"{name}.png"
            if not rendered.is_file():
                raise RenderError(f"manim reported success but {rendered} does not exist")
            target = figures_dir / f"{name}.png"
            copy_atomically(rendered, target)
        write_manifest(target, record, params, quality)
        progress.finished(name, f"-> {_shown(target)}")
        return target

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(still_one, wanted))


def build_video(
    scenes: Sequence[StoryScene],
    quality: Quality,
    params: VideoParams,
    media_dir: Path = DEFAULT_MEDIA_DIR,
    output: Path | None = None,
    jobs: int = 1,
    force: bool = False,
) -> Path:
    """Render `scenes` and concatenate them, in order, into one mp4 (default
    media/mla_video_<quality>.mp4) with its manifest; returns the mp4's path."""
    output = output or media_dir / f"mla_video_{quality.name}.mp4"
    parts = render_scenes(scenes, quality, params, media_dir, jobs, force)
    print(f"concatenating {len(parts)} scene(s) into {_shown(output)}...", flush=True)
    entries = []
    for part in parts:
        stored = json.loads(manifest_path(part).read_text(encoding="utf-8"))
        entries.append({"file": _shown(part), **stored["record"]})
    narration = Narration(parts, entries, quality)
    # the preview re-encodes fast; the other qualities take the slower, smaller encode
    preset = "veryfast" if quality.name == "low" else "medium"
    part_frames = concat_videos(
        parts, output, fps=quality.fps, preset=preset, subtitles=narration.cues
    )
    frames = sum(part_frames)
    manifest = {
        "file": output.name,
        "quality": quality.name,
        "frames": frames,
        "duration_s": round(frames / quality.fps, 3),
        "rendered_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": params.as_dict(),
        "scenes": entries,
    }
    write_text_atomically(
        manifest_path(output), json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    )
    written = narration.write_beside(output)
    print(f"wrote {', '.join(_shown(p) for p in written)}", flush=True)
    print(f"wrote {_shown(output)}: {frames} frames, {frames / quality.fps:.1f} s", flush=True)
    return output


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
    parser.add_argument(
        "--params", type=Path, default=None, help="scene parameter file (default video.toml)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"override a parameter ({', '.join(PARAM_NAMES)}); repeatable",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help='weights = "auto" never downloads: the Hugging Face cache, else the demo model',
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="scenes in story order")
    p.set_defaults(handler=_run_list)

    def add_quality(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-q",
            "--quality",
            default=None,
            help=f"one of {', '.join(QUALITIES)} (default: video.toml's, else low = 480p15)",
        )

    def add_set(p: argparse.ArgumentParser) -> None:  # --set also works after the command
        p.add_argument(
            "--set",
            dest="set_after",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="override a scene parameter (see video.toml); repeatable",
        )
        p.add_argument(  # so does --no-download
            "--no-download",
            dest="no_download_after",
            action="store_true",
            help='weights = "auto" never downloads: the Hugging Face cache, else the demo model',
        )

    def add_jobs(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-j",
            "--jobs",
            type=int,
            default=os.cpu_count() or 1,
            help="scenes rendered at once (default: one per CPU core)",
        )

    def add_voice(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--voice",
            action="store_true",
            help="speak the narration with the offline engine espeak-ng (same as --set voice=true)",
        )

    p = sub.add_parser("render", help="render scenes to mp4 under media/")
    p.add_argument("scenes", nargs="+", metavar="SCENE")
    add_quality(p)
    add_jobs(p)
    add_voice(p)
    add_set(p)
    p.add_argument("--force", action="store_true", help="re-render even if unchanged")
    p.set_defaults(handler=_run_render)

    p = sub.add_parser("still", help="last frame of scenes as PNG in figures/")
    p.add_argument("scenes", nargs="+", metavar="SCENE")
    p.add_argument(
        "--extras", action="store_true", help="also the scenes' extra stills (mid-scene moments)"
    )
    add_quality(p)
    add_jobs(p)
    add_set(p)
    p.set_defaults(handler=_run_still)

    p = sub.add_parser("figures", help="every scene's final frame and extra stills in figures/")
    add_quality(p)
    add_jobs(p)
    add_set(p)
    p.set_defaults(handler=_run_figures)

    p = sub.add_parser("video", help="all scenes in story order, concatenated into one mp4")
    add_quality(p)
    add_jobs(p)
    add_voice(p)
    add_set(p)
    p.add_argument("--force", action="store_true", help="re-render scenes even if unchanged")
    p.set_defaults(handler=_run_video)

    p = sub.add_parser("data", help="print (or save) the data a scene draws, without rendering")
    p.add_argument("scene", metavar="SCENE")
    p.add_argument("--save", type=Path, default=None, metavar="FILE.npz", help="save the arrays")
    add_set(p)
    p.set_defaults(handler=_run_data)
    return parser


def _params(args: argparse.Namespace) -> VideoParams:
    overrides = parse_overrides(args.set + getattr(args, "set_after", []))
    if getattr(args, "quality", None) is not None:
        resolve_quality(args.quality)
        overrides["quality"] = args.quality
    if getattr(args, "voice", False):
        overrides["voice"] = "true"
    params = load_params(args.params, overrides)
    if params.voice:
        find_voice_engine()  # fail now, in one line, rather than inside a manim process
    return params


def _resolve_auto_weights(args: argparse.Namespace, params: VideoParams) -> None:
    """Resolve weights = "auto" now, once, after the cheap checks of the command line: the
    answer goes to every scene of this run (this process and its manim processes, through
    the environment), so a download happens at most once and no manim process ever goes to
    the network."""
    if parse_weights_spec(params.weights) != AUTO:
        return
    from mla_core.loading.weights import auto_choice_json, resolve_weights

    offline = args.no_download or getattr(args, "no_download_after", False)
    source = resolve_weights(params.weights, download=False if offline else None)
    os.environ[AUTO_CHOICE_ENV] = auto_choice_json(source)


def _run_list(args: argparse.Namespace) -> int:
    _params(args)  # a bad --set or video.toml is reported here too
    width = max(len(s.name) for s in STORY)
    for i, scene in enumerate(STORY, start=1):
        print(f"{i:>2}. {scene.name:<{width}}  {scene.description}")
    return 0


def _run_render(args: argparse.Namespace) -> int:
    scenes = resolve_scenes(args.scenes)
    params = _params(args)
    quality = resolve_quality(params.quality)
    _check_jobs(args.jobs)
    check_output_folder(args.media_dir.resolve(), "--media-dir")
    _resolve_auto_weights(args, params)
    check_scene_data(scenes, params)
    render_scenes(scenes, quality, params, args.media_dir.resolve(), args.jobs, args.force)
    return 0


def _run_still(args: argparse.Namespace) -> int:
    scenes = resolve_scenes(args.scenes)
    params = _params(args)
    quality = resolve_quality(params.quality)
    media, figures = args.media_dir.resolve(), args.figures_dir.resolve()
    _check_jobs(args.jobs)
    check_output_folder(media, "--media-dir")
    check_output_folder(figures, "--figures-dir")  # before the scene data: that can take long
    _resolve_auto_weights(args, params)
    check_scene_data(scenes, params)
    render_stills(scenes, quality, params, media, figures, extras=args.extras, jobs=args.jobs)
    return 0


def _run_figures(args: argparse.Namespace) -> int:
    params = _params(args)
    quality = resolve_quality(params.quality)
    media, figures = args.media_dir.resolve(), args.figures_dir.resolve()
    _check_jobs(args.jobs)
    check_output_folder(media, "--media-dir")
    check_output_folder(figures, "--figures-dir")  # before the scene data: that can take long
    _resolve_auto_weights(args, params)
    check_scene_data(STORY, params)
    render_stills(STORY, quality, params, media, figures, extras=True, jobs=args.jobs)
    return 0


def _run_video(args: argparse.Namespace) -> int:
    params = _params(args)
    quality = resolve_quality(params.quality)
    _check_jobs(args.jobs)
    check_output_folder(args.media_dir.resolve(), "--media-dir")
    _resolve_auto_weights(args, params)
    check_scene_data(STORY, params)
    build_video(STORY, quality, params, args.media_dir.resolve(), jobs=args.jobs, force=args.force)
    return 0


def _run_data(args: argparse.Namespace) -> int:
    import numpy as np

    from mla_core.scene_data import data_for_scene
    from mla_core.scene_data.store import summarize

    (scene,) = resolve_scenes([args.scene])
    if args.save is not None:
        check_output_file(args.save, "--save", parents_made=True)
    params = _params(args)
    _resolve_auto_weights(args, params)
    data = data_for_scene(scene.name, params)
    if args.save is not None:
        meta = json.dumps(data.meta, ensure_ascii=False)
        args.save.parent.mkdir(parents=True, exist_ok=True)

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a path
                np.savez(f, meta_json=np.array(meta), **data.arrays)

        write_atomically(args.save, save)
        print(f"saved {len(data.arrays)} array(s) and meta_json to {args.save}")
        return 0
    print(json.dumps(summarize(data), indent=2, ensure_ascii=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inherited = os.environ.get(AUTO_CHOICE_ENV)
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
    except BrokenPipeError:  # output piped into `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:  # this run's answer to weights = "auto" is not the next run's (tests call main)
        if inherited is None:
            os.environ.pop(AUTO_CHOICE_ENV, None)
        else:
            os.environ[AUTO_CHOICE_ENV] = inherited


# --- small helpers --------------------------------------------------------------------------


def _check_jobs(jobs: int) -> None:
    """--jobs is checked before any scene's data is computed (that can take minutes)."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs} must be >= 1")


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it (shorter progress lines)."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
