"""Joining scene videos into one mp4 and counting a video's frames (PyAV, no system ffmpeg)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from mla_core.atomic import write_atomically
from mla_core.errors import UserError
from mla_core.rendering.manim_job import RenderError


def concat_videos(
    inputs: Sequence[Path], output: Path, fps: int, crf: int = 18, preset: str = "medium"
) -> list[int]:
    """Decode each input mp4 in turn and encode every frame into ONE H.264 mp4 at `fps`.

    Re-encoding (rather than re-muxing) gives one clean, constant-rate timeline whatever
    timestamps each scene's file carries. The file is written under a temporary name and
    renamed, so an interrupted run never leaves a broken `output`. Returns the frames written
    from each input, in order (a scene starts at the sum of the counts before it, over fps).
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
    frames = 0
    per_input: list[int] = []

    def encode(tmp: Path) -> None:
        nonlocal frames
        per_input.clear()
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, fps)
            stream.codec_context.options = {"crf": str(crf), "preset": preset}
            for path in inputs:
                before = frames
                with av.open(str(path)) as container:
                    for frame in container.decode(video=0):
                        frame = frame.reformat(format="yuv420p")
                        frame.pts = frames
                        frame.time_base = Fraction(1, fps)
                        out.mux(stream.encode(frame))
                        frames += 1
                per_input.append(frames - before)
            out.mux(stream.encode(None))  # flush the encoder

    write_atomically(output, encode)
    return per_input


def count_frames(path: Path) -> int:
    """Frames in a video, by decoding it (a check that it plays)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
