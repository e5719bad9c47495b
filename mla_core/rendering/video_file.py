"""Joining scene videos into one mp4 and counting a video's frames (PyAV, no system ffmpeg)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

from mla_core.atomic import write_atomically
from mla_core.errors import UserError
from mla_core.rendering.manim_job import RenderError

# Subtitle cues as (start ms, end ms, text), made once the frames of every input are known.
Cues = list[tuple[int, int, str]]


def concat_videos(
    inputs: Sequence[Path],
    output: Path,
    fps: int,
    crf: int = 18,
    preset: str = "medium",
    subtitles: Callable[[list[int]], Cues] | None = None,
) -> list[int]:
    """Join the input mp4s, in order, into ONE H.264 mp4 at `fps`.

    When the inputs are alike (`copyable`: manim's scene files at one quality are), their
    compressed frames are copied as they are, with shifted timestamps: no decoding, no
    second encode, no loss, in a second or two. Otherwise each input is decoded and every
    frame encoded again (`crf`, `preset`), which gives one clean, constant-rate timeline
    whatever timestamps each file carries. The file is written under a temporary name and
    renamed, so an interrupted run never leaves a broken `output`. Returns the frames written
    from each input, in order (a scene starts at the sum of the counts before it, over fps).

    `subtitles(frames_per_input)` gives the cues of a soft subtitle track (mov_text, the
    mp4 kind that players show and hide) muxed into the same file.
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

    # the cues and the sound need each scene's length before encoding starts: count the
    # packets (one per frame in manim's mp4s), which is fast, rather than decoding twice
    lengths = [count_packets(p) for p in inputs]
    cues = subtitles(lengths) if subtitles is not None else None
    sound = _sound_track(inputs, [n / fps for n in lengths])
    output.parent.mkdir(parents=True, exist_ok=True)
    frames = 0
    per_input: list[int] = []
    plan = copyable(inputs, fps)

    def copy(tmp: Path) -> None:
        """Every input's packets, re-timed on one grid, each input after the previous one."""
        ticks, delay = plan
        per_input.clear()
        with av.open(str(tmp), mode="w", format="mp4") as out:
            with av.open(str(inputs[0])) as first:
                stream = out.add_stream_from_template(first.streams.video[0])
                stream.time_base = first.streams.video[0].time_base
            track = _subtitle_stream(out) if cues is not None else None
            audio = _audio_stream(out) if sound is not None else None
            before = 0  # frames of the inputs before this one
            for path in inputs:
                with av.open(str(path)) as container:
                    packets = _frame_packets(container)
                    for k, (packet, rank) in enumerate(
                        zip(packets, _display_ranks(packets), strict=True)
                    ):
                        packet.pts = (before + rank) * ticks
                        packet.dts = (before + k - delay) * ticks
                        packet.stream = stream
                        out.mux(packet)
                before += len(packets)
                per_input.append(len(packets))
            if track is not None:
                _mux_cues(out, track, cues)
            if audio is not None:
                _mux_sound(out, audio, sound)

    if plan is not None:
        write_atomically(output, copy)
        return per_input

    def encode(tmp: Path) -> None:
        nonlocal frames
        per_input.clear()
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, fps)
            stream.codec_context.options = {"crf": str(crf), "preset": preset}
            # every stream must exist before the first packet is muxed
            track = _subtitle_stream(out) if cues is not None else None
            audio = _audio_stream(out) if sound is not None else None
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
            if track is not None:
                _mux_cues(out, track, cues)
            if audio is not None:
                _mux_sound(out, audio, sound)

    write_atomically(output, encode)
    return per_input


def copyable(inputs: Sequence[Path], fps: int) -> tuple[int, int] | None:
    """(ticks per frame, decode delay in frames) if the inputs can be joined by copying their
    packets, else None.

    They can when every input is H.264 with the same size, pixel format, time base and codec
    set-up (SPS/PPS, the `extradata`), and `fps` is a whole number of ticks of that time base.
    The copy then re-times every frame on one constant-rate grid: frame n of the joined
    video is shown at n ticks-per-frame (manim's scene files drift by a few ticks where
    their partial movies meet), and decoded `delay` frames earlier at most, the largest
    reordering of B-frames any input has.
    """
    import av

    setups = set()
    ticks, delay = None, 0
    for path in inputs:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            context = stream.codec_context
            setups.add(
                (context.name, context.width, context.height, context.pix_fmt,
                 stream.time_base, bytes(context.extradata or b""))
            )  # fmt: skip
            if len(setups) != 1 or context.name != "h264" or stream.time_base is None:
                return None
            per_frame = 1 / (stream.time_base * fps)
            if per_frame.denominator != 1:
                return None
            ticks = int(per_frame)
            packets = _frame_packets(container)
            if packets is None:
                return None
            delay = max([delay, *(k - rank for k, rank in enumerate(_display_ranks(packets)))])
    return ticks, delay


def _frame_packets(container) -> list | None:
    """The video packets that carry a frame, in decode order (None if one has no pts)."""
    packets = [p for p in container.demux(video=0) if p.size]
    return None if any(p.pts is None for p in packets) else packets


def _display_ranks(packets: list) -> list[int]:
    """For each packet (decode order), the place of its frame in display order."""
    order = sorted(range(len(packets)), key=lambda k: packets[k].pts)
    ranks = [0] * len(packets)
    for rank, k in enumerate(order):
        ranks[k] = rank
    return ranks


def count_frames(path: Path) -> int:
    """Frames in a video, by decoding it (a check that it plays)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# --- sound (the spoken narration, when scenes have it) -------------------------------------

SAMPLE_RATE = 48_000  # the joined video's audio: mono, 48 kHz, AAC
AUDIO_CHUNK = 1024  # samples per encoded frame (AAC's frame size)


def _sound_track(inputs: Sequence[Path], seconds: Sequence[float]):
    """One mono float32 track for the joined video, or None when no input has sound: each
    input's audio, cut or padded with silence to that input's video length."""
    import av
    import numpy as np

    has_audio = [_has_audio(p) for p in inputs]
    if not any(has_audio):
        return None
    pieces = []
    for path, length, audible in zip(inputs, seconds, has_audio, strict=True):
        n = round(length * SAMPLE_RATE)
        samples = np.zeros(n, dtype=np.float32)
        if audible:
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)
            decoded = []
            with av.open(str(path)) as container:
                for frame in container.decode(audio=0):
                    decoded += [f.to_ndarray()[0] for f in resampler.resample(frame)]
            decoded += [f.to_ndarray()[0] for f in resampler.resample(None)]
            if decoded:
                audio = np.concatenate(decoded).astype(np.float32)[:n]
                samples[: len(audio)] = audio
        pieces.append(samples)
    return np.concatenate(pieces)


def _has_audio(path: Path) -> bool:
    import av

    with av.open(str(path)) as container:
        return bool(container.streams.audio)


def _audio_stream(out):
    stream = out.add_stream("aac", rate=SAMPLE_RATE)
    stream.codec_context.layout = "mono"
    stream.time_base = Fraction(1, SAMPLE_RATE)
    return stream


def _mux_sound(out, stream, samples) -> None:
    import av

    for offset in range(0, len(samples), AUDIO_CHUNK):
        chunk = samples[offset : offset + AUDIO_CHUNK]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = offset
        frame.time_base = Fraction(1, SAMPLE_RATE)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def count_packets(path: Path) -> int:
    """Frames of an mp4's video stream, counted as packets (fast: nothing is decoded)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def _subtitle_stream(out):
    """A mov_text stream (the mp4 kind of soft subtitles, shown or hidden by the player)."""
    stream = out.add_stream("mov_text")
    stream.codec_context.time_base = Fraction(1, 1000)
    stream.codec_context.subtitle_header = b"[Script Info]\r\nScriptType: v4.00+\r\n"
    stream.time_base = Fraction(1, 1000)
    stream.metadata["language"] = "eng"
    return stream


def _mux_cues(out, stream, cues: Cues) -> None:
    """PyAV has no subtitle encoder API, but a mov_text sample is simple: a 2-byte
    big-endian length and the UTF-8 text, muxed as one packet per cue."""
    import av

    for start, end, line in cues:
        data = line.encode("utf-8")[:65535]
        packet = av.Packet(struct.pack(">H", len(data)) + data)
        packet.stream = stream
        packet.pts = packet.dts = start
        packet.duration = end - start
        packet.time_base = Fraction(1, 1000)
        out.mux(packet)


def subtitle_cues(path: Path) -> Cues:
    """The soft subtitle track of an mp4 as (start ms, end ms, text); [] when it has none."""
    import av

    cues = []
    with av.open(str(path)) as container:
        if not container.streams.subtitles:
            return []
        stream = container.streams.subtitles[0]
        scale = stream.time_base * 1000
        for packet in container.demux(stream):
            payload = bytes(packet)
            if packet.pts is None or len(payload) <= 2:
                continue  # the empty samples that end a cue
            (length,) = struct.unpack(">H", payload[:2])
            start = round(packet.pts * scale)
            cues.append(
                (start, start + round(packet.duration * scale), payload[2 : 2 + length].decode())
            )
    return cues
