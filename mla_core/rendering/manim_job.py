"""One scene rendered by one `python -m manim` process, run from the repository root."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mla_core.rendering.quality import Quality
from mla_core.scene_data import MANIFEST_DIR_ENV
from mla_core.scene_data.params import PARAMS_ENV, VideoParams

if TYPE_CHECKING:  # only its name and path are used: mla_core never imports scenes
    from scenes import StoryScene

REPO = Path(__file__).resolve().parents[2]
MANIM_CFG = REPO / "manim.cfg"


class RenderError(RuntimeError):
    """Manim failed on a scene (not the user's fault: a bug to report)."""


def job_config(media_dir: Path, output_name: str, folder: Path) -> Path:
    """The project's manim.cfg plus this job's own text and LaTeX folders.

    Manim caches each Text/MathTex as an SVG named by a hash; two manim processes writing
    and reading the same SVG at once (--jobs N) can read a half-written file. Each output
    gets its own folders (stable across runs, so manim's own caching still helps)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(MANIM_CFG, encoding="utf-8")
    parser["CLI"]["text_dir"] = str(media_dir / "texts" / output_name)
    parser["CLI"]["tex_dir"] = str(media_dir / "Tex" / output_name)
    path = folder / "manim.cfg"
    with open(path, "w", encoding="utf-8") as f:
        parser.write(f)
    return path


def manim_command(
    scene: StoryScene,
    quality: Quality,
    media_dir: Path,
    still: bool = False,
    upto_animation: int | None = None,
    output_name: str | None = None,
    config_file: Path = MANIM_CFG,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "manim",
        "render",
        "--config_file",
        str(config_file),
        "--media_dir",
        str(media_dir),
        "--quality",
        quality.flag,
        "--output_file",
        output_name or scene.name,
    ]
    if still:
        command += ["--format", "png"]
    if upto_animation is not None:
        command += ["--from_animation_number", f"0,{upto_animation}"]
    return command + [str(scene.path), scene.name]


def run_manim(
    scene: StoryScene,
    quality: Quality,
    media_dir: Path,
    params: VideoParams,
    still: bool = False,
    upto_animation: int | None = None,
    output_name: str | None = None,
) -> dict:
    """Render one scene in a fresh manim process from the repository root; returns the
    record the scene wrote (parameters, provenance, numbers shown, source files)."""
    with tempfile.TemporaryDirectory(prefix="mla-record-") as record_dir:
        output_name = output_name or scene.name
        config_file = job_config(media_dir, output_name, Path(record_dir))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        env[PARAMS_ENV] = params.to_json()
        env[MANIFEST_DIR_ENV] = record_dir
        result = subprocess.run(
            manim_command(
                scene, quality, media_dir, still, upto_animation, output_name, config_file
            ),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
            raise RenderError(f"manim failed on {scene.name} (exit {result.returncode}):\n{tail}")
        record_file = Path(record_dir) / f"{scene.name}.json"
        if not record_file.is_file():
            raise RenderError(
                f"{scene.name} wrote no record: is it a scenes.components.VideoScene?"
            )
        return json.loads(record_file.read_text(encoding="utf-8"))
