"""Every scene builds and renders its final frame in-process at low resolution.

Each frame must be neither blank nor cut off (every mobject inside the 16:9 frame), and the
numbers a scene prints must be the ones `mla_core` computes, checked against the paper's
cache formulas written out here independently.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest
from helpers import SMALL, render_final_frame, scene_class, shown_texts
from manim import Mobject
from manim import config as manim_config

from mla_core.analysis.paper_figures import GENERATION_THROUGHPUT_SPEEDUP
from mla_core.models.configs import DEEPSEEK_V3
from mla_core.narration import min_seconds
from scenes import STORY, TEST_CARD
from scenes import components as c

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Every story scene (and the test card) rendered once for this module."""
    out = {}
    for entry in (*STORY, TEST_CARD):
        out[entry.name] = render_final_frame(scene_class(entry), tmp_path_factory.mktemp("m"))
    return out


@pytest.mark.parametrize("name", [s.name for s in (*STORY, TEST_CARD)])
def test_final_frame_is_not_blank(rendered, name):
    _, frame = rendered[name]
    assert frame.shape == (SMALL["pixel_height"], SMALL["pixel_width"], 3)
    background = np.array(c._hex_to_rgb(c.BACKGROUND) * 255).round()
    differs = np.abs(frame.astype(int) - background).max(axis=-1) > 40
    assert differs.mean() > 0.005, f"{name}: only {differs.mean():.2%} of pixels are drawn"


@pytest.mark.parametrize("name", [s.name for s in (*STORY, TEST_CARD)])
def test_nothing_runs_off_the_frame(rendered, name):
    scene, _ = rendered[name]
    half_w, half_h = c.FRAME_WIDTH / 2, c.FRAME_HEIGHT / 2
    assert manim_config.frame_height == pytest.approx(c.FRAME_HEIGHT)
    for mob in scene.mobjects:
        assert isinstance(mob, Mobject)
        left, right = mob.get_left()[0], mob.get_right()[0]
        bottom, top = mob.get_bottom()[1], mob.get_top()[1]
        inside = -half_w <= left and right <= half_w and -half_h <= bottom and top <= half_h
        assert inside, (
            f"{name}: {type(mob).__name__} spans x {left:.2f}..{right:.2f}, "
            f"y {bottom:.2f}..{top:.2f}, outside the frame"
        )
        assert mob.get_top()[1] <= c.TITLE_ZONE.top + 1e-6
        assert mob.get_bottom()[1] >= c.CAPTION_ZONE.bottom - 1e-6


def test_story_scenes_are_importable_and_unique():
    names = [s.name for s in STORY]
    assert len(names) == len(set(names))
    for entry in STORY:
        assert entry.path.is_file(), entry.path
        assert scene_class(entry).__name__ == entry.name


# --- the numbers on screen ----------------------------------------------------------------


def paper_formula_bytes(kind: str, cfg=DEEPSEEK_V3, dtype_bytes: int = 2, groups: int = 8) -> int:
    """DeepSeek-V2 paper Table 1, written out here as an independent oracle."""
    per_layer = {
        "MHA": 2 * cfg.n_heads * cfg.v_head_dim,
        f"GQA-{groups}": 2 * groups * cfg.v_head_dim,
        "MQA": 2 * cfg.v_head_dim,
        "MLA": cfg.kv_lora_rank + cfg.qk_rope_head_dim,
    }[kind]
    return per_layer * cfg.n_layers * dtype_bytes


def test_cache_scene_shows_the_computed_numbers(rendered):
    scene, _ = rendered["CacheSizePerToken"]
    shown = scene.shown_numbers
    expected = {k: f"{paper_formula_bytes(k):,}" for k in ("MHA", "GQA-8", "MQA", "MLA")}
    assert shown["bytes_per_token"] == expected
    # the values REFERENCE.md lists
    assert expected["MHA"] == "3,997,696" and expected["MLA"] == "70,272"
    ratio = paper_formula_bytes("MHA") / paper_formula_bytes("MLA")
    assert shown["mla_ratio"] == f"{ratio:.1f}\u00d7" == "56.9\u00d7"
    at_100k = {k: paper_formula_bytes(k) * 100_000 / 1e9 for k in expected}
    assert shown["cache_at_100000_tokens"] == {k: f"{v:.1f} GB" for k, v in at_100k.items()}
    texts = shown_texts(scene)
    for value in [*expected.values(), *shown["cache_at_100000_tokens"].values()]:
        assert value in texts, f"{value} is not drawn"
    assert any(shown["mla_ratio"] in t for t in texts)


@pytest.mark.parametrize("name", [s.name for s in STORY])
def test_every_story_scene_narrates_at_a_calm_pace(rendered, name):
    """Each scene speaks in beats; a beat lasts at least as long as its line needs, and the
    beats follow one another without overlapping."""
    scene, _ = rendered[name]
    assert scene.narration, f"{name} has no narration"
    previous_end = 0.0
    for beat in scene.narration:
        assert beat["line"].strip()
        assert beat["start"] >= previous_end - 1e-6
        assert beat["end"] - beat["start"] >= min_seconds(beat["line"]) - 1e-3
        previous_end = beat["end"]


def test_the_spoken_cache_ratio_is_the_computed_one(rendered):
    """Narration numbers come from the same data as the numbers on screen (both scenes)."""
    ratio = paper_formula_bytes("MHA") / paper_formula_bytes("MLA")
    for name in ("Hook", "CacheSizePerToken"):
        spoken = " ".join(b["line"] for b in rendered[name][0].narration)
        assert f"{ratio:.1f} times" in spoken, name
    hook = " ".join(b["line"] for b in rendered["Hook"][0].narration)
    assert f"{paper_formula_bytes('MLA'):,} bytes per token" in hook


def test_hook_shows_the_computed_and_cited_numbers(rendered):
    scene, _ = rendered["Hook"]
    shown = scene.shown_numbers
    mha, mla = paper_formula_bytes("MHA"), paper_formula_bytes("MLA")
    assert shown["cache_ratio"] == f"{mha / mla:.1f}\u00d7"
    assert shown["mha_bytes_per_token"] == f"{mha:,}"
    assert shown["mla_bytes_per_token"] == f"{mla:,}"
    assert shown["throughput_speedup"] == f"{GENERATION_THROUGHPUT_SPEEDUP.value:.2f}\u00d7"
    texts = " | ".join(shown_texts(scene))
    for value in shown.values():
        assert value in texts
    assert GENERATION_THROUGHPUT_SPEEDUP.arxiv in texts  # the cited figure names its source


# --- components -----------------------------------------------------------------------------


def test_manim_cfg_uses_the_palette_background():
    parser = configparser.ConfigParser()
    parser.read(REPO / "manim.cfg")
    assert parser["CLI"]["background_color"].lower() == c.BACKGROUND.lower()


def test_number_formatting():
    assert c.fmt_int(3997696) == "3,997,696"
    assert c.fmt_int(-1200) == "\u22121,200"
    assert c.fmt_bytes(70_272) == "70.3 KB"
    assert c.fmt_bytes(399_769_600_000) == "399.8 GB"
    assert c.fmt_bytes(512) == "512 bytes"
    assert c.fmt_ratio(56.888) == "56.9\u00d7"
    assert c.fmt_percent(0.98242) == "98.2%"


def test_color_scale_is_fixed_and_clipped():
    scale = c.PATTERN_SCALE
    low, high = scale.rgba_uint8(np.array([0.0, 1.0]))
    assert tuple(low[:3]) == tuple(np.round(c._hex_to_rgb(scale.colors[0]) * 255).astype(int))
    assert tuple(high[:3]) == tuple(np.round(c._hex_to_rgb(scale.colors[-1]) * 255).astype(int))
    # no per-image normalisation: a half-scale array does not reach the top colour
    half = scale.rgba_uint8(np.full((2, 2), 0.5))
    assert not np.array_equal(half[0, 0], high)
    assert np.array_equal(scale.rgba_uint8(np.array([2.0]))[0], high)  # clipped
    div = c.diverging_scale(3.0)
    assert div.vmin == -3.0 and div.vmax == 3.0
    mid = div.rgb(np.array([0.0]))[0]
    assert np.allclose(mid, c._hex_to_rgb(div.colors[len(div.colors) // 2]))


def test_heatmap_is_one_nearest_neighbour_image(tmp_path):
    values = np.arange(12, dtype=float).reshape(3, 4) / 11
    heatmap = c.Heatmap(values, c.PATTERN_SCALE, cell_size=0.5, row_labels=list("abc"))
    assert heatmap.image.pixel_array.shape[:2] == (3, 4)
    assert heatmap.image.width == pytest.approx(2.0)
    assert heatmap.image.height == pytest.approx(1.5)
    # cell (2, 3) sits at the bottom right of the image
    center = heatmap.cell_center(2, 3)
    assert center[0] == pytest.approx(heatmap.image.get_right()[0] - 0.25)
    assert center[1] == pytest.approx(heatmap.image.get_bottom()[1] + 0.25)
    box = heatmap.highlight_row(1)
    assert box.width == pytest.approx(2.0) and box.height == pytest.approx(0.5)


def test_bar_chart_lengths_follow_the_values():
    linear = c.HBarChart([4.0, 1.0], ["a", "b"], length=8.0)
    assert linear.bars[0].width == pytest.approx(8.0)
    assert linear.bars[1].width == pytest.approx(2.0)
    log = c.HBarChart([1e6, 1e4], ["a", "b"], scale="log", length=6.0, log_floor=1e3)
    assert log.bar_length(1e6) == pytest.approx(6.0)
    assert log.bar_length(1e4) == pytest.approx(2.0)


def test_matrix_block_elides_big_matrices():
    block = c.MatrixBlock(np.arange(9 * 64, dtype=float).reshape(9, 64), show_rows=4, show_cols=4)
    glyphs = [e.original_text for e in block.entries]
    assert len(glyphs) == 16
    assert glyphs[0] == "0.00" and glyphs[-1] == f"{9 * 64 - 1:.2f}"
    assert "\u22ee" in glyphs and "\u22ef" in glyphs and "\u22f1" in glyphs
    assert block.shape.original_text == "9 \u00d7 64"


def test_caption_that_would_be_illegible_is_refused():
    with pytest.raises(ValueError, match="too long"):
        c.caption("x" * 400)


def test_token_strip_draws_the_tokenizers_labels():
    from mla_core.loading.tokenizer import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    labels = tokenizer.display_tokens(tokenizer.encode(" The American flag is red, white, and"))
    strip = c.TokenStrip(labels)
    assert [t.original_text for t in strip.texts] == labels
    assert labels[0] == "\u2423The"
    assert strip.width <= c.CONTENT_ZONE.width + 1e-6


def test_scene_record_holds_the_numbers_on_screen_and_their_provenance(rendered, tmp_path):
    import json

    scene, _ = rendered["CacheSizePerToken"]
    path = c.write_scene_record(scene, tmp_path)
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["scene"] == "CacheSizePerToken"
    assert record["shown_numbers"]["bytes_per_token"]["MLA"] == f"{paper_formula_bytes('MLA'):,}"
    assert record["provenance"]["computed_by"] == "mla_core.analysis.cache_size"
    assert record["params"] == scene.params.as_dict()
    assert "scenes/cache_size_per_token.py" in record["source_files"]
    assert "mla_core/analysis/cache_size.py" in record["source_files"]
