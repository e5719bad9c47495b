"""Closing: each step of the path at DeepSeek-V3 dims against the formulas written out here."""

from __future__ import annotations

import pytest
from helpers import render_final_frame, shown_texts

from mla_core.scene_data.closing import closing
from mla_core.scene_data.params import PARAMS_ENV, load_params
from mla_core.scene_data.store import CACHE_DIR_ENV

LAYERS, HEADS, HEAD_DIM, GROUPS, D_C, D_R = 61, 128, 128, 8, 512, 64


def test_each_step_is_the_formula():
    data = closing(None)
    per_layer = {s["step"]: s["per_layer"] for s in data["steps"]}
    assert per_layer == {
        "mha": 2 * HEADS * HEAD_DIM,
        "gqa": 2 * GROUPS * HEAD_DIM,
        "latent": D_C,
        "absorbed": D_C,
        "rope": D_C + D_R,
    }
    assert per_layer["rope"] == 576
    per_token = [s["bytes_per_token"] for s in data["steps"]]
    assert per_token == [n * LAYERS * 2 for n in per_layer.values()]
    assert per_token == [3_997_696, 249_856, 62_464, 62_464, 70_272]
    assert data["naive_per_layer"] == HEADS * ((128 + 64) + 128) == 40_960
    assert f"{data['ratio']:.1f}" == "56.9"
    assert list(data["bytes_per_token"]) == per_token


@pytest.mark.slow
def test_scene_draws_every_step(tmp_path, monkeypatch):
    from scenes.closing import Closing

    monkeypatch.setenv(PARAMS_ENV, load_params(None, {"device": "cpu"}).to_json())
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "scene_data"))
    scene, _ = render_final_frame(Closing, tmp_path)
    shown = scene.shown_numbers
    assert shown["bytes_per_token"] == ["3,997,696", "249,856", "62,464", "62,464", "70,272"]
    assert shown["per_layer"][0] == "2 \u00d7 128 heads \u00d7 128 = 32,768"
    assert shown["per_layer"][-1] == "512 + 64 = 576"
    assert shown["ratio"] == "56.9\u00d7"
    texts = " | ".join(shown_texts(scene))
    for value in [*shown["bytes_per_token"], *shown["per_layer"], "56.9\u00d7"]:
        assert value in texts
