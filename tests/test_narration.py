"""mla_core.narration: merged subtitles stay inside their scenes, in order, without overlaps,
and move with the scenes before them; the script lists every line at its time."""

from __future__ import annotations

from pathlib import Path

import pysubs2
import pytest

from mla_core.narration import (
    WORDS_PER_SECOND,
    ScenePart,
    check_track,
    merge_subtitles,
    min_seconds,
    narration_script,
    timestamp,
    write_subtitles,
)


def write_srt(path: Path, cues: list[tuple[float, float, str]]) -> Path:
    """An .srt as manim writes one: times in seconds within the scene."""
    subs = pysubs2.SSAFile()
    for start, end, line in cues:
        subs.append(pysubs2.SSAEvent(start=round(start * 1000), end=round(end * 1000), text=line))
    path.write_text(subs.to_string("srt"), encoding="utf-8")
    return path


@pytest.fixture
def two_scenes(tmp_path):
    first = write_srt(tmp_path / "A.srt", [(0, 2.5, "one"), (2.5, 6.0, "two")])
    second = write_srt(tmp_path / "B.srt", [(0, 3.0, "three"), (3.0, 4.0, "four")])
    return first, second


def parts(first: Path, second: Path, first_duration: float) -> list[ScenePart]:
    return [
        ScenePart("A", 0.0, first_duration, first),
        ScenePart("B", first_duration, 4.0, second),
    ]


def test_cues_are_shifted_by_the_start_of_their_scene(two_scenes):
    track = merge_subtitles(parts(*two_scenes, first_duration=6.0))
    assert [(c.start, c.end, c.plaintext) for c in track] == [
        (0, 2500, "one"),
        (2500, 6000, "two"),
        (6000, 9000, "three"),
        (9000, 10000, "four"),
    ]
    assert check_track(track, parts(*two_scenes, 6.0)) == []


def test_a_longer_scene_moves_every_later_cue(two_scenes):
    short = merge_subtitles(parts(*two_scenes, first_duration=6.0))
    longer = merge_subtitles(parts(*two_scenes, first_duration=8.4))
    assert [c.start for c in short][:2] == [c.start for c in longer][:2]
    assert [b.start - a.start for a, b in zip(short, longer, strict=True)][2:] == [2400, 2400]


def test_a_cue_never_runs_into_the_next_scene(two_scenes, tmp_path):
    # the scene's video came out 0.5 s shorter than its timeline: its last cue is cut there
    track = merge_subtitles(parts(*two_scenes, first_duration=5.5))
    assert track[1].end == 5500 and track[2].start == 5500
    assert check_track(track, parts(*two_scenes, 5.5)) == []


def test_the_check_finds_overlaps_and_stray_cues(two_scenes):
    track = merge_subtitles(parts(*two_scenes, 6.0))
    track[2].start = 5000  # now overlaps cue 2
    problems = check_track(track, parts(*two_scenes, 6.0))
    assert any("before cue 2 ends" in p for p in problems)
    track = merge_subtitles(parts(*two_scenes, 6.0))
    track[3].end = 20_000  # past the last scene
    assert any("is in no scene" in p for p in check_track(track, parts(*two_scenes, 6.0)))


def test_a_scene_without_subtitles_is_skipped(two_scenes, tmp_path):
    first, _ = two_scenes
    track = merge_subtitles([ScenePart("A", 0, 6, first), ScenePart("C", 6, 2, None)])
    assert [c.plaintext for c in track] == ["one", "two"]


def test_srt_and_vtt_say_the_same(two_scenes, tmp_path):
    track = merge_subtitles(parts(*two_scenes, 6.0))
    srt, vtt = tmp_path / "v.srt", tmp_path / "v.vtt"
    write_subtitles(track, srt, vtt)
    assert vtt.read_text(encoding="utf-8").startswith("WEBVTT")
    again = [pysubs2.load(str(p), encoding="utf-8") for p in (srt, vtt)]
    for loaded in again:
        assert [(c.start, c.end, c.plaintext) for c in loaded] == [
            (c.start, c.end, c.plaintext) for c in track
        ]


def test_pacing_gives_each_word_its_time():
    assert min_seconds("five words are spoken here") == pytest.approx(5 / WORDS_PER_SECOND)
    assert min_seconds("") == 0


def test_script_lists_each_line_at_its_time_with_sources():
    scenes = [
        {
            "scene": "Hook",
            "start": 0.0,
            "duration": 20.0,
            "narration": [{"line": "Hello.", "start": 0.0, "end": 4.0}],
            "provenance": {"config": "deepseek-v3", "computed_by": "mla_core.analysis"},
        },
        {
            "scene": "NextToken",
            "start": 20.0,
            "duration": 30.0,
            "narration": [{"line": "It guesses.", "start": 63.5 - 20.0, "end": 66.0 - 20.0}],
            "provenance": {"model": "demo", "model_sha256": "ab" * 32, "prompt": " The"},
        },
    ]
    script = narration_script(scenes)
    assert "## Hook (0:00.0)" in script and "## NextToken (0:20.0)" in script
    assert "- **1:03.5** It guesses." in script
    assert "> config: deepseek-v3" in script
    assert f"> model: demo (sha256 {'ab' * 8})" in script and "> prompt: ' The'" in script
    assert timestamp(83.25) == "1:23.2"
