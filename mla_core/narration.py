"""The narration: pacing of a spoken line, the video's merged subtitles and its script.

Each scene speaks in beats (`scenes.components.base.VideoScene.beat`): one line of narration
over the animations it accompanies. Manim writes the beats of a scene as subcaptions into
`<Scene>.srt` beside the scene's mp4 and the scene's record (its manifest) keeps the same
lines with their times. Once the scenes are joined into one video, this module

- merges the scenes' `.srt` files into one track, each shifted by where its scene starts
  in the video, and writes it as `.srt` and `.vtt` (pysubs2 reads and writes both);
- writes the narration script: per scene its start time, its lines with their timestamps,
  and where the numbers it speaks come from (the scene's provenance).

No Manim and no torch here: render.py uses it after the scenes are rendered.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pysubs2

from mla_core.atomic import write_atomically, write_text_atomically
from mla_core.errors import UserError

# A line of N words stays on screen for at least N / WORDS_PER_SECOND seconds, so that no
# subtitle flashes by and a narrator speaking calmly (~150 words a minute) keeps up.
WORDS_PER_SECOND = 2.5


def min_seconds(line: str) -> float:
    """The least time a spoken line needs: its words at WORDS_PER_SECOND."""
    return len(line.split()) / WORDS_PER_SECOND


@dataclass(frozen=True)
class ScenePart:
    """One scene's place in the joined video, and its subtitles."""

    scene: str
    start: float  # seconds into the joined video
    duration: float  # seconds
    subtitles: Path | None  # the .srt manim wrote beside the scene's mp4 (None: it has none)

    @property
    def end(self) -> float:
        return self.start + self.duration


def merge_subtitles(parts: Sequence[ScenePart]) -> pysubs2.SSAFile:
    """One subtitle track for the joined video: every scene's cues shifted by its start.

    A cue is kept inside its own scene: one that would run past the end of its scene (the
    scene's video is a frame shorter than its timeline) is cut at the scene's end, so no two
    scenes' cues overlap."""
    merged = pysubs2.SSAFile()
    for part in parts:
        if part.subtitles is None or not part.subtitles.is_file():
            continue
        scene_subs = pysubs2.load(str(part.subtitles), encoding="utf-8", format_="srt")
        start_ms, end_ms = _ms(part.start), _ms(part.end)
        for event in scene_subs:
            event.start = min(event.start + start_ms, end_ms)
            event.end = min(event.end + start_ms, end_ms)
            if event.end > event.start:
                merged.append(event)
    merged.sort()
    return merged


def write_subtitles(subs: pysubs2.SSAFile, srt_path: Path, vtt_path: Path) -> None:
    """The track as SubRip (.srt) and WebVTT (.vtt), each written atomically."""
    write_text_atomically(srt_path, subs.to_string("srt"))
    write_text_atomically(vtt_path, subs.to_string("vtt"))


def check_track(subs: pysubs2.SSAFile, parts: Sequence[ScenePart]) -> list[str]:
    """What is wrong with a merged track (empty list: nothing): cues out of order, cues that
    overlap, cues outside every scene's span."""
    problems = []
    spans = [(_ms(p.start), _ms(p.end)) for p in parts]
    previous_end = 0
    for i, event in enumerate(subs):
        if event.start < previous_end:
            problems.append(f"cue {i + 1} starts at {event.start} ms, before cue {i} ends")
        if not any(lo <= event.start and event.end <= hi for lo, hi in spans):
            problems.append(f"cue {i + 1} ({event.start}..{event.end} ms) is in no scene")
        previous_end = event.end
    return problems


# --- the voice-over draft ---------------------------------------------------------------

# An offline speech engine, from Debian's archive (scripts/debian-packages.txt installs it).
VOICE_ENGINE = "espeak-ng"
VOICE = ("-v", "en-us", "-s", "165")  # US English, 165 words a minute
PAUSE_AFTER_SPEECH = 0.4  # seconds of quiet after a spoken line before the next beat


def find_voice_engine() -> str:
    """The speech engine's path, or a one-line UserError saying what to install."""
    path = shutil.which(VOICE_ENGINE)
    if path is None:
        raise UserError(
            f"--voice needs the offline speech engine {VOICE_ENGINE}, which is not installed: "
            f"run `sudo apt-get install {VOICE_ENGINE}` (or `make setup`)"
        )
    return path


def speak(line: str, folder: Path) -> tuple[Path, float]:
    """`line` spoken into a WAV file in `folder` (reused when the same line was spoken
    before with the same voice) and its length in seconds."""
    engine = find_voice_engine()
    key = hashlib.sha256("\0".join((VOICE_ENGINE, *VOICE, line)).encode()).hexdigest()[:24]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{key}.wav"
    if not target.is_file():

        def synthesize(tmp: Path) -> None:
            subprocess.run([engine, *VOICE, "-w", str(tmp), line], check=True, capture_output=True)

        write_atomically(target, synthesize)
    with wave.open(str(target)) as audio:
        return target, audio.getnframes() / audio.getframerate()


# --- the script -------------------------------------------------------------------------


def timestamp(seconds: float) -> str:
    """m:ss.s, e.g. 83.25 -> '1:23.2'."""
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def narration_script(scenes: Sequence[dict], title: str = "Narration script") -> str:
    """The script as Markdown. `scenes`: per scene in video order, {"scene", "start",
    "duration", "narration": [{"line", "start", "end"}...] (times within the scene),
    "provenance": {...}} as render.py gathers them from the manifests."""
    total = sum(s["duration"] for s in scenes)
    lines = [
        f"# {title}",
        "",
        f"{len(scenes)} scenes, {timestamp(total)} in all. Each line is timed from the start "
        "of the video; the numbers spoken come from the same scene data as the numbers on "
        "screen (sources under each scene).",
    ]
    for s in scenes:
        lines += ["", f"## {s['scene']} ({timestamp(s['start'])})", ""]
        for beat in s.get("narration", []):
            at = timestamp(s["start"] + beat["start"])
            lines.append(f"- **{at}** {beat['line']}")
        sources = _provenance_lines(s.get("provenance") or {})
        if sources:
            lines += ["", *(f"> {line}" for line in sources)]
    return "\n".join(lines) + "\n"


def _provenance_lines(provenance: dict) -> list[str]:
    """The provenance that a narrator may need, one short line each."""
    out = []
    if provenance.get("model"):
        sha = provenance.get("model_sha256") or ""
        out.append(f"model: {provenance['model']}" + (f" (sha256 {sha[:16]})" if sha else ""))
    if provenance.get("prompt"):
        out.append(f"prompt: {provenance['prompt']!r}")
    for key in ("config", "computed_by", "source", "paper"):
        if provenance.get(key):
            out.append(f"{key.replace('_', ' ')}: {provenance[key]}")
    return out


def _ms(seconds: float) -> int:
    return int(math.floor(seconds * 1000 + 0.5))
