"""render.py's renders as separate processes: two renders of one scene at once into one media folder
both succeed, and a render.py killed mid-render takes its manim child with it and leaves no
half-written video under the final name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import render
from scenes import TEST_CARD

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HANG_GUARD_S = 600  # only so that a hung render fails the test instead of blocking the run

# render.py's own functions in a process of their own, on the test card (the cheapest scene,
# two seconds; `render.py` itself only names story scenes): `still MEDIA FIGURES` or
# `render MEDIA` (always re-rendered, as --force does).
DRIVER = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
import render
from mla_core.scene_data.params import load_params
from scenes import TEST_CARD
low = render.QUALITIES["low"]
if sys.argv[1] == "still":
    render.render_stills([TEST_CARD], low, load_params(), Path(sys.argv[2]), Path(sys.argv[3]))
else:
    render.render_scenes([TEST_CARD], low, load_params(), Path(sys.argv[2]), force=True)
"""


def render_command(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", DRIVER, *args]


def quiet_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLA_")}
    env["MLA_SCENE_DATA_CACHE"] = str(tmp_path / "scene_data")
    return env


@pytest.mark.slow
def test_two_render_processes_of_one_scene_at_once_both_succeed(tmp_path):
    media, figures = tmp_path / "media", tmp_path / "figures"
    command = render_command(tmp_path, "still", str(media), str(figures))
    env = quiet_env(tmp_path)
    procs = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=HANG_GUARD_S) for p in procs]
    finally:
        for p in procs:  # a hung render must not outlive the test
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, (out + err)[-3000:]
        assert "Traceback" not in err
    still = figures / f"{TEST_CARD.name}_low.png"
    assert still.read_bytes()[:8] == PNG_SIGNATURE
    from PIL import Image

    with Image.open(still) as image:
        image.load()  # a truncated PNG fails here
        assert image.size == (854, 480)
    waits = [line for out, _ in outputs for line in out.splitlines() if "waiting for" in line]
    for line in waits:  # the second render (if it had to wait) says so in one line
        assert line.strip() == (
            f"... waiting for another render of {TEST_CARD.name}_low in {media}"
        )
    assert not list(figures.glob(".*.tmp"))  # no temporary file left behind


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (exited, not yet reaped)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_render_leaves_no_orphan_and_no_half_written_video(tmp_path):
    final = render.video_path(TEST_CARD, render.QUALITIES["low"], tmp_path / "media")
    proc = subprocess.Popen(
        render_command(tmp_path, "render", str(tmp_path / "media")),
        cwd=tmp_path,
        env=quiet_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        manim: list[int] = []

        def manim_started() -> bool:
            assert proc.poll() is None, "render.py ended before manim started"
            manim[:] = [c for c in _children(proc.pid) if " -m manim " in _cmdline(c)]
            return bool(manim)

        _wait_for(manim_started, "render.py starting its manim child")
        # let manim get going: it writes its partial movie files once it renders frames
        partial = final.parent / "partial_movie_files"
        _wait_for(lambda: partial.exists() or not _running(manim[0]), "manim writing frames")
        assert _running(manim[0]), "manim ended before render.py was killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=HANG_GUARD_S)
        _wait_for(lambda: not _running(manim[0]), "the orphaned manim child to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not final.exists()  # only the temporary name may hold a half-written video
    assert not render.manifest_path(final).exists()
    for leftover in final.parent.glob(f"{TEST_CARD.name}*.mp4"):
        assert leftover.name.startswith(f"{TEST_CARD.name}{render.PARTIAL_SUFFIX}")
