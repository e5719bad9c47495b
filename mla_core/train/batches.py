"""The batch of each step: seeded windows of the token stream, some with a planted repeat.

Also the sinusoidal starting point of the learned position embedding.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def batch_for_step(
    ids: np.ndarray,
    step: int,
    batch_size: int,
    n_ctx: int,
    seed: int,
    repeat_fraction: float = 0.0,
    random_repeat_fraction: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of the token stream: inputs [B, T] and next-token targets [B, T].

    With `repeat_fraction` > 0, that share of the windows (on average) gets one span of its
    own text copied to a later place (`plant_repeat`). With `random_repeat_fraction` > 0,
    that share is replaced by a random token sequence repeated (`random_repeat_window`); the
    targets of its first copy are IGNORE_TARGET, as nothing can predict them.
    """
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(ids) - n_ctx - 1, size=batch_size)
    windows = np.stack([ids[s : s + n_ctx + 1] for s in starts]).astype(np.int64)
    if repeat_fraction > 0:
        for window in windows:
            if rng.random() < repeat_fraction:
                plant_repeat(window, rng)
    windows = torch.from_numpy(windows)
    inputs, targets = windows[:, :-1], windows[:, 1:].clone()
    if random_repeat_fraction > 0:
        # A stream of its own, so that the natural windows are the same with or without it.
        rng = np.random.default_rng([seed, step, 1])
        for row in range(batch_size):
            if rng.random() < random_repeat_fraction:
                window, first_copy = random_repeat_window(ids, n_ctx, rng)
                inputs[row] = torch.from_numpy(window[:-1])
                targets[row] = torch.from_numpy(window[1:])
                targets[row, :first_copy] = IGNORE_TARGET
    return inputs, targets


REPEAT_SPAN = (8, 128)  # shortest and longest repeated span, in tokens


def plant_repeat(window: np.ndarray, rng: np.random.Generator) -> None:
    """Copy a span of `window` over a later stretch of it, in place.

    Text repeats itself (names, phrases, quoted lines), and a model that notices "this came
    before, and what followed it then was B" can predict B again: the induction circuit, a
    previous-token head feeding an induction head (Olsson et al. 2022). Wikipedia lead
    sections are too short to repeat much, so some windows get one planted repeat. The span's
    length, source and destination are random, so no fixed positional offset predicts the
    copy: only looking up the earlier occurrence by content does.
    """
    n = len(window)
    length = int(rng.integers(REPEAT_SPAN[0], min(REPEAT_SPAN[1], n // 2) + 1))
    source = int(rng.integers(0, n - 2 * length + 1))
    target = int(rng.integers(source + length, n - length + 1))
    window[target : target + length] = window[source : source + length]


IGNORE_TARGET = -100  # F.cross_entropy's default ignore_index: no loss at this position
RANDOM_REPEAT_LENGTH = (8, 64)  # shortest and longest random sequence, in tokens


def random_repeat_window(
    ids: np.ndarray, n_ctx: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """A window of n_ctx + 1 tokens: L tokens drawn at random from the training stream (so
    with the corpus's own token frequencies, in no order), repeated until the window is full.
    Returns the window and L, the number of targets to ignore: nothing predicts the first copy
    or the first token of the second, but every later token is the one that followed the
    previous occurrence of the current token. Only an induction circuit predicts it (a
    previous-token head feeding a head that looks up "what came after this token before"),
    so a few such windows per batch reward that circuit directly, the way text with long
    verbatim repeats would. L is random, so no fixed positional offset does the job.
    """
    length = int(
        rng.integers(RANDOM_REPEAT_LENGTH[0], min(RANDOM_REPEAT_LENGTH[1], n_ctx // 2) + 1)
    )
    sequence = ids[rng.integers(0, len(ids), size=length)].astype(np.int64)
    return np.resize(sequence, n_ctx + 1), length


def sinusoidal_positions(n_ctx: int, n_embd: int, std: float = 0.02) -> torch.Tensor:
    """A starting point for the learned position embedding: the Transformer's sinusoids.

    Row p holds sin/cos of p at geometrically spaced frequencies (Vaswani et al. 2017), scaled
    to the std of GPT-2's initialisation. Position p - 1 is then a fixed rotation of position p,
    so an attention head can learn "look one token back" with one linear map instead of first
    discovering an ordering of 256 random vectors. The rows stay trainable, as in GPT-2.
    """
    position = torch.arange(n_ctx, dtype=torch.float64)[:, None]  # [T, 1]
    frequency = 10000.0 ** (-torch.arange(0, n_embd, 2, dtype=torch.float64) / n_embd)
    table = torch.zeros(n_ctx, n_embd, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return (table * std * math.sqrt(2.0)).float()  # sin and cos have RMS 1/sqrt(2)
