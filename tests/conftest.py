"""Shared pytest fixtures: small GPT-2 checkpoints made by an independent implementation.

Every checkpoint here is written by `transformers.GPT2LMHeadModel.save_pretrained` (the
oracle), never by `mla_core`, with a fixed seed and EVERY parameter drawn at random
(biases and LayerNorm too, so that a loader that forgets one of them fails a test).

Fixtures (session-scoped: built once per test run):
- `tiny_gpt2_dir`: Path of a folder (config.json + model.safetensors, `transformer.` keys)
  with a tiny GPT-2: real 50257-token vocabulary (so real prompts work), n_ctx 64,
  n_embd 32, 2 layers, 4 heads. ~6.5 MB, under a second to make.
- `tiny_gpt2_official_dir`: the same weights in the layout of the official `gpt2` files
  (no `transformer.` prefix, with the `attn.bias` mask buffers).
- `small_gpt2_dir`: a GPT-2-small-shaped checkpoint (124M random weights, ~500 MB in a temp
  dir, a few seconds): use sparingly and mark such tests `@pytest.mark.slow`.
- `load_oracle(folder)`: a function fixture that loads a folder with transformers (eager
  attention, so it can return attention patterns), in eval mode.
- `edited_checkpoint(edit)`: a function fixture; copies `tiny_gpt2_dir` into a fresh temp folder
  after `edit(tensors: dict[str, Tensor])` changed the tensors in place (for broken checkpoints).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import SMALL_GPT2, TINY_GPT2, make_hf_gpt2_checkpoint

# No test goes to the Hugging Face hub or reads the user's Hugging Face cache: set before
# anything imports huggingface_hub, and inherited by every process a test starts, so weights
# = "auto" goes straight to the demo model without a network attempt (or a timeout to wait
# for). tests/test_auto_weights.py serves its own hub where it needs one.
os.environ["HF_HUB_OFFLINE"] = "1"
HF_TEST_CACHE = tempfile.mkdtemp(prefix="mla-tests-hf-hub-")
os.environ["HF_HUB_CACHE"] = HF_TEST_CACHE
os.environ.pop("MLA_GPT2_AUTO_CHOICE", None)  # a render.py's answer to "auto" is not ours


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(HF_TEST_CACHE, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def keep_out_of_the_users_work(tmp_path_factory: pytest.TempPathFactory):
    """Tests never touch the user's media/ or .cache/: every manim folder and the scene-data
    cache point into a temporary folder for the whole run (a user's `make video` before
    `make test` leaves folders there that a test render would trip over)."""
    from manim import config as manim_config

    from mla_core.scene_data.store import CACHE_DIR_ENV

    work = tmp_path_factory.mktemp("user_work")
    saved = {key: manim_config[key] for key in ("media_dir", "tex_dir", "text_dir")}
    manim_config.media_dir = str(work / "media")
    manim_config.tex_dir = str(work / "media" / "Tex")
    manim_config.text_dir = str(work / "media" / "texts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(work / "scene_data"))
        yield work
    for key, value in saved.items():
        manim_config[key] = value


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regenerate-golden",
        action="store_true",
        default=False,
        help="rewrite the golden frames in tests/control_data/ (tests/test_golden_frames.py)",
    )


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hf_gpt2_checkpoint(tmp_path_factory.mktemp("tiny_gpt2"), seed=1234, **TINY_GPT2)


@pytest.fixture(scope="session")
def tiny_gpt2_official_dir(tiny_gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("tiny_gpt2_official")
    tensors = load_file(tiny_gpt2_dir / "model.safetensors")
    official = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    n_ctx = TINY_GPT2["n_positions"]
    mask = torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.uint8)).view(1, 1, n_ctx, n_ctx)
    for layer in range(TINY_GPT2["n_layer"]):
        official[f"h.{layer}.attn.bias"] = mask.float()
        official[f"h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(official, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_bytes((tiny_gpt2_dir / "config.json").read_bytes())
    return folder


@pytest.fixture(scope="session")
def small_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hf_gpt2_checkpoint(
        tmp_path_factory.mktemp("small_gpt2"), seed=124, std=0.02, **SMALL_GPT2
    )


@pytest.fixture(scope="session")
def load_oracle() -> Callable[[Path], torch.nn.Module]:
    from transformers import GPT2LMHeadModel

    def load(folder: Path) -> torch.nn.Module:
        return GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()

    return load


@pytest.fixture
def edited_checkpoint(
    tiny_gpt2_dir: Path, tmp_path: Path
) -> Callable[[Callable[[dict[str, torch.Tensor]], None]], Path]:
    from safetensors.torch import load_file, save_file

    def make(edit: Callable[[dict[str, torch.Tensor]], None]) -> Path:
        folder = tmp_path / f"edited_{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        tensors = load_file(tiny_gpt2_dir / "model.safetensors")
        edit(tensors)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        (folder / "config.json").write_bytes((tiny_gpt2_dir / "config.json").read_bytes())
        return folder

    return make
