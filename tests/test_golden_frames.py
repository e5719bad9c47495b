"""Golden frames: the final frame of a few scenes, compared with stored control data.

Each scene is rendered in-process at 320x180 with animations skipped (the helper of
`test_scenes.py`), and its final RGB frame is compared with the frame stored in
`tests/control_data/golden/<Scene>.npz`. The comparison allows a few pixels of difference
(a glyph edge anti-aliased another way) and nothing more:

- the mean absolute difference over all pixels and channels is below `MAX_MEAN_ABS_DIFF`;
- fewer than `MAX_FRACTION_OFF` of the pixels differ by more than `OFF_BY` in any channel.

On a mismatch the rendered frame and a difference image are written to the test's temp
folder (the failure message names them).

Every scene gets the same fixed parameters (`GOLDEN_PARAMS`, not video.toml, which may
change), and GPT-2 scenes draw from the `tiny_gpt2_dir` checkpoint of conftest.py (made by
transformers with a fixed seed), so the pictures are deterministic. The frames need only
what `make setup` installs (fonts-cmu, LaTeX), no network, no model download.

To regenerate the control data after an intended change to how a scene looks:

    .venv/bin/python -m pytest tests/test_golden_frames.py --regenerate-golden

Regeneration renders each scene twice and stores the frame only if both renders are
identical (a frame that is not reproducible would make a flaky golden test). Look at the
new frames before you commit them; this writes them as PNGs:

    PYTHONPATH=. .venv/bin/python tests/test_golden_frames.py --show DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mla_core.scene_data import MANIFEST_DIR_ENV
from mla_core.scene_data.params import PARAMS_ENV, VideoParams
from mla_core.scene_data.store import CACHE_DIR_ENV

CONTROL_DIR = Path(__file__).resolve().parent / "control_data" / "golden"

# The tolerance, calibrated on these scenes at 320x180. The same software renders identical
# frames (regeneration checks it). Recolouring Hook's "56.9x" headline changes only 0.48% of
# the pixels (mean |diff| 0.24), so the second bound must be well below 0.5%. Moving
# everything by 0.1 pixel already gives a mean |diff| of 0.8-1.4 and 0.12-0.18% of pixels
# off: the bounds absorb a few differently anti-aliased edges, not another rasteriser, so
# the control data belongs to the pinned stack (manim, Debian 12's Cairo and Pango, fonts-cmu)
# and is regenerated when that changes.
MAX_MEAN_ABS_DIFF = 1.0  # grey levels (0..255), averaged over every pixel and channel
OFF_BY = 32  # a pixel is "off" when a channel differs by more than this
MAX_FRACTION_OFF = 0.001  # of all pixels (57 of 320x180)

# Fixed parameters for every golden frame (the weights are filled in per test).
GOLDEN_PARAMS = VideoParams(
    quality="low",
    prompt=" The American flag is red, white, and",
    device="cpu",
    heads="auto",
    show_bos=False,
    top_k=5,
    new_tokens=4,
)


@dataclass(frozen=True)
class Golden:
    scene: str  # class name
    module: str
    gpt2: bool = False  # draws from a GPT-2 (then the tiny test checkpoint)
    overrides: tuple[tuple[str, object], ...] = ()  # GOLDEN_PARAMS changed for this scene

    def params(self, weights: str) -> VideoParams:
        return VideoParams(
            **{**GOLDEN_PARAMS.as_dict(), "weights": weights, **dict(self.overrides)}
        )


GOLDEN = (
    Golden("Hook", "scenes.hook"),
    Golden("CacheSizePerToken", "scenes.cache_size_per_token"),
    Golden("NextToken", "scenes.next_token", gpt2=True),
    # Named heads: "auto" scores heads on a reference text longer than the tiny model's context.
    Golden("AttentionPatterns", "scenes.attention_patterns", True, (("heads", "0.1,0.3,1.0,1.2"),)),
    # 4 heads: MHA, GQA-2 and MQA (the demo model's 3 heads have no GQA)
    Golden("SharingKeysValues", "scenes.sharing_keys_values", True, (("heads", "1.2"),)),
    Golden("Absorption", "scenes.absorption", True, (("heads", "1.2"), ("latent_rank", 6))),
    Golden("DecoupledRope", "scenes.decoupled_rope"),
    Golden("Results", "scenes.results"),
    Golden("Closing", "scenes.closing"),
    Golden("LatentKV", "scenes.latent_kv", True, (("heads", "1.2"),)),
    Golden("LatentRankSweep", "scenes.latent_rank_sweep", True, (("heads", "1.2"),)),
)


@dataclass(frozen=True)
class FrameDiff:
    mean_abs: float  # mean |actual - expected| over pixels and channels
    fraction_off: float  # fraction of pixels with a channel off by more than OFF_BY
    max_abs: int

    @property
    def ok(self) -> bool:
        return self.mean_abs < MAX_MEAN_ABS_DIFF and self.fraction_off < MAX_FRACTION_OFF

    def __str__(self) -> str:
        return (
            f"mean |diff| {self.mean_abs:.3f} (allowed < {MAX_MEAN_ABS_DIFF}), "
            f"{self.fraction_off:.3%} of pixels off by > {OFF_BY} "
            f"(allowed < {MAX_FRACTION_OFF:.1%}), max |diff| {self.max_abs}"
        )


def compare_frames(actual: np.ndarray, expected: np.ndarray) -> FrameDiff:
    """How far a rendered RGB frame is from the stored one (same shape, uint8)."""
    if actual.shape != expected.shape:
        raise AssertionError(f"frame shape {actual.shape} != stored {expected.shape}")
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    return FrameDiff(
        mean_abs=float(diff.mean()),
        fraction_off=float((diff.max(axis=-1) > OFF_BY).mean()),
        max_abs=int(diff.max()),
    )


def control_path(scene: str) -> Path:
    return CONTROL_DIR / f"{scene}.npz"


def load_control(scene: str) -> np.ndarray:
    path = control_path(scene)
    if not path.is_file():
        raise AssertionError(
            f"no control data {path}; make it with "
            "`pytest tests/test_golden_frames.py --regenerate-golden`"
        )
    with np.load(path, allow_pickle=False) as npz:
        return npz["frame"]


def save_control(scene: str, frame: np.ndarray, params: VideoParams) -> Path:
    """Store a frame (compressed), with what made it, written to a temp file and renamed."""
    import manim

    path = control_path(scene)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "scene": scene,
        "shape": list(frame.shape),
        "params": {**params.as_dict(), "weights": "tiny_gpt2_dir" if params.weights else ""},
        "manim": manim.__version__,
    }
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, frame=frame, meta_json=np.array(json.dumps(meta, sort_keys=True)))
    tmp.replace(path)
    return path


def save_png(frame: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(frame).save(path)
    return path


# --- rendering ----------------------------------------------------------------------------


def render_golden(
    golden: Golden, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights: str
) -> np.ndarray:
    """The scene's final frame at 320x180, with GOLDEN_PARAMS and a private data cache."""
    from helpers import render_final_frame

    monkeypatch.setenv(PARAMS_ENV, golden.params(weights).to_json())
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "scene_data"))
    monkeypatch.delenv(MANIFEST_DIR_ENV, raising=False)
    module = __import__(golden.module, fromlist=[golden.scene])
    _, frame = render_final_frame(getattr(module, golden.scene), tmp_path / "media")
    return np.ascontiguousarray(frame)


@pytest.fixture(scope="module")
def golden_gpt2_dir(tiny_gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conftest's tiny GPT-2 copied to a folder with a fixed name: the scenes' caption names
    the model's folder, and pytest numbers its temp folders."""
    folder = tmp_path_factory.mktemp("golden") / "tiny-gpt2"
    shutil.copytree(tiny_gpt2_dir, folder)
    return folder


@pytest.fixture
def weights_for(request):
    """Golden -> the weights folder its scene uses ("" when it draws no GPT-2)."""

    def weights(golden: Golden) -> str:
        return str(request.getfixturevalue("golden_gpt2_dir")) if golden.gpt2 else ""

    return weights


@pytest.mark.slow
@pytest.mark.parametrize("golden", GOLDEN, ids=[g.scene for g in GOLDEN])
def test_final_frame_matches_the_control_data(golden, tmp_path, monkeypatch, weights_for, request):
    weights = weights_for(golden)
    frame = render_golden(golden, tmp_path / "a", monkeypatch, weights)
    if request.config.getoption("--regenerate-golden"):
        again = render_golden(golden, tmp_path / "b", monkeypatch, weights)
        assert np.array_equal(frame, again), (
            f"{golden.scene}: two renders differ ({compare_frames(frame, again)}); "
            "a frame that is not reproducible cannot be a golden frame"
        )
        save_control(golden.scene, frame, golden.params(weights))
    expected = load_control(golden.scene)
    diff = compare_frames(frame, expected)
    if not diff.ok:
        actual_png = save_png(frame, tmp_path / f"{golden.scene}-actual.png")
        delta = np.abs(frame.astype(np.int16) - expected.astype(np.int16)).max(axis=-1)
        diff_png = save_png(
            np.clip(delta * 4, 0, 255).astype(np.uint8), tmp_path / f"{golden.scene}-diff.png"
        )
        pytest.fail(
            f"{golden.scene}: final frame differs from {control_path(golden.scene)}: {diff}. "
            f"Rendered: {actual_png}, difference x4: {diff_png}. If the change is intended, "
            "run `pytest tests/test_golden_frames.py --regenerate-golden` and look at the frames."
        )


@pytest.mark.slow
def test_a_changed_colour_fails_the_comparison(tmp_path, monkeypatch):
    """The golden test can fail: Hook with its MLA colour changed (purple -> teal) is out of
    tolerance of its control frame."""
    import scenes.hook
    from scenes.components import KEY

    monkeypatch.setattr(scenes.hook, "LATENT", KEY)
    frame = render_golden(GOLDEN[0], tmp_path, monkeypatch, weights="")
    diff = compare_frames(frame, load_control("Hook"))
    assert not diff.ok, f"a recoloured headline still passes: {diff}"


def test_comparison_tolerates_noise_but_not_a_change():
    rng = np.random.default_rng(0)
    expected = rng.integers(0, 256, size=(180, 320, 3), dtype=np.uint8)
    assert compare_frames(expected, expected) == FrameDiff(0.0, 0.0, 0)
    # anti-aliasing-like noise: +-1 grey level everywhere, 0.05% of pixels very different
    noisy = np.clip(expected.astype(int) + rng.integers(-1, 2, size=expected.shape), 0, 255)
    flipped = rng.random(expected.shape[:2]) < 0.0005
    noisy[flipped] = 255 - noisy[flipped]
    assert compare_frames(noisy.astype(np.uint8), expected).ok
    # one 20x10 block of another colour (0.35% of the frame)
    changed = expected.copy()
    changed[10:20, 10:30] = (101, 200, 208)
    assert not compare_frames(changed, expected).ok
    with pytest.raises(AssertionError, match="shape"):
        compare_frames(expected[:-1], expected)


def test_control_data_is_small_uint8_frames():
    for golden in GOLDEN:
        path = control_path(golden.scene)
        assert path.stat().st_size < 200_000, f"{path} is {path.stat().st_size} bytes"
        with np.load(path, allow_pickle=False) as npz:
            frame = npz["frame"]
            meta = json.loads(str(npz["meta_json"]))
        assert frame.dtype == np.uint8 and frame.shape == (180, 320, 3)
        assert meta["scene"] == golden.scene


if __name__ == "__main__":  # write the stored frames as PNGs to look at them
    if len(sys.argv) != 3 or sys.argv[1] != "--show":
        sys.exit("usage: PYTHONPATH=. python tests/test_golden_frames.py --show DIR")
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for golden in GOLDEN:
        print(save_png(load_control(golden.scene), out / f"{golden.scene}.png"))
