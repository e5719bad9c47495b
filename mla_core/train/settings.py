"""What one training run is: its settings, and the learning rate at each step."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    n_ctx: int
    n_layer: int
    n_head: int
    n_embd: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    val_fraction: float
    seed: int
    eval_every: int
    eval_windows: int
    precision: str  # "bf16" (autocast) or "fp32"
    position_init: str = "normal"  # "normal" (GPT-2's N(0, 0.02)) or "sinusoidal"
    repeat_fraction: float = 0.0  # share of windows with a span of their own text repeated
    position_std: float = 0.02  # std of the sinusoidal position init (GPT-2's init is 0.02)
    fused_adamw: bool = False  # torch's fused AdamW kernel: same maths, fewer passes over memory
    compile: bool = False  # torch.compile the forward and the loss together (same maths, faster)


def learning_rate(step: int, s: TrainSettings) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` at the last step."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    progress = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))
