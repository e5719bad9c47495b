"""What one training run is: its settings, and the learning rate at each step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class OptimizerSettings(Protocol):
    """What the schedule and the optimizer read from a run's settings (any model's run)."""

    steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    fused_adamw: bool


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
    random_repeat_fraction: float = 0.0  # share of windows that are random tokens repeated
    init_from: str = ""  # a GPT-2 folder whose weights the run starts from ("" = random init)


def learning_rate(step: int, s: OptimizerSettings) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` at the last step."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    progress = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class AblationSettings:
    """How every kind is trained (the demo GPT-2's recipe) and checked."""

    steps: int = 2000
    batch_size: int = 4
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 1234  # initialisation and the batch of each step, the same for every kind
    split_seed: int = 1234  # the document split; 1234 is the demo GPT-2's
    val_fraction: float = 0.03  # the demo GPT-2's
    eval_every: int = 100  # steps between cheap validation checks (the curve)
    eval_windows: int = 24  # n_ctx windows per cheap check
    precision: str = "bf16"  # "bf16" autocast or "fp32"
    compile: bool = True  # torch.compile forward + loss as one graph
    fused_adamw: bool = True
