"""Absorption, checked on one head of a GPT-2 converted to MLA: both ways to score a key.

For a query q (D) and a cached latent c_KV (r) of head i (`models.gpt2_to_mla`):

    naive:     k = W_UK c_KV + b_K            (D)  expanded for every head and cached token
               score = q . k
    absorbed:  q_latent = W_UK^T q            (r)  once per query
               score = q_latent . c_KV + q . b_K    straight from the cache

(W_UQ c_Q is GPT-2's plain W_Q x + b_Q here: the converted model compresses only keys and
values.) The two are the same number up to rounding; `max_abs_diff` measures how far apart
the computed values are in the model's own dtype (run the model in float64 for ~1e-15).

`expansion_sizes` says what the naive path would build per cached token and layer: H keys
and H values of width D, against the r numbers that are cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mla_core.errors import UserError, check_layer_head
from mla_core.models.configs import GPT2Config
from mla_core.models.gpt2 import GPT2
from mla_core.models.gpt2_to_mla import LatentAttention


@dataclass
class AbsorptionCheck:
    """One head's scores both ways, before the 1/sqrt(D) scale and the mask. float64 arrays
    holding the values computed in `dtype`. T tokens, D head width, r latent width."""

    layer: int
    head: int
    dtype: str  # the dtype the model computed in, e.g. "float64"
    q: np.ndarray  # (T, D)
    k: np.ndarray  # (T, D) naive path: W_UK c_KV + b_K
    c_kv: np.ndarray  # (T, r) the cached latents
    q_latent: np.ndarray  # (T, r) = W_UK^T q
    b_k: np.ndarray  # (D,)
    w_uk: np.ndarray  # (D, r)
    dots_naive: np.ndarray  # (T, T) q . k
    dots_absorbed: np.ndarray  # (T, T) q_latent . c_KV + q . b_K
    bias_part: np.ndarray  # (T,) q . b_K: the same for every key of a query

    @property
    def max_abs_diff(self) -> float:
        """max |naive - absorbed| over every query and key."""
        return float(np.max(np.abs(self.dots_naive - self.dots_absorbed)))


@torch.no_grad()
def absorption_check(model: GPT2, token_ids: list[int], layer: int, head: int) -> AbsorptionCheck:
    """Both score computations of one head of a converted GPT-2 on `token_ids`, in the
    model's dtype."""
    config = model.config
    check_layer_head(layer, head, config.n_layer, config.n_head)
    attn = model.h[layer].attn
    if not isinstance(attn, LatentAttention):
        raise UserError("this GPT-2 is not converted to MLA: use gpt2_to_mla.convert_gpt2 first")
    capture: list[dict[str, torch.Tensor]] = []
    model(torch.tensor([token_ids], device=model.wte.weight.device), capture=capture)
    record = capture[layer]
    q = record["q"][0, head]  # (T, D)
    k = record["k"][0, head]  # (T, D) from the naive expand_kv
    c_kv = record["c_kv"][0]  # (T, r)
    q_latent = torch.einsum("sd,dc->sc", q, attn.w_uk[head])  # (T, r) = W_UK^T q
    bias_part = q @ attn.b_k[head]  # (T,)
    naive = q @ k.T  # (T, T)
    absorbed = q_latent @ c_kv.T + bias_part[:, None]

    def out(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy()

    return AbsorptionCheck(
        layer=layer,
        head=head,
        dtype=str(q.dtype).removeprefix("torch."),
        q=out(q),
        k=out(k),
        c_kv=out(c_kv),
        q_latent=out(q_latent),
        b_k=out(attn.b_k[head]),
        w_uk=out(attn.w_uk[head]),
        dots_naive=out(naive),
        dots_absorbed=out(absorbed),
        bias_part=out(bias_part),
    )


def expansion_sizes(config: GPT2Config, rank: int) -> dict[str, int]:
    """Numbers per cached token and layer: the latent that is cached (r), and what the naive
    path would expand it into (H keys and H values of width D)."""
    per_side = config.n_head * config.head_dim
    return {
        "latent": rank,
        "keys": per_side,
        "values": per_side,
        "expanded": 2 * per_side,
    }
