"""The joined video's subtitles and narration script, from its scenes' own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mla_core.atomic import write_text_atomically
from mla_core.narration import (
    ScenePart,
    check_track,
    merge_subtitles,
    narration_script,
    write_subtitles,
)
from mla_core.rendering.manim_job import RenderError
from mla_core.rendering.quality import Quality


class Narration:
    """The joined video's subtitles and script, made from the scenes' own (manim's .srt
    beside each scene's mp4, and the narration in each scene's record)."""

    def __init__(self, parts: Sequence[Path], records: Sequence[dict], quality: Quality):
        self.parts, self.records, self.quality = list(parts), list(records), quality
        self.track = None
        self.scenes: list[dict] = []

    def cues(self, part_frames: list[int]) -> list[tuple[int, int, str]]:
        """Called by concat_videos with the frames of each scene: merges the scenes' cues,
        shifted to where each scene starts, and checks the track."""
        scene_parts, self.scenes, start = [], [], 0.0
        for part, count, record in zip(self.parts, part_frames, self.records, strict=True):
            duration = count / self.quality.fps
            srt = part.with_suffix(".srt")
            scene_parts.append(ScenePart(record["scene"], start, duration, srt))
            self.scenes.append({**record, "start": start, "duration": duration})
            start += duration
        self.track = merge_subtitles(scene_parts)
        problems = check_track(self.track, scene_parts)
        if problems:
            raise RenderError("the merged subtitles are broken: " + "; ".join(problems[:3]))
        return [(e.start, e.end, e.plaintext) for e in self.track]

    def write_beside(self, output: Path) -> list[Path]:
        """<video>.srt, <video>.vtt and <video>.script.md."""
        srt_path, vtt_path = output.with_suffix(".srt"), output.with_suffix(".vtt")
        write_subtitles(self.track, srt_path, vtt_path)
        script = output.with_suffix(".script.md")
        title = f"Narration script: {output.name}"
        write_text_atomically(script, narration_script(self.scenes, title))
        return [srt_path, vtt_path, script]
