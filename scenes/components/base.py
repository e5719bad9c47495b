"""The scene base class: parameters, data and the record of what a scene showed."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from manim import Scene, config

from mla_core.atomic import write_text_atomically
from mla_core.errors import UserError
from mla_core.narration import PAUSE_AFTER_SPEECH, min_seconds, speak
from mla_core.scene_data import MANIFEST_DIR_ENV, USER_ERROR_FILE, SceneData, data_for_scene
from mla_core.scene_data.inputs import SceneInputs, resolve_inputs
from mla_core.scene_data.params import params_from_env

REPO = Path(__file__).resolve().parents[2]


class VideoScene(Scene):
    """A scene of the video. It reads the video parameters (video.toml, or what render.py
    passed), takes its data from `mla_core.scene_data`, records every number it prints in
    `shown_numbers`, and at the end writes that record (with the data's provenance and the
    project files it ran) for render.py's manifest."""

    def setup(self) -> None:
        self.params = params_from_env()
        self.shown_numbers: dict = {}
        self.provenance: dict = {}
        self.narration: list[dict] = []  # {"line", "start", "end"}: what beat() spoke, when

    @property
    def inputs(self) -> SceneInputs:
        """The parameters resolved once (model, weights, device), shared with the data."""
        with reporting_user_errors():
            return resolve_inputs(self.params)

    def scene_data(self) -> SceneData:
        """This scene's data (mla_core/scene_data/<stem>.py), provenance kept."""
        with reporting_user_errors():
            data = data_for_scene(type(self).__name__, self.inputs)
        self.provenance = data.provenance
        return data

    @contextmanager
    def beat(self, line: str) -> Iterator[None]:
        """One line of narration over the animations played inside the `with` block.

        The beat lasts at least as long as the line needs (`narration.min_seconds`): if the
        animations are shorter, the scene waits. The line becomes a subcaption (manim writes
        them to <Scene>.srt beside the video) and goes into the scene's record with its times.
        Build the line from the scene's data, like the text on screen: never type a number.

        With the `voice` parameter the line is also spoken (narration.speak) from the beat's
        start, and the beat lasts until the speech is over."""
        start = self.time
        needed = min_seconds(line)
        if self.params.voice:
            wav, seconds = speak(line, Path(config.media_dir) / "voice")
            self.add_sound(str(wav))
            needed = max(needed, seconds + PAUSE_AFTER_SPEECH)
        yield
        # a rendered wait advances by whole frames and may fall short by part of one
        while (missing := needed - (self.time - start)) > 1e-6:
            self.wait(max(missing, 1 / config.frame_rate))
        duration = self.time - start
        self.add_subcaption(line, duration=duration, offset=-duration)
        self.narration.append({"line": line, "start": round(start, 3), "end": round(self.time, 3)})

    def tear_down(self) -> None:
        folder = os.environ.get(MANIFEST_DIR_ENV)
        if folder:
            write_scene_record(self, Path(folder))


@contextmanager
def reporting_user_errors() -> Iterator[None]:
    """Bad input met inside manim (e.g. a head out of range) is left as one line for render.py,
    which reports it as its own one-line error instead of manim's traceback."""
    try:
        yield
    except UserError as err:
        folder = os.environ.get(MANIFEST_DIR_ENV)
        if folder:
            write_text_atomically(Path(folder) / USER_ERROR_FILE, str(err))
        raise


def write_scene_record(scene: VideoScene, folder: Path) -> Path:
    """<folder>/<Scene>.json: parameters, provenance, numbers shown, project files used."""
    record = {
        "scene": type(scene).__name__,
        "params": scene.params.as_dict(),
        "provenance": scene.provenance,
        "shown_numbers": scene.shown_numbers,
        "narration": scene.narration,
        "source_files": project_files_loaded(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['scene']}.json"
    write_text_atomically(path, json.dumps(record, indent=2, ensure_ascii=False))
    return path


def project_files_loaded() -> dict[str, str]:
    """sha256 of every module of this repository the process has imported (relative paths):
    what a render depended on, so render.py can tell when it must re-render."""
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not os.path.isabs(path):  # some extension modules give bare names
            continue
        path = Path(path).resolve()
        if path.suffix != ".py" or REPO not in path.parents or ".venv" in path.parts:
            continue
        if not path.is_file():
            continue
        files[str(path.relative_to(REPO))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(files.items()))
