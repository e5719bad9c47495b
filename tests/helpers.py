"""Helpers the tests share: checkpoints made by the oracle, in-process scene renders, and the
plain reference implementations that library code is compared against (they live here, not in
the modules under test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from manim import Text, tempconfig

from scenes import components as c

SMALL = {"pixel_width": 320, "pixel_height": 180, "frame_rate": 5}


TINY_GPT2 = dict(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=4)
SMALL_GPT2 = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)


def make_hf_gpt2_checkpoint(folder: Path, seed: int, std: float = 0.2, **config) -> Path:
    """Write a random GPT-2 with transformers' save_pretrained; every tensor random."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**config))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or "ln_f.w" in name:
                param.copy_(1.0 + std * torch.randn_like(param))  # keep LayerNorm gains near 1
            else:
                param.normal_(0.0, std)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def render_final_frame(scene_cls: type, tmp_path: Path):
    """Build the scene with animations skipped, render it, return (scene, RGB frame)."""
    settings = {
        **SMALL,
        "media_dir": str(tmp_path),
        "format": "none",
        "disable_caching": True,
        "background_color": c.BACKGROUND,
        "verbosity": "WARNING",
        "progress_bar": "none",
    }
    with tempconfig(settings):
        scene = scene_cls(skip_animations=True)
        scene.render()
        frame = scene.renderer.get_frame()[..., :3]
    return scene, frame


def scene_class(entry):
    module = __import__(entry.module, fromlist=[entry.name])
    return getattr(module, entry.name)


def shown_texts(scene) -> list[str]:
    return [
        m.original_text for top in scene.mobjects for m in top.get_family() if isinstance(m, Text)
    ]


def reference_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float
) -> torch.Tensor:
    """softmax(q k^T * scale) v for ONE query row, written the obvious way.

    q [d_k], keys [T, d_k], values [T, d_v] -> [d_v].
    """
    scores = keys @ q * scale
    weights = torch.exp(scores - scores.max())
    weights = weights / weights.sum()
    return weights @ values


def set_absorb(model, absorb: bool) -> None:
    """Switch every attention layer of a GPT-2 converted to MLA to the absorbed (or naive) path."""
    for block in model.h:
        block.attn.absorb = absorb


REPO = Path(__file__).resolve().parent.parent


def run_render(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """render.py as a user runs it, from a directory that is not the repository."""
    return subprocess.run(
        [sys.executable, str(REPO / "render.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# A made-up corpus for tiny training runs (test_train, test_ablation).

WORDS = (
    "the river town hill road north south market stone bridge school valley farm wheat "
    "apple station museum spring water old new small large year family people"
).split()


def made_up_documents(n_docs: int = 60) -> list:
    """Seeded sentences of common words: enough text for a few steps, no corpus package."""
    import numpy as np

    from mla_core.loading.corpus import Document

    rng = np.random.default_rng(0)
    docs = []
    for i in range(n_docs):
        sentences = [
            " ".join(rng.choice(WORDS, size=int(rng.integers(5, 12)))).capitalize() + "."
            for _ in range(int(rng.integers(3, 8)))
        ]
        docs.append(Document(title=f"Document {i:03d}", text=" ".join(sentences)))
    return docs
