"""MLA built from GPT-2's own weights: one shared latent per token instead of 12 keys and values.

In a GPT-2 layer every head reads keys and values off the same input x (LayerNorm output):

    k = W_K x + b_K,   v = W_V x + b_V,   W_K, W_V: (C, C) = (n_heads * d_head, n_embd)

Stack them: W_KV = [W_K ; W_V] is (2C, C), so its rank is at most C = n_embd. Its singular
value decomposition W_KV = U S V^T, cut to the r largest singular values, gives

    W_DKV = V_r^T                       (r, C)    c_KV = W_DKV x: the latent, the only thing cached
    [W_UK ; W_UV] = U_r S_r = W_KV V_r  (2C, r)   re-expands every head's key and value from c_KV

the best rank-r approximation of W_KV (Eckart-Young). At r = C nothing is cut and the
layer is exactly GPT-2's again, while the cache holds C numbers per token and layer instead
of 2C: half of MHA, already exact. Ranks above C are impossible (there is nothing left
to keep), so they are refused.

Biases, exactly: b_K and b_V do not depend on the token, so they are kept as constants
added after the up-projection: k = W_UK c_KV + b_K, v = W_UV c_KV + b_V. (b_K only shifts
each query's scores by q . b_K, which softmax ignores; it is kept so that the scores
themselves, not just the pattern, equal GPT-2's.)

Absorption works as in DeepSeek's MLA (GPT-2 has no RoPE, so there is no RoPE part):
q . k = q . (W_UK c + b_K) = (W_UK^T q) . c + q . b_K; the query is moved into latent space
(`q_latent`, einsum "bhsd,hdc->bhsc") and scores come straight from the cached latents;
the pattern-weighted latent is expanded by W_UV afterwards (plus b_V: the pattern's rows
sum to 1).

`convert_gpt2(model, rank)` returns a GPT2 whose blocks use `LatentAttention`; everything
else (embeddings, LayerNorms, MLPs, head) is shared with the original, and the model keeps
GPT-2's forward, its `capture` lists and a `LatentKVCache` for decoding.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from mla_core.analysis.cache_size import CacheDims, bytes_per_token
from mla_core.atomic import write_atomically, write_text_atomically
from mla_core.errors import UserError
from mla_core.models.attention import causal_attention, causal_softmax
from mla_core.models.configs import GPT2Config
from mla_core.models.gpt2 import CAPTURED_NAMES, GPT2, CausalSelfAttention
from mla_core.models.kv_cache import LayerCache


def check_rank(rank: int, config: GPT2Config) -> int:
    """The latent rank, 1 <= r <= n_embd, or a one-line UserError saying why."""
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= config.n_embd:
        raise UserError(
            f"--rank {rank} is not allowed: use 1..{config.n_embd}. The stacked key/value "
            f"weights [W_K; W_V] ({2 * config.n_embd} x {config.n_embd}) have rank at most "
            f"n_embd={config.n_embd}, so a {config.n_embd}-dim latent is already exact"
        )
    return rank


# --- the factorisation --------------------------------------------------------------------


@dataclass
class KVSpectrum:
    """One layer's stacked key/value weights W_KV (2C, C) and their right singular vectors.

    W_KV = U diag(S) V^T; only V and S are needed: the rank-r factors are W_DKV = V_r^T and
    U_r S_r = W_KV V_r, so W_UKV W_DKV = W_KV V_r V_r^T, exactly W_KV at r = C. V and S^2
    are the eigenvectors and eigenvalues of W_KV^T W_KV (C x C, cheaper than the full SVD).
    All float64.
    """

    w_kv: torch.Tensor  # (2C, C) = [W_K ; W_V]
    s: torch.Tensor  # (C,) singular values, largest first
    v: torch.Tensor  # (C, C) right singular vectors as columns, in the order of s
    b_k: torch.Tensor  # (C,)
    b_v: torch.Tensor  # (C,)

    def energy_kept(self, rank: int) -> float:
        """Fraction of ||W_KV||_F^2 that the first `rank` singular values keep."""
        s2 = self.s.pow(2)
        return float(s2[:rank].sum() / s2.sum())


def kv_spectrum(attn: CausalSelfAttention) -> KVSpectrum:
    """The singular values and right singular vectors of a GPT-2 layer's [W_K ; W_V]."""
    n_embd = attn.c_proj.out_features
    weight = attn.c_attn.weight.detach().to(torch.float64)  # (3C, C): [W_Q; W_K; W_V]
    bias = attn.c_attn.bias.detach().to(torch.float64)
    w_kv = weight[n_embd:]  # (2C, C)
    eigenvalues, eigenvectors = torch.linalg.eigh(w_kv.T @ w_kv)  # ascending
    order = eigenvalues.flip(0).clamp_min(0)
    return KVSpectrum(
        w_kv, order.sqrt(), eigenvectors.flip(1), bias[n_embd : 2 * n_embd], bias[2 * n_embd :]
    )


# --- the attention layer --------------------------------------------------------------------


class LatentAttention(nn.Module):
    """GPT-2 attention whose keys and values come from a rank-r latent c_KV.

    Same call as `gpt2.CausalSelfAttention` (x, layer, kv_cache, capture), so it drops into
    a GPT-2 block. Tensors, with H heads of width D and C = H * D:

        w_q, b_q    (C, C), (C,)     GPT-2's query projection, unchanged
        w_dkv       (r, C)           x -> c_KV
        w_uk, w_uv  (H, D, r)        c_KV -> each head's key / value
        b_k, b_v    (H, D)           GPT-2's key / value biases, constants
        c_proj                       GPT-2's output projection W_O, unchanged
    """

    def __init__(self, config: GPT2Config, rank: int, absorb: bool = False) -> None:
        super().__init__()
        check_rank(rank, config)
        self.n_head, self.head_dim, self.rank, self.absorb = (
            config.n_head,
            config.head_dim,
            rank,
            absorb,
        )
        n_embd = config.n_embd
        self.w_q = nn.Linear(n_embd, n_embd)
        self.w_dkv = nn.Linear(n_embd, rank, bias=False)
        self.w_uk = nn.Parameter(torch.zeros(self.n_head, self.head_dim, rank))
        self.w_uv = nn.Parameter(torch.zeros(self.n_head, self.head_dim, rank))
        self.b_k = nn.Parameter(torch.zeros(self.n_head, self.head_dim))
        self.b_v = nn.Parameter(torch.zeros(self.n_head, self.head_dim))
        self.c_proj = nn.Linear(n_embd, n_embd)

    @classmethod
    @torch.no_grad()
    def from_gpt2(
        cls,
        attn: CausalSelfAttention,
        config: GPT2Config,
        rank: int,
        spectrum: KVSpectrum | None = None,
        absorb: bool = False,
    ) -> LatentAttention:
        """Factor a GPT-2 attention layer at `rank` (pass its `kv_spectrum` to reuse an SVD)."""
        spectrum = spectrum if spectrum is not None else kv_spectrum(attn)
        latent = cls(config, rank, absorb)
        n_embd, dtype = config.n_embd, attn.c_attn.weight.dtype
        latent.to(device=attn.c_attn.weight.device, dtype=dtype)
        latent.w_q.weight.copy_(attn.c_attn.weight[:n_embd])
        latent.w_q.bias.copy_(attn.c_attn.bias[:n_embd])
        v_r = spectrum.v[:, :rank]  # (C, r): the r input directions that matter most
        latent.w_dkv.weight.copy_(v_r.T)
        up = spectrum.w_kv @ v_r  # (2C, r) = U_r S_r
        per_head = (latent.n_head, latent.head_dim, rank)
        latent.w_uk.copy_(up[:n_embd].reshape(per_head))
        latent.w_uv.copy_(up[n_embd:].reshape(per_head))
        latent.b_k.copy_(spectrum.b_k.view(latent.n_head, latent.head_dim))
        latent.b_v.copy_(spectrum.b_v.view(latent.n_head, latent.head_dim))
        latent.c_proj.load_state_dict(attn.c_proj.state_dict())
        return latent

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """q: (B, H, T, D)."""
        batch, n_tokens, _ = x.shape
        q = self.w_q(x).view(batch, n_tokens, self.n_head, self.head_dim)
        return q.transpose(1, 2)

    def expand_kv(self, c_kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Naive path: every head's k and v (B, H, T, D) from the latents c_kv (B, T, r)."""
        k = torch.einsum("btc,hdc->bhtd", c_kv, self.w_uk) + self.b_k[:, None, :]
        v = torch.einsum("btc,hdc->bhtd", c_kv, self.w_uv) + self.b_v[:, None, :]
        return k, v

    def absorb_query(self, q: torch.Tensor) -> torch.Tensor:
        """q_latent = W_UK^T q per head: (B, H, T, r)."""
        return torch.einsum("bhsd,hdc->bhsc", q, self.w_uk)

    def absorbed_scores(self, q: torch.Tensor, c_kv: torch.Tensor) -> torch.Tensor:
        """q . k / sqrt(D) computed from the latents: (B, H, T_q, T_k)."""
        q_latent = self.absorb_query(q)
        content = torch.einsum("bhsc,btc->bhst", q_latent, c_kv)
        bias = torch.einsum("bhsd,hd->bhs", q, self.b_k)[..., None]  # q . b_K, same for every key
        return (content + bias) / math.sqrt(self.head_dim)

    def forward(
        self,
        x: torch.Tensor,
        layer: int = 0,
        kv_cache: LatentKVCache | None = None,
        capture: list[dict[str, torch.Tensor]] | None = None,
        absorb: bool | None = None,
    ) -> torch.Tensor:
        absorb = self.absorb if absorb is None else absorb
        batch, n_tokens, n_embd = x.shape
        q = self.queries(x)  # (B, H, T, D)
        c_kv = self.w_dkv(x)  # (B, T, r)
        if kv_cache is not None:
            if not isinstance(kv_cache, LatentKVCache):
                raise UserError("an MLA model decodes with a LatentKVCache, not an MHA KVCache")
            c_kv = kv_cache.append(layer, c_kv)  # (B, T_past + T, r)

        if absorb:
            _, pattern = causal_softmax(self.absorbed_scores(q, c_kv))
            o_latent = torch.einsum("bhst,btc->bhsc", pattern, c_kv)
            z = torch.einsum("bhsc,hdc->bhsd", o_latent, self.w_uv) + self.b_v[:, None, :]
            steps = None
        else:
            k, v = self.expand_kv(c_kv)
            steps = causal_attention(q, k, v)  # GPT-2's own attention maths
            z = steps["z"]
        if capture is not None:
            if steps is None:  # record the same tensors as the naive path does
                k, v = self.expand_kv(c_kv)
                steps = causal_attention(q, k, v)
            record = {name: steps[name].detach() for name in CAPTURED_NAMES}
            record["c_kv"] = c_kv.detach()
            record["q_latent"] = self.absorb_query(q).detach()
            capture.append(record)

        z = z.transpose(1, 2).reshape(batch, n_tokens, n_embd)  # heads side by side
        return self.c_proj(z)


class LatentKVCache(LayerCache):
    """The MLA cache of a converted GPT-2: per layer only c_KV, (B, T, r). No RoPE key."""

    stored = ("c_kv",)
    token_axis = 1

    def append(self, layer: int, c_kv: torch.Tensor) -> torch.Tensor:
        return self._append(layer, c_kv)[0]


# --- whole models -----------------------------------------------------------------------


def convert_gpt2(
    model: GPT2,
    rank: int,
    spectra: list[KVSpectrum] | None = None,
    absorb: bool = False,
) -> GPT2:
    """A GPT-2 whose every attention layer is `model`'s, factored at `rank` (LatentAttention).

    Embeddings, LayerNorms, MLPs and head are shared with `model` (not copied). `spectra`
    (one `kv_spectrum` per layer) lets a rank sweep do each SVD once.
    """
    check_rank(rank, model.config)
    spectra = spectra if spectra is not None else [kv_spectrum(b.attn) for b in model.h]
    layers = [
        LatentAttention.from_gpt2(block.attn, model.config, rank, spectrum, absorb)
        for block, spectrum in zip(model.h, spectra, strict=True)
    ]
    return with_attention(model, layers, rank)


def with_attention(model: GPT2, layers: list[LatentAttention], rank: int) -> GPT2:
    """A GPT2 made of `model`'s modules, except that block i's attention is layers[i]."""
    with torch.device("meta"):  # a skeleton: every module in it is replaced below
        converted = GPT2(model.config)
    converted.wte, converted.wpe = model.wte, model.wpe
    converted.ln_f, converted.lm_head = model.ln_f, model.lm_head  # lm_head stays tied to wte
    for block, new_block, attn in zip(model.h, converted.h, layers, strict=True):
        new_block.ln_1, new_block.ln_2, new_block.mlp = block.ln_1, block.ln_2, block.mlp
        new_block.attn = attn
    converted.mla_rank = rank
    return converted.eval()


def latent_cache_dims(config: GPT2Config, rank: int) -> CacheDims:
    """Cache dimensions of the converted model (MLA with d_c = rank, no RoPE key)."""
    return CacheDims(
        name=f"{config.name}-mla-r{rank}",
        n_layers=config.n_layer,
        n_heads=config.n_head,
        head_dim=config.head_dim,
        kv_lora_rank=rank,
        qk_rope_head_dim=0,
    )


def cache_bytes_per_token(config: GPT2Config, rank: int, dtype_bytes: int = 2) -> dict[str, int]:
    """Bytes per token: GPT-2's MHA cache and the rank-r latent cache (cache_size formulas)."""
    dims = latent_cache_dims(config, rank)
    return {
        "mha": bytes_per_token(dims, "mha", dtype_bytes),
        "mla": bytes_per_token(dims, "mla", dtype_bytes),
    }


# --- saving and loading a converted model ---------------------------------------------------

CONVERTED_WEIGHTS = "mla_gpt2.safetensors"
CONVERTED_META = "mla_gpt2.json"


def save_converted(model: GPT2, folder: str | Path, source: dict | None = None) -> Path:
    """Write the converted attention tensors (per layer w_q, b_q, w_dkv, w_uk, w_uv, b_k, b_v,
    c_proj) plus a JSON note of the rank and the base GPT-2 weights, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"h.{i}.attn.{name}": t.detach().to("cpu", torch.float32).contiguous()
        for i, block in enumerate(model.h)
        for name, t in block.attn.state_dict().items()
    }
    meta = {
        "format": "GPT-2 attention converted to MLA (mla_core.models.gpt2_to_mla)",
        "rank": model.mla_rank,
        "n_layer": model.config.n_layer,
        "n_head": model.config.n_head,
        "n_embd": model.config.n_embd,
        "base_weights": source or {},
        "cache_bytes_per_token_fp16": cache_bytes_per_token(model.config, model.mla_rank),
    }
    write_atomically(folder / CONVERTED_WEIGHTS, lambda p: save_file(tensors, str(p)))
    write_text_atomically(folder / CONVERTED_META, json.dumps(meta, indent=2) + "\n")
    return folder


def load_converted(folder: str | Path, base: GPT2) -> GPT2:
    """A converted model from `save_converted`'s folder on top of its base GPT-2."""
    folder = Path(folder)
    meta_file, weights_file = folder / CONVERTED_META, folder / CONVERTED_WEIGHTS
    if not meta_file.is_file() or not weights_file.is_file():
        raise UserError(f"{str(folder)!r} lacks {CONVERTED_META} or {CONVERTED_WEIGHTS}")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    rank = check_rank(int(meta["rank"]), base.config)
    device, dtype = base.wte.weight.device, base.wte.weight.dtype
    layers = []
    with safe_open(str(weights_file), framework="pt") as f:
        stored = set(f.keys())
        for i in range(base.config.n_layer):
            attn = LatentAttention(base.config, rank).to(device=device, dtype=dtype)
            state = {}
            for name, param in attn.state_dict().items():
                key = f"h.{i}.attn.{name}"
                if key not in stored:
                    raise UserError(f"{weights_file} lacks the tensor {key!r}")
                tensor = f.get_tensor(key)
                if tensor.shape != param.shape:
                    raise UserError(
                        f"{weights_file}: {key} has shape {list(tensor.shape)}, "
                        f"expected {list(param.shape)}"
                    )
                state[name] = tensor
            attn.load_state_dict(state)
            layers.append(attn)
    return with_attention(base, layers, rank)
