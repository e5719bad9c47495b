"""Bad input through the render commands is one line and exit 2; no broken or half-written
file is ever taken for a good one; two renders of one scene at once both succeed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from helpers import TINY_GPT2, make_hf_gpt2_checkpoint, run_render
from safetensors.torch import load_file, save_file

import render
from mla_core.errors import UserError
from mla_core.loading.weights import load_gpt2_from_dir, resolve_weights
from mla_core.rendering.manifest import is_up_to_date, manifest_path
from mla_core.rendering.manim_job import run_manim
from mla_core.scene_data.params import MAX_NEW_TOKENS, MAX_TOP_K, load_params
from scenes import TEST_CARD, find_scene

REPO = Path(__file__).resolve().parent.parent


def error_lines(stderr: str) -> list[str]:
    """stderr without the line that says which weights "auto" chose (the demo model here: the
    tests run with HF_HUB_OFFLINE=1): bad input must still be exactly one more line."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("weights: ")]


def run_render_slow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_render(*args, cwd=cwd, timeout=300)  # the model is loaded before failing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["still", "NextToken", "--set", "top_k=100000"], "top_k=100000 is not allowed"),
        (["still", "KVCacheGrowth", "--set", "new_tokens=500"], "new_tokens=500 is not allowed"),
        (["still", "AttentionPatterns", "--set", "heads=9.9"], "heads: layer 9 is out of range"),
        (["still", "NextToken", "--set", "device=tpu"], "device 'tpu' is not allowed"),
        (["still", "NextToken", "--set", "prompt= a b c d e f g h i j k l m n"], "tokens long"),
        (["still", "NextToken", "--set", "weights=/nonexistent"], "/nonexistent"),
        (["still", "NextToken", "--jobs", "0"], "--jobs 0 must be >= 1"),
        (["render", "Hook", "--set", "latent_rank=-1"], "latent_rank=-1"),
    ],
)
def test_bad_parameters_through_the_render_commands_are_one_line(tmp_path, args, message):
    result = run_render_slow("--media-dir", str(tmp_path / "media"), *args, cwd=tmp_path)
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "figures").exists()


def test_a_media_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "media").write_text("not a folder")
    result = run_render_slow("--media-dir", str(tmp_path / "media"), "render", "Hook", cwd=tmp_path)
    assert result.returncode == 2
    assert "is a file, not a folder" in result.stderr and len(result.stderr.splitlines()) == 1


def test_bounds_are_stated(tmp_path):
    with pytest.raises(UserError, match=f"use 1..{MAX_TOP_K}"):
        load_params(None, {"top_k": str(MAX_TOP_K + 1)})
    with pytest.raises(UserError, match=f"use 1..{MAX_NEW_TOKENS}"):
        load_params(None, {"new_tokens": str(MAX_NEW_TOKENS + 1)})
    assert load_params(None, {"top_k": str(MAX_TOP_K)}).top_k == MAX_TOP_K


@pytest.mark.slow
def test_bad_input_met_inside_manim_is_the_same_one_line(tmp_path):
    """Without render.py's check beforehand, the scene's UserError still comes back as a
    UserError, not as manim's traceback."""
    params = load_params(None, {"heads": "9.9"})
    scene = find_scene("AttentionPatterns")
    quality = render.QUALITIES["low"]
    with pytest.raises(UserError, match="heads: layer 9 is out of range"):
        run_manim(scene, quality, tmp_path / "media", params, still=True)


@pytest.mark.slow
def test_a_truncated_video_or_a_corrupt_manifest_is_rendered_again(tmp_path, capsys):
    quality = render.QUALITIES["low"]
    media = tmp_path / "media"
    params = load_params()
    (path,) = render.render_scenes([TEST_CARD], quality, params, media)
    assert is_up_to_date(path, params, quality)
    assert not list(path.parent.glob("*-rendering*"))  # the temporary name is gone
    good = path.read_bytes()

    path.write_bytes(good[:48])  # what an interrupted write used to leave
    assert not is_up_to_date(path, params, quality)
    capsys.readouterr()
    render.render_scenes([TEST_CARD], quality, params, media)
    assert "unchanged" not in capsys.readouterr().out
    assert is_up_to_date(path, params, quality)

    manifest = manifest_path(path)
    stored = manifest.read_bytes()
    for corrupt in (b"\xff\xfe not utf-8", b"[1, 2]", b"{}"):
        manifest.write_bytes(corrupt)
        assert not is_up_to_date(path, params, quality)
    bad_shape = json.loads(stored)
    bad_shape["fingerprint"] = "not an object"
    manifest.write_text(json.dumps(bad_shape))
    assert not is_up_to_date(path, params, quality)


@pytest.mark.slow
def test_two_renders_of_one_scene_at_once_both_succeed(tmp_path):
    quality = render.QUALITIES["low"]
    media = tmp_path / "media"
    params = load_params()
    errors: list[BaseException] = []

    def one() -> None:
        try:
            render.render_scenes([TEST_CARD], quality, params, media, force=True)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    path = render.video_path(TEST_CARD, quality, media)
    assert is_up_to_date(path, params, quality)


def test_the_package_runs_from_any_folder(tmp_path):
    """`make setup` puts the project on the venv's path, as `pip install -e .` would."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "mla_core", "cache", "--config", "deepseek-v3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "3,997,696" in result.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_embd": "abc"}, "n_embd='abc' must be a whole number > 0"),
        ({"n_head": None}, "n_head=None must be a whole number > 0"),
        ({"n_layer": -2}, "n_layer=-2 must be a whole number > 0"),
        ({"n_head": 5}, "n_embd=32 is not divisible by n_head=5"),
    ],
)
def test_a_broken_config_is_one_line(tmp_path, change, message):
    folder = make_hf_gpt2_checkpoint(tmp_path / "ckpt", seed=1, **TINY_GPT2)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        load_gpt2_from_dir(folder)


@pytest.mark.parametrize("how", ["integers", "nan"])
def test_weights_that_are_not_finite_floats_are_one_line(tmp_path, how):
    folder = make_hf_gpt2_checkpoint(tmp_path / "ckpt", seed=1, **TINY_GPT2)
    tensors = load_file(folder / "model.safetensors")
    name = next(k for k in tensors if k.endswith("wte.weight"))
    if how == "integers":
        tensors[name] = tensors[name].round().to(torch.int32)
        message = "has dtype torch.int32; want floats"
    else:
        tensors[name][0, 0] = float("nan")
        message = "holds NaN or infinite values"
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(UserError, match=message):
        load_gpt2_from_dir(folder)


def test_weights_errors_name_what_the_user_typed(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(UserError, match="is a symbolic link that loops"):
        resolve_weights(loop)
    with pytest.raises(UserError, match=r"^weights: weights folder .* does not exist"):
        resolve_weights(tmp_path / "missing", flag="weights")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "--out", "{dir}"], "is a folder; give a file name"),
        (["sweep", "--out", "{dir}/missing/s.json"], "does not exist"),
        (
            ["attention", "--prompt", " Hi", "--layer", "0", "--head", "0", "--out", "{dir}"],
            "is a folder; give a file name",
        ),  # fmt: skip
        (["deepseek-attention", "--out", "{dir}"], "is a folder; give a file name"),
        (["convert", "--rank", "8", "--out", "{file}"], "is a file, not a folder"),
        (["cache", "--config", "deepseek-v3", "--context", "9", "--memory-gb", "nan"], "finite"),
        (["deepseek-attention", "--tokens", "100000000"], "use 1..1024"),
    ],
)
def test_bad_outputs_and_numbers_on_the_commands_are_one_line(tmp_path, args, message):
    (tmp_path / "a-file").write_text("x")
    args = [a.format(dir=tmp_path, file=tmp_path / "a-file") for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "mla_core", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr[-1500:]
    assert len(lines) == 1 and message in lines[0], lines


def test_data_save_into_a_folder_is_one_line(tmp_path):
    result = run_render_slow("data", "CacheSizePerToken", "--save", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "is a folder; give a file name" in result.stderr
