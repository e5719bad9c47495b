"""The provenance manifest beside every video and still, and what makes a render up to date."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from mla_core.atomic import write_text_atomically
from mla_core.rendering.manim_job import MANIM_CFG, REPO
from mla_core.rendering.quality import Quality
from mla_core.rendering.video_file import count_packets
from mla_core.scene_data.params import VideoParams


def manifest_path(output: Path) -> Path:
    """The provenance manifest beside a video or still: X.mp4 -> X.manifest.json."""
    return output.with_name(output.stem + ".manifest.json")


def _manim_version() -> str:
    from importlib.metadata import version

    return version("manim")


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def fingerprint(record: dict, params: VideoParams, quality: Quality) -> dict:
    """What a render depends on: the project files the scene ran (with their current
    hashes), the parameters, the quality, manim.cfg, and the model's sha256 if it used one."""
    return {
        "quality": quality.name,
        "params": {k: v for k, v in params.as_dict().items() if k != "quality"},
        "manim_cfg": _sha256(MANIM_CFG),
        "manim_version": _manim_version(),
        "files": {path: _sha256(REPO / path) for path in record.get("source_files", {})},
        "model_sha256": record.get("provenance", {}).get("model_sha256"),
    }


def is_up_to_date(output: Path, params: VideoParams, quality: Quality) -> bool:
    """True when `output` and its manifest exist, nothing it depended on changed, and (for a
    video) the file is a readable video of the length the manifest recorded. Anything odd
    about the manifest (not UTF-8, not JSON, wrong shape) means: render again."""
    manifest = manifest_path(output)
    if not (output.is_file() and manifest.is_file()):
        return False
    try:
        stored = json.loads(manifest.read_text(encoding="utf-8"))
        record, old = stored["record"], stored["fingerprint"]
    except (ValueError, KeyError, TypeError):  # ValueError covers bad UTF-8 and bad JSON
        return False
    if not (isinstance(record, dict) and isinstance(old, dict)):
        return False
    if output.suffix == ".mp4" and stored.get("frames") != video_frames(output):
        return False  # truncated, or not the video this manifest describes
    current = fingerprint(record, params, quality)
    if old.get("model_sha256"):  # the model is resolved again: weights may have changed
        from mla_core.scene_data.inputs import resolve_inputs

        current["model_sha256"] = resolve_inputs(params).weights.sha256
    return current == old


def video_frames(path: Path) -> int | None:
    """Frames (packets) of an mp4's video stream, or None when it is not a readable video."""
    import av

    try:
        return count_packets(path)
    except (av.FFmpegError, OSError, IndexError, ValueError):
        return None


def write_manifest(output: Path, record: dict, params: VideoParams, quality: Quality) -> Path:
    """The provenance manifest beside one scene's video or still."""
    manifest = {
        "file": output.name,
        "scene": record.get("scene"),
        "quality": quality.name,
        "rendered_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "record": record,
        "fingerprint": fingerprint(record, params, quality),
    }
    if output.suffix == ".mp4":
        manifest["frames"] = video_frames(output)
    path = manifest_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return path
