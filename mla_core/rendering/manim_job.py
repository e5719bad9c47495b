"""One scene rendered by one `python -m manim` process, run from the repository root."""

from __future__ import annotations

import configparser
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mla_core.errors import UserError
from mla_core.loading.weights import DEVICE_CHOICE_ENV, check_device
from mla_core.rendering.quality import Quality
from mla_core.scene_data import MANIFEST_DIR_ENV, USER_ERROR_FILE
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
    work_name: str | None = None,
) -> dict:
    """Render one scene in a fresh manim process from the repository root; returns the
    record the scene wrote (parameters, provenance, numbers shown, source files).

    `work_name` names the job's text and LaTeX folders (default: the output name). Bad input
    that the scene meets (a UserError inside manim) is raised here as the same UserError."""
    with tempfile.TemporaryDirectory(prefix="mla-record-") as record_dir:
        output_name = output_name or scene.name
        config_file = job_config(media_dir, work_name or output_name, Path(record_dir))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        env[PARAMS_ENV] = params.to_json()
        env[MANIFEST_DIR_ENV] = record_dir
        if not params.device:
            env[DEVICE_CHOICE_ENV] = check_device(params.device)
        result = subprocess.run(
            manim_command(
                scene, quality, media_dir, still, upto_animation, output_name, config_file
            ),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            preexec_fn=_die_with_parent,
        )
        user_error = Path(record_dir) / USER_ERROR_FILE
        if result.returncode != 0 and user_error.is_file():
            raise UserError(user_error.read_text(encoding="utf-8").strip())
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
            raise RenderError(f"manim failed on {scene.name} (exit {result.returncode}):\n{tail}")
        record_file = Path(record_dir) / f"{scene.name}.json"
        if not record_file.is_file():
            raise RenderError(
                f"{scene.name} wrote no record: is it a scenes.components.VideoScene?"
            )
        return json.loads(record_file.read_text(encoding="utf-8"))


def _die_with_parent() -> None:
    """In the manim child: ask Linux to end it if render.py dies (even by SIGKILL), so no
    orphaned render keeps writing into media/."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextlib.contextmanager
def work_lock(media_dir: Path, name: str) -> Iterator[None]:
    """One render of `name` at a time in `media_dir`: a second render.py rendering the same
    scene into the same folder waits here (and says so) instead of corrupting the first."""
    folder = media_dir / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"  ... waiting for another render of {name} in {media_dir}", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
