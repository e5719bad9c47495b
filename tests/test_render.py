"""render.py: bad input exits 2 with one line, stills are named by quality, and `video`
concatenates scenes into one mp4 that PyAV decodes with the expected number of frames."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pysubs2
import pytest
from helpers import run_render

import render
from mla_core.narration import PAUSE_AFTER_SPEECH, speak
from mla_core.rendering import video_file
from mla_core.rendering.video_file import count_frames, subtitle_cues
from mla_core.scene_data.params import load_params
from scenes import STORY, TEST_CARD

REPO = Path(__file__).resolve().parent.parent


def test_list_prints_the_story_order_from_any_directory(tmp_path):
    result = run_render("list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines] == [s.name for s in STORY]


@pytest.mark.parametrize(
    ("args", "bad", "allowed"),
    [
        (("render", "NoSuchScene"), "NoSuchScene", STORY[0].name),
        (("still", STORY[0].name, "NoSuchScene"), "NoSuchScene", STORY[-1].name),
        (("render", STORY[0].name, "--quality", "ultra"), "ultra", "4k"),
        (("video", "-q", "8k"), "8k", "medium"),
        (("explode",), "explode", "video"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, bad, allowed):
    result = run_render(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert bad in lines[0] and allowed in lines[0]
    assert not (tmp_path / "media").exists()


def test_qualities_match_manims_presets():
    from manim.constants import QUALITIES as MANIM_QUALITIES

    by_flag = {q["flag"]: q for q in MANIM_QUALITIES.values()}
    for quality in render.QUALITIES.values():
        preset = by_flag[quality.flag]
        assert (quality.width, quality.height, quality.fps) == (
            preset["pixel_width"],
            preset["pixel_height"],
            preset["frame_rate"],
        )


def test_still_names_differ_by_quality():
    names = {render.still_name(STORY[0], q) for q in render.QUALITIES.values()}
    assert len(names) == len(render.QUALITIES)


# --- concatenation ------------------------------------------------------------------------


def write_solid_video(
    path: Path, colours: list[tuple[int, int, int]], size=(64, 48), fps=15, pix_fmt="yuv420p"
):
    """A tiny H.264 mp4, one solid-colour frame per entry."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        for colour in colours:
            image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            image[:] = colour
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def mean_colours(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").mean(axis=(0, 1)) for f in container.decode(video=0)]


def test_concat_keeps_every_frame_in_order(tmp_path):
    red, blue = (220, 30, 30), (30, 30, 220)
    first = write_solid_video(tmp_path / "a.mp4", [red] * 7)
    second = write_solid_video(tmp_path / "b.mp4", [blue] * 5)
    output = tmp_path / "out" / "joined.mp4"
    assert render.concat_videos([first, second], output, fps=15) == [7, 5]
    colours = mean_colours(output)
    assert len(colours) == 12
    assert all(c[0] > 150 and c[2] < 80 for c in colours[:7])
    assert all(c[2] > 150 and c[0] < 80 for c in colours[7:])
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 15
    assert [p.name for p in output.parent.iterdir()] == ["joined.mp4"]  # no temp left behind


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_alike_inputs_are_joined_by_copying_their_frames_unchanged(tmp_path):
    """Scene files from one encoder set-up are joined without re-encoding: every decoded
    frame of the output is bit-identical to the input frame it came from."""
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (120, 120, 0)]
    first = write_solid_video(tmp_path / "a.mp4", colours * 3)
    second = write_solid_video(tmp_path / "b.mp4", colours[::-1] * 2)
    assert video_file.copyable([first, second], fps=15) is not None
    output = tmp_path / "joined.mp4"
    assert render.concat_videos([first, second], output, fps=15) == [12, 8]
    joined, expected = frames_of(output), frames_of(first) + frames_of(second)
    assert len(joined) == 20
    assert all(np.array_equal(a, b) for a, b in zip(joined, expected, strict=True))
    with av.open(str(output)) as container:
        assert container.streams.video[0].average_rate == 15


def test_inputs_that_cannot_be_copied_are_re_encoded(tmp_path):
    """Inputs from different encoder set-ups (4:2:0 and 4:4:4 chroma, so another H.264
    profile): no copy; every frame is decoded and encoded again as 4:2:0, in order."""
    red, blue = (220, 30, 30), (30, 30, 220)
    first = write_solid_video(tmp_path / "a.mp4", [red] * 4)
    second = write_solid_video(tmp_path / "b.mp4", [blue] * 3, pix_fmt="yuv444p")
    assert video_file.copyable([first, second], fps=15) is None
    output = tmp_path / "joined.mp4"
    assert render.concat_videos([first, second], output, fps=15) == [4, 3]
    colours = mean_colours(output)
    assert len(colours) == 7 and colours[0][0] > 150 and colours[-1][2] > 150
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_concat_refuses_mixed_resolutions(tmp_path):
    first = write_solid_video(tmp_path / "a.mp4", [(0, 0, 0)] * 2, size=(64, 48))
    second = write_solid_video(tmp_path / "b.mp4", [(0, 0, 0)] * 2, size=(32, 16))
    with pytest.raises(render.RenderError, match="resolution"):
        render.concat_videos([first, second], tmp_path / "out.mp4", fps=15)
    assert not (tmp_path / "out.mp4").exists()


# --- real renders of the two-second test card ---------------------------------------------


def test_bad_parameter_override_is_one_line_and_exit_2(tmp_path):
    result = run_render("--set", "colour=red", "video", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.count("\n") == 1 and "colour" in result.stderr and "prompt" in result.stderr
    )


def test_data_prints_the_numbers_a_scene_draws(tmp_path):
    result = run_render("data", "CacheSizePerToken", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    values = summary["arrays"]["bytes_per_token"]["values"]
    assert values == [3_997_696, 249_856, 31_232, 70_272]
    saved = tmp_path / "out" / "cache.npz"
    result = run_render("data", "CacheSizePerToken", "--save", str(saved), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with np.load(saved) as npz:
        assert npz["bytes_per_token"].tolist() == values
        assert json.loads(str(npz["meta_json"]))["kinds"] == ["mha", "gqa", "mqa", "mla"]


@pytest.mark.slow
def test_video_manifest_and_skipping_unchanged_scenes(tmp_path, capsys):
    quality = render.QUALITIES["low"]
    media = tmp_path / "media"
    params = load_params(None, {"prompt": " first prompt"})
    output = render.build_video([TEST_CARD, TEST_CARD], quality, params, media, jobs=2)
    assert output == media / "mla_video_low.mp4"
    part = render.video_path(TEST_CARD, quality, media)
    part_frames = count_frames(part)
    # two one-second animations at 15 fps (manim may add a closing frame)
    assert 2 * quality.fps <= part_frames <= 2 * quality.fps + 1
    assert count_frames(output) == 2 * part_frames
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (854, 480)
        assert not container.streams.audio  # silent unless asked for a voice
    assert sorted(p.name for p in media.iterdir() if p.is_file()) == [
        "mla_video_low.manifest.json",
        "mla_video_low.mp4",
        "mla_video_low.script.md",
        "mla_video_low.srt",
        "mla_video_low.vtt",
    ]
    # the subtitles: each TestCard's two beats, the second card's shifted by the first's length
    part_s = part_frames / quality.fps
    for suffix in (".srt", ".vtt"):
        cues = pysubs2.load(str(output.with_suffix(suffix)), encoding="utf-8")
        assert [c.plaintext for c in cues] == ["Render check.", "Pipeline checked."] * 2
        assert [c.start for c in cues] == [
            0,
            1000,
            round(part_s * 1000),
            round(part_s * 1000) + 1000,
        ]
        assert all(c.end <= round(2 * part_s * 1000) for c in cues)
    # the same cues ride in the mp4 as a soft (mov_text) subtitle track
    assert subtitle_cues(output) == [(c.start, c.end, c.plaintext) for c in cues]
    script = output.with_suffix(".script.md").read_text(encoding="utf-8")
    assert "## TestCard (0:00.0)" in script and f"## TestCard (0:0{part_s:.1f})" in script
    assert "- **0:01.0** Pipeline checked." in script

    manifest = json.loads(render.manifest_path(output).read_text(encoding="utf-8"))
    assert manifest["frames"] == 2 * part_frames
    assert [s["scene"] for s in manifest["scenes"]] == ["TestCard", "TestCard"]
    scene_record = manifest["scenes"][0]
    assert scene_record["shown_numbers"] == {"prompt": " first prompt"}
    assert scene_record["params"]["prompt"] == " first prompt"
    assert "scenes/test_card.py" in scene_record["source_files"]

    capsys.readouterr()
    render.render_scenes([TEST_CARD], quality, params, media)
    assert "unchanged, not re-rendered" in capsys.readouterr().out
    render.render_scenes([TEST_CARD], quality, params, media, force=True)
    assert "unchanged" not in capsys.readouterr().out
    changed = load_params(None, {"prompt": " second prompt"})
    render.render_scenes([TEST_CARD], quality, changed, media)
    assert "unchanged" not in capsys.readouterr().out
    stored = json.loads(render.manifest_path(part).read_text(encoding="utf-8"))
    assert stored["record"]["shown_numbers"] == {"prompt": " second prompt"}


@pytest.mark.slow
def test_after_an_edit_to_one_scene_only_that_scene_is_rendered_again(
    tmp_path, capsys, monkeypatch
):
    """Two scenes rendered; then scenes/test_card.py changes (as the manifest's fingerprint
    sees files: by their sha256). Rendering both again re-renders the test card only."""
    from mla_core.rendering import manifest
    from scenes import find_scene

    quality = render.QUALITIES["low"]
    media = tmp_path / "media"
    params = load_params(None, {"weights": "demo"})
    both = [TEST_CARD, find_scene("Hook")]
    render.render_scenes(both, quality, params, media, jobs=2)
    capsys.readouterr()
    render.render_scenes(both, quality, params, media, jobs=2)
    out = capsys.readouterr().out
    assert out.count("unchanged, not re-rendered") == 2  # nothing changed: nothing rendered

    edited, real_sha256 = TEST_CARD.path.resolve(), manifest._sha256
    monkeypatch.setattr(
        manifest,
        "_sha256",
        lambda path: "an edited file" if Path(path).resolve() == edited else real_sha256(path),
    )
    render.render_scenes(both, quality, params, media, jobs=2)
    out = capsys.readouterr().out
    assert "Hook: unchanged, not re-rendered" in out
    assert "TestCard: unchanged" not in out and "TestCard: " in out  # rendered again
    stored = json.loads(
        render.manifest_path(render.video_path(TEST_CARD, quality, media)).read_text()
    )
    assert stored["fingerprint"]["files"]["scenes/test_card.py"] == "an edited file"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_voice_speaks_each_beat_and_the_beat_waits_for_it(tmp_path):
    quality = render.QUALITIES["low"]
    media = tmp_path / "media"
    params = load_params(None, {"voice": "true"})
    output = render.build_video([TEST_CARD], quality, params, media)
    record = json.loads(render.manifest_path(output).read_text(encoding="utf-8"))["scenes"][0]
    for beat in record["narration"]:
        _, seconds = speak(beat["line"], tmp_path / "again")
        assert beat["end"] - beat["start"] >= seconds + PAUSE_AFTER_SPEECH - 1e-3
    with av.open(str(output)) as container:
        assert container.streams.audio, "the voiced video has no sound track"
        video_s = container.streams.video[0].frames / quality.fps
        sound = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert abs(len(sound) / 48_000 - video_s) < 0.1  # one sound track, as long as the picture
    assert np.abs(sound).max() > 0.05  # and someone speaks on it
    frames = count_frames(output)
    assert frames / quality.fps >= record["narration"][-1]["end"] - 0.1


def test_voice_without_an_engine_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "render.py"), "video", "--voice"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": str(tmp_path)},  # no espeak-ng on this PATH
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "espeak-ng" in lines[0] and "apt-get install" in lines[0]
    assert not (tmp_path / "media").exists()


@pytest.mark.slow
def test_stills_with_extras_are_named_by_scene_and_quality(tmp_path):
    from PIL import Image

    quality = render.QUALITIES["low"]
    figures = tmp_path / "figures"
    params = load_params()
    stills = render.render_stills([TEST_CARD], quality, params, tmp_path / "media", figures,
                                  extras=True, jobs=2)  # fmt: skip
    assert stills == [figures / "TestCard_low.png", figures / "TestCard-first_low.png"]
    frames = []
    for still in stills:
        with Image.open(still) as image:
            assert image.size == (854, 480)
            frames.append(np.asarray(image.convert("RGB")))
        manifest = json.loads(render.manifest_path(still).read_text(encoding="utf-8"))
        assert manifest["file"] == still.name and manifest["quality"] == "low"
    assert not np.array_equal(frames[0], frames[1])  # the extra still is another moment
