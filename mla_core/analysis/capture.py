"""Live tensors: run a prompt through GPT-2 and keep everything the attention scenes draw.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mla_core.errors import UserError, check_layer_head
from mla_core.loading.tokenizer import ENDOFTEXT_ID, GPT2Tokenizer, gpt2_tokenizer
from mla_core.models.configs import GPT2Config
from mla_core.models.gpt2 import GPT2


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


def prompt_token_ids(prompt: str | list[int], config: GPT2Config, bos: bool = False) -> list[int]:
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
    if len(ids) > config.n_ctx:
        raise UserError(
            f"the prompt is {len(ids)} tokens{' with BOS' if bos else ''}, longer than the "
            f"model's context of {config.n_ctx} tokens"
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


@torch.no_grad()
def capture_attention(
    model: GPT2, prompt: str | list[int], bos: bool = False, top_k: int = 10
) -> AttentionCapture:
    """Run `prompt` (text or token ids) once through `model` and capture every head.

    Batch of one; the model's device and dtype; results as float32 NumPy arrays.
    """
    tokenizer = gpt2_tokenizer()
    ids = prompt_token_ids(prompt, model.config, bos)
    device = next(model.parameters()).device
    per_layer: list[dict[str, torch.Tensor]] = []
    logits = model(torch.tensor([ids], device=device), capture=per_layer)[0, -1]  # [V]

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
