"""Scene data for the MLA half of the video: every tensor a scene draws, as NumPy arrays.

Three kinds, each a dataclass of plain float32 arrays (no torch, no Manim):

- `gpt2_latent_head(model, prompt, layer, head)`: one head of a GPT-2 converted to MLA
  (`mla_core.models.gpt2_to_mla`): the latents c_KV per token, W_DKV, the head's W_UK and W_UV,
  the absorbed query weights and q_latent, and the scores computed both ways (equal);
- `deepseek_latent_head(attn, hidden, head)`: the same for a DeepSeek MLA layer (the small
  model, or a real layer from `deepseek_weights.load_attention_layer`), plus the decoupled
  RoPE query and the RoPE key shared by all heads;
- `gpt2_latent_cache_steps(...)` / `deepseek_cache_steps(...)`: the latent cache of one
  layer after the prompt and after every generated token.

The DeepSeek functions also take a whole `DeepSeekModel`, or None for the default one
(`loading.deepseek_folder.default_deepseek_model`: the trained demo MLA model in
`assets/models/demo-mla/` when it is there, else the seeded, untrained deepseek-tiny).

Shapes: T tokens, C = n_embd (hidden), r = d_c (the latent), D = head width, d_R = RoPE width.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mla_core import atomic
from mla_core.analysis.capture import AttentionCapture, capture_attention, prompt_token_ids
from mla_core.errors import UserError, check_layer_head
from mla_core.loading.tokenizer import VOCAB_SIZE, gpt2_tokenizer
from mla_core.models.attention import causal_softmax
from mla_core.models.deepseek import DeepSeekModel
from mla_core.models.gpt2 import GPT2
from mla_core.models.gpt2_to_mla import LatentAttention, LatentKVCache
from mla_core.models.kv_cache import generate
from mla_core.models.mla import LatentCache, MultiHeadLatentAttention
from mla_core.models.rope import rope_angles


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


# --- GPT-2 converted to MLA -------------------------------------------------------------


@dataclass
class GPT2LatentHead:
    """One head of a converted GPT-2 on a prompt.

    q_latent = w_q_absorbed @ x + b_q_absorbed: the query moved into latent space, and
    scores_absorbed = (q_latent . c_KV + q . b_K) / sqrt(D) equals scores_naive = q . k / sqrt(D).
    """

    token_ids: list[int]
    tokens: list[str]
    layer: int
    head: int
    rank: int
    x: np.ndarray  # (T, C) the layer's attention input (after ln_1)
    c_kv: np.ndarray  # (T, r) the cached latents
    w_dkv: np.ndarray  # (r, C) the layer's down-projection
    w_uk: np.ndarray  # (D, r) this head's key up-projection
    w_uv: np.ndarray  # (D, r) this head's value up-projection
    b_k: np.ndarray  # (D,)
    b_v: np.ndarray  # (D,)
    w_q: np.ndarray  # (D, C) this head's query weights (GPT-2's)
    q: np.ndarray  # (T, D)
    w_q_absorbed: np.ndarray  # (r, C) = w_uk^T w_q
    b_q_absorbed: np.ndarray  # (r,) = w_uk^T b_q
    q_latent: np.ndarray  # (T, r)
    k: np.ndarray  # (T, D) = c_kv w_uk^T + b_k (naive path)
    v: np.ndarray  # (T, D)
    scores_naive: np.ndarray  # (T, T) before the mask
    scores_absorbed: np.ndarray  # (T, T) before the mask
    pattern: np.ndarray  # (T, T)
    z: np.ndarray  # (T, D) the head output


@torch.no_grad()
def gpt2_latent_head(
    model: GPT2, prompt: str | list[int], layer: int, head: int, bos: bool = True
) -> GPT2LatentHead:
    """Everything one head of a converted GPT-2 computes on `prompt` (batch of one)."""
    config = model.config
    check_layer_head(layer, head, config.n_layer, config.n_head)
    attn = model.h[layer].attn
    if not isinstance(attn, LatentAttention):
        raise UserError("this GPT-2 is not converted to MLA: use gpt2_to_mla.convert_gpt2 first")
    ids = prompt_token_ids(prompt, config, bos)
    inputs: list[torch.Tensor] = []
    hook = attn.register_forward_pre_hook(lambda _module, args: inputs.append(args[0]))
    capture: list[dict[str, torch.Tensor]] = []
    try:
        model(torch.tensor([ids], device=model.wte.weight.device), capture=capture)
    finally:
        hook.remove()
    x = inputs[0]  # (1, T, C)
    record = capture[layer]
    q = attn.queries(x)  # (1, H, T, D)
    c_kv = record["c_kv"]  # (1, T, r)
    d = config.head_dim
    rows = slice(head * d, (head + 1) * d)
    w_uk = attn.w_uk[head]  # (D, r)
    return GPT2LatentHead(
        token_ids=ids,
        tokens=gpt2_tokenizer().display_tokens(ids),
        layer=layer,
        head=head,
        rank=attn.rank,
        x=_np(x[0]),
        c_kv=_np(c_kv[0]),
        w_dkv=_np(attn.w_dkv.weight),
        w_uk=_np(w_uk),
        w_uv=_np(attn.w_uv[head]),
        b_k=_np(attn.b_k[head]),
        b_v=_np(attn.b_v[head]),
        w_q=_np(attn.w_q.weight[rows]),
        q=_np(q[0, head]),
        w_q_absorbed=_np(w_uk.T @ attn.w_q.weight[rows]),
        b_q_absorbed=_np(w_uk.T @ attn.w_q.bias[rows]),
        q_latent=_np(record["q_latent"][0, head]),
        k=_np(record["k"][0, head]),
        v=_np(record["v"][0, head]),
        scores_naive=_np(record["scores"][0, head]),
        scores_absorbed=_np(attn.absorbed_scores(q, c_kv)[0, head]),
        pattern=_np(record["pattern"][0, head]),
        z=_np(record["z"][0, head]),
    )


@dataclass
class LatentAttentionCapture(AttentionCapture):
    """`capture.AttentionCapture` of a converted GPT-2, plus its latent tensors:

    c_kv [L, T, r], q_latent [L, H, T, r], w_dkv [L, r, C], w_uk and w_uv [L, H, D, r].
    `head(layer, head)` adds c_kv, w_dkv, w_uk, w_uv and q_latent of that head to the arrays
    GPT-2's capture gives, so `attention --model mla --out FILE.npz` saves them too.
    """

    c_kv: np.ndarray = dataclasses.field(kw_only=True)
    q_latent: np.ndarray = dataclasses.field(kw_only=True)
    w_dkv: np.ndarray = dataclasses.field(kw_only=True)
    w_uk: np.ndarray = dataclasses.field(kw_only=True)
    w_uv: np.ndarray = dataclasses.field(kw_only=True)

    def head(self, layer: int, head: int) -> dict[str, np.ndarray]:
        arrays = super().head(layer, head)
        arrays.update(
            c_kv=self.c_kv[layer],
            w_dkv=self.w_dkv[layer],
            w_uk=self.w_uk[layer, head],
            w_uv=self.w_uv[layer, head],
            q_latent=self.q_latent[layer, head],
        )
        return arrays


@torch.no_grad()
def capture_latent_attention(
    model: GPT2, prompt: str | list[int], bos: bool = False, top_k: int = 10
) -> LatentAttentionCapture:
    """`capture.capture_attention` for a converted GPT-2, with the latents (see above)."""
    if not all(isinstance(block.attn, LatentAttention) for block in model.h):
        raise UserError("this GPT-2 is not converted to MLA: use gpt2_to_mla.convert_gpt2 first")
    plain = capture_attention(model, prompt, bos, top_k)
    per_layer: list[dict[str, torch.Tensor]] = []
    model(torch.tensor([plain.token_ids], device=model.wte.weight.device), capture=per_layer)
    fields = {f.name: getattr(plain, f.name) for f in dataclasses.fields(AttentionCapture)}
    return LatentAttentionCapture(
        **fields,
        c_kv=np.stack([_np(layer["c_kv"][0]) for layer in per_layer]),
        q_latent=np.stack([_np(layer["q_latent"][0]) for layer in per_layer]),
        w_dkv=np.stack([_np(block.attn.w_dkv.weight) for block in model.h]),
        w_uk=np.stack([_np(block.attn.w_uk) for block in model.h]),
        w_uv=np.stack([_np(block.attn.w_uv) for block in model.h]),
    )


@dataclass
class CacheStep:
    """The latent cache of one layer after a forward pass (the prompt, or one new token)."""

    token_ids: list[int]  # the tokens fed in this pass
    tokens: list[str]
    next_token_id: int  # the greedy choice this pass produced
    next_token: str
    n_cached: int  # tokens in the cache after the pass
    c_kv: np.ndarray  # (n_cached, r) the layer's cached latents
    k_rope: np.ndarray | None  # (n_cached, d_R) DeepSeek only: the cached RoPE keys
    cache_bytes: int  # bytes of the whole cache (all layers) after the pass


@torch.no_grad()
def gpt2_latent_cache_steps(
    model: GPT2, prompt: str | list[int], n_new: int, layer: int, bos: bool = True
) -> list[CacheStep]:
    """Greedy generation with a converted GPT-2: the cache after the prompt and each new token."""
    check_layer_head(layer, 0, model.config.n_layer, model.config.n_head)
    if n_new < 1:
        raise UserError(f"n_new={n_new} must be >= 1")
    tokenizer = gpt2_tokenizer()
    ids = prompt_token_ids(prompt, model.config, bos)
    rows: list[np.ndarray] = []  # the layer's cached latents after each pass
    _, steps, _ = generate(
        model,
        ids,
        n_new,
        LatentKVCache(model.config.n_layer),
        on_step=lambda cache: rows.append(_np(cache.c_kv[layer][0])),
    )
    return [
        CacheStep(
            token_ids=step.fed_ids,
            tokens=tokenizer.display_tokens(step.fed_ids),
            next_token_id=step.token_id,
            next_token=tokenizer.display_token(step.token_id),
            n_cached=step.n_cached,
            c_kv=c_kv,
            k_rope=None,
            cache_bytes=step.cache_bytes,
        )
        for step, c_kv in zip(steps, rows, strict=True)
    ]


# --- DeepSeek MLA -----------------------------------------------------------------------


@dataclass
class DeepSeekLatentHead:
    """One head of a DeepSeek MLA layer on hidden states h (T, C).

    scores = (q_nope . k_nope + q_rope . k_rope) * softmax_scale; the absorbed path gets the
    content part as q_latent . c_KV, q_latent = W_UK^T q_nope.
    """

    head: int
    softmax_scale: float
    hidden: np.ndarray  # (T, C) the attention input
    c_kv: np.ndarray  # (T, d_c) the cached latents (after RMSNorm)
    k_rope: np.ndarray  # (T, d_R) the cached RoPE key, shared by all heads (rotated)
    w_dkv: np.ndarray  # (d_c, C) the paper's W_DKV (first d_c rows of wkv_a)
    w_kr: np.ndarray  # (d_R, C) the paper's W_KR (last d_R rows of wkv_a)
    w_uk: np.ndarray  # (d_nope, d_c) this head
    w_uv: np.ndarray  # (d_v, d_c) this head
    w_uq_nope: np.ndarray  # (d_nope, d'_c or C) this head's content-query rows of W_UQ (or W_Q)
    w_q_absorbed: np.ndarray  # (d_c, d'_c or C) = w_uk^T w_uq_nope
    q_nope: np.ndarray  # (T, d_nope)
    q_rope: np.ndarray  # (T, d_R) rotated
    q_latent: np.ndarray  # (T, d_c)
    k_nope: np.ndarray  # (T, d_nope) naive path: W_UK c_KV
    v: np.ndarray  # (T, d_v)
    rope_angles: np.ndarray  # (T, d_R / 2) the rotation angle of each pair at each position
    scores_rope: np.ndarray  # (T, T) the position part q_rope . k_rope * scale
    scores_naive: np.ndarray  # (T, T) before the mask
    scores_absorbed: np.ndarray  # (T, T) before the mask
    pattern: np.ndarray  # (T, T)


def _deepseek_model(model: DeepSeekModel | None) -> DeepSeekModel:
    """`model`, or the default DeepSeek-style model when None (see the module docstring)."""
    from mla_core.loading.deepseek_folder import default_deepseek_model

    return default_deepseek_model() if model is None else model


def _deepseek_tokens(model: DeepSeekModel, ids: list[int]) -> list[str]:
    """Tokens as text: GPT-2 pieces for a model with GPT-2's vocabulary, else the ids."""
    if model.config.vocab_size == VOCAB_SIZE:
        return gpt2_tokenizer().display_tokens(ids)
    return [str(i) for i in ids]


@torch.no_grad()
def deepseek_latent_head(
    attn: MultiHeadLatentAttention | DeepSeekModel | None,
    hidden: torch.Tensor | str | list[int],
    head: int,
    layer: int = 0,
) -> DeepSeekLatentHead:
    """Everything one head of a DeepSeek MLA layer computes on hidden states (T, C).

    `attn` is one MLA layer, or a whole model (None: the default model, see the module
    docstring) whose layer `layer` is used; with a model, `hidden` may also be a prompt (text
    or token ids), and the hidden states are what that layer's attention sees on it.
    """
    if not isinstance(attn, MultiHeadLatentAttention):
        model = _deepseek_model(attn)
        check_layer_head(layer, head, model.config.n_layers, model.config.n_heads)
        if not isinstance(hidden, torch.Tensor):
            hidden = deepseek_layer_input(model, prompt_token_ids(hidden, model.config), layer)
        attn = model.blocks[layer].attn
    elif not isinstance(hidden, torch.Tensor):
        raise UserError("a single MLA layer needs hidden states; pass the model to use a prompt")
    cfg = attn.config
    check_layer_head(0, head, 1, cfg.n_heads)
    if hidden.dim() == 2:
        hidden = hidden[None]
    if hidden.shape[0] != 1:
        raise UserError(f"hidden states have batch {hidden.shape[0]}; pass one sequence")
    n_tokens = hidden.shape[1]
    angles = rope_angles(cfg, torch.arange(n_tokens)).to(hidden.device)
    q_nope, q_rope = attn.queries(hidden, angles)  # (1, T, H, .)
    c_kv, k_rope = attn.latents(hidden, angles)  # (1, T, d_c), (1, T, d_R)
    k_nope, v = attn.expand_kv(c_kv)
    q_latent = attn.absorb_query(q_nope)
    naive = attn.naive_scores(q_nope, q_rope, k_nope, k_rope)[0, :, head]  # (T, T)
    absorbed = attn.absorbed_scores(q_latent, q_rope, c_kv, k_rope)[0, :, head]
    rope_part = torch.einsum("sr,tr->st", q_rope[0, :, head], k_rope[0]) * attn.scale
    _, pattern = causal_softmax(naive)
    q_weight = attn.w_q.weight if cfg.q_lora_rank is None else attn.w_uq.weight
    per_head = q_weight.view(cfg.n_heads, cfg.qk_head_dim, -1)[head, : cfg.qk_nope_head_dim]
    w_dkv = attn.w_dkv.weight
    return DeepSeekLatentHead(
        head=head,
        softmax_scale=attn.scale,
        hidden=_np(hidden[0]),
        c_kv=_np(c_kv[0]),
        k_rope=_np(k_rope[0]),
        w_dkv=_np(w_dkv[: cfg.kv_lora_rank]),
        w_kr=_np(w_dkv[cfg.kv_lora_rank :]),
        w_uk=_np(attn.w_uk[head]),
        w_uv=_np(attn.w_uv[head]),
        w_uq_nope=_np(per_head),
        w_q_absorbed=_np(attn.w_uk[head].T @ per_head),
        q_nope=_np(q_nope[0, :, head]),
        q_rope=_np(q_rope[0, :, head]),
        q_latent=_np(q_latent[0, :, head]),
        k_nope=_np(k_nope[0, :, head]),
        v=_np(v[0, :, head]),
        rope_angles=_np(angles),
        scores_rope=_np(rope_part),
        scores_naive=_np(naive),
        scores_absorbed=_np(absorbed),
        pattern=_np(pattern),
    )


@torch.no_grad()
def deepseek_layer_input(model: DeepSeekModel, token_ids: list[int], layer: int) -> torch.Tensor:
    """The hidden states (T, C) that layer `layer`'s attention sees (after its RMSNorm)."""
    check_layer_head(layer, 0, model.config.n_layers, model.config.n_heads)
    inputs: list[torch.Tensor] = []
    attn = model.blocks[layer].attn
    hook = attn.register_forward_pre_hook(lambda _module, args: inputs.append(args[0]))
    try:
        model(torch.tensor([token_ids], device=model.embed.weight.device))
    finally:
        hook.remove()
    return inputs[0][0]


@torch.no_grad()
def deepseek_cache_steps(
    model: DeepSeekModel | None,
    token_ids: str | list[int],
    n_new: int,
    layer: int,
    absorb: bool = True,
) -> list[CacheStep]:
    """Greedy generation with a DeepSeek-style model: the latent cache after every pass.

    `model` None is the default model (see the module docstring). `token_ids` may be text
    for a model with GPT-2's vocabulary, whose tokens are then shown as GPT-2 pieces; any
    other model's tokens are its ids written as text.
    """
    model = _deepseek_model(model)
    check_layer_head(layer, 0, model.config.n_layers, model.config.n_heads)
    if n_new < 1:
        raise UserError(f"n_new={n_new} must be >= 1")
    token_ids = prompt_token_ids(token_ids, model.config)
    rows: list[tuple[np.ndarray, np.ndarray]] = []  # the layer's c_kv and k_rope after each pass
    _, steps, _ = generate(
        model,
        list(token_ids),
        n_new,
        LatentCache(model.config.n_layers),
        on_step=lambda cache: rows.append((_np(cache.c_kv[layer][0]), _np(cache.k_rope[layer][0]))),
        absorb=absorb,
    )
    return [
        CacheStep(
            token_ids=step.fed_ids,
            tokens=_deepseek_tokens(model, step.fed_ids),
            next_token_id=step.token_id,
            next_token=_deepseek_tokens(model, [step.token_id])[0],
            n_cached=step.n_cached,
            c_kv=c_kv,
            k_rope=k_rope,
            cache_bytes=step.cache_bytes,
        )
        for step, (c_kv, k_rope) in zip(steps, rows, strict=True)
    ]


def write_npz_atomically(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temporary file in the same folder, renamed into place."""
    if not target.parent.is_dir():
        raise UserError(f"--out {str(target)!r}: the folder {str(target.parent)!r} does not exist")
    atomic.write_npz_atomically(target, arrays)
