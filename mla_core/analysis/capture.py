"""Live tensors: run a prompt through GPT-2 (or the DeepSeek-style model) and keep everything
the attention scenes draw.

    model, source = load_gpt2()
    cap = capture_attention(model, " The American flag is red, white, and")
    cap.tokens               # ['␣The', '␣American', ..., '␣and']
    cap.pattern[5, 1]        # layer 5, head 1: [T, T], rows sum to 1, 0 above the diagonal
    cap.top_k[0]             # TopToken(token_id=4171, token='␣blue', probability=...)

Everything is returned as NumPy float32 arrays (on the CPU, detached), so scenes can save
it with `np.savez` and nobody needs torch to read it. Layout, with L layers, H heads,
T tokens (BOS included when asked for), D = head_dim:

    q, k, v, z                     [L, H, T, D]   z = pattern @ v, the head outputs
    scores                         [L, H, T, T]   q k^T / sqrt(D), before the mask
    masked_scores                  [L, H, T, T]   -inf where a query would see a later key
    pattern                        [L, H, T, T]   softmax(masked_scores)
    logits                         [V]            at the last position
    top_k                          list of TopToken, most likely next token first

With `bos=True` the first token is `<|endoftext|>` (50256), as TransformerLens does;
scenes that hide it drop index 0 (e.g. `pattern[l, h, 1:, 1:]`), which is not renormalised.

A DeepSeek-style model (`mla_core.models.deepseek.DeepSeekModel`) is captured on its naive MLA
path: per head, q = [q_nope ; RoPE(q_rope)] and k = [W_UK c_KV ; RoPE(k_rope)] (the RoPE key
shared by all heads), v = W_UV c_KV, scores scaled by its softmax scale. So D is
qk_nope + qk_rope for q and k, and v_head_dim for v and z. It reads text with the GPT-2
tokenizer, as the project's DeepSeek-style models are trained on GPT-2 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mla_core.errors import UserError, check_layer_head
from mla_core.loading.tokenizer import ENDOFTEXT_ID, GPT2Tokenizer, gpt2_tokenizer
from mla_core.models.attention import causal_attention
from mla_core.models.configs import DeepSeekConfig, GPT2Config
from mla_core.models.deepseek import DeepSeekModel
from mla_core.models.gpt2 import GPT2
from mla_core.models.mla import MultiHeadLatentAttention
from mla_core.models.rope import rope_angles


@dataclass(frozen=True)
class TopToken:
    token_id: int
    token: str  # display string (spaces shown as tokenizer.SPACE_MARK)
    text: str  # the token's plain text
    probability: float  # softmax of the last position's logits
    logit: float


@dataclass
class AttentionCapture:
    """Every attention tensor of one prompt (see the module docstring for shapes)."""

    prompt: str
    token_ids: list[int]
    tokens: list[str]
    bos: bool  # whether token 0 is the <|endoftext|> BOS
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    scores: np.ndarray
    masked_scores: np.ndarray
    pattern: np.ndarray
    z: np.ndarray
    logits: np.ndarray
    top_k: list[TopToken]

    @property
    def n_layers(self) -> int:
        return self.q.shape[0]

    @property
    def n_heads(self) -> int:
        return self.q.shape[1]

    def check_head(self, layer: int, head: int) -> None:
        """UserError unless 0 <= layer < L and 0 <= head < H."""
        check_layer_head(layer, head, self.n_layers, self.n_heads)

    def head(self, layer: int, head: int) -> dict[str, np.ndarray]:
        """One head's tensors plus the tokens: ready for `np.savez(file, **cap.head(l, h))`."""
        self.check_head(layer, head)
        arrays = {
            name: getattr(self, name)[layer, head]
            for name in ("q", "k", "v", "scores", "masked_scores", "pattern", "z")
        }
        return {
            "token_ids": np.array(self.token_ids, dtype=np.int64),
            "tokens": np.array(self.tokens, dtype=np.str_),
            **arrays,
        }


def context_length(config: GPT2Config | DeepSeekConfig) -> int:
    """The longest sequence a model takes: GPT-2's n_ctx, a DeepSeek model's max_seq_len."""
    return config.max_seq_len if isinstance(config, DeepSeekConfig) else config.n_ctx


def prompt_token_ids(
    prompt: str | list[int], config: GPT2Config | DeepSeekConfig, bos: bool = False
) -> list[int]:
    """The prompt's token ids (BOS in front if asked), checked against the model's context/vocab."""
    if isinstance(prompt, str):
        if not prompt:
            raise UserError("the prompt is empty; give some text (--prompt TEXT)")
        ids = gpt2_tokenizer().encode(prompt)
    else:
        ids = [int(i) for i in prompt]
        if not ids:
            raise UserError("the prompt is empty; give at least one token")
    if bos:
        ids = [ENDOFTEXT_ID, *ids]
    if len(ids) > context_length(config):
        raise UserError(
            f"the prompt is {len(ids)} tokens{' with BOS' if bos else ''}, longer than the "
            f"model's context of {context_length(config)} tokens"
        )
    if not all(0 <= i < config.vocab_size for i in ids):
        bad = next(i for i in ids if not 0 <= i < config.vocab_size)
        raise UserError(
            f"token id {bad} is outside the model's vocabulary 0..{config.vocab_size - 1}"
        )
    return ids


def top_next_tokens(
    logits: torch.Tensor, k: int, tokenizer: GPT2Tokenizer | None = None
) -> list[TopToken]:
    """The k most likely next tokens of a [V] logits vector, with probabilities."""
    if k < 1:
        raise UserError(f"--top-k {k} must be >= 1")
    tokenizer = tokenizer or gpt2_tokenizer()
    probabilities = torch.softmax(logits.float(), dim=-1)
    top = torch.topk(probabilities, min(k, logits.numel()))
    return [
        TopToken(
            token_id=int(i),
            token=tokenizer.display_token(int(i)),
            text=tokenizer.decode([int(i)]),
            probability=float(p),
            logit=float(logits[i]),
        )
        for p, i in zip(top.values, top.indices, strict=True)
    ]


def mla_attention_steps(attn: MultiHeadLatentAttention, h: torch.Tensor) -> dict[str, torch.Tensor]:
    """One DeepSeek MLA layer on its input h [B, T, C], naive path, every step kept.

    The same pieces the layer's forward uses (queries, latents, expand_kv), put together as
    ordinary per-head attention: `causal_attention` returns q, k [B, H, T, d_nope + d_R],
    v, z [B, H, T, d_v], scores, masked_scores and pattern [B, H, T, T].
    """
    n_tokens = h.shape[1]
    angles = rope_angles(attn.config, torch.arange(n_tokens)).to(h.device)
    q_nope, q_rope = attn.queries(h, angles)  # [B, T, H, d_nope], [B, T, H, d_R]
    c_kv, k_rope = attn.latents(h, angles)  # [B, T, d_c], [B, T, d_R]
    k_nope, v = attn.expand_kv(c_kv)  # [B, T, H, d_nope], [B, T, H, d_v]
    k_rope = k_rope[:, :, None].expand(-1, -1, attn.n_heads, -1)  # one key for every head
    q = torch.cat((q_nope, q_rope), dim=-1).transpose(1, 2)
    k = torch.cat((k_nope, k_rope), dim=-1).transpose(1, 2)
    return causal_attention(q, k, v.transpose(1, 2), scale=attn.scale)


def deepseek_forward_with_capture(
    model: DeepSeekModel, tokens: torch.Tensor, capture: list[dict[str, torch.Tensor]]
) -> torch.Tensor:
    """model(tokens) on the naive path; `capture` receives `mla_attention_steps` per layer."""
    inputs: list[torch.Tensor] = []
    hooks = [
        block.attn.register_forward_pre_hook(lambda _module, args: inputs.append(args[0]))
        for block in model.blocks
    ]
    try:
        logits = model(tokens, absorb=False)
    finally:
        for hook in hooks:
            hook.remove()
    for block, h in zip(model.blocks, inputs, strict=True):
        capture.append(mla_attention_steps(block.attn, h))
    return logits


@torch.no_grad()
def capture_attention(
    model: GPT2 | DeepSeekModel, prompt: str | list[int], bos: bool = False, top_k: int = 10
) -> AttentionCapture:
    """Run `prompt` (text or token ids) once through `model` and capture every head.

    Batch of one; the model's device and dtype; results as float32 NumPy arrays.
    """
    tokenizer = gpt2_tokenizer()
    ids = prompt_token_ids(prompt, model.config, bos)
    device = next(model.parameters()).device
    per_layer: list[dict[str, torch.Tensor]] = []
    tokens = torch.tensor([ids], device=device)
    if isinstance(model, DeepSeekModel):
        logits = deepseek_forward_with_capture(model, tokens, per_layer)[0, -1]  # [V]
    else:
        logits = model(tokens, capture=per_layer)[0, -1]  # [V]

    def stacked(name: str) -> np.ndarray:  # L x [1, H, T, .] -> [L, H, T, .]
        return torch.stack([layer[name][0] for layer in per_layer]).float().cpu().numpy()

    return AttentionCapture(
        prompt=prompt if isinstance(prompt, str) else tokenizer.decode(ids[int(bos) :]),
        token_ids=ids,
        tokens=tokenizer.display_tokens(ids),
        bos=bos,
        q=stacked("q"),
        k=stacked("k"),
        v=stacked("v"),
        scores=stacked("scores"),
        masked_scores=stacked("masked_scores"),
        pattern=stacked("pattern"),
        z=stacked("z"),
        logits=logits.float().cpu().numpy(),
        top_k=top_next_tokens(logits, top_k, tokenizer),
    )
