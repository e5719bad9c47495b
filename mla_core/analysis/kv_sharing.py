"""MQA and GQA made from a multi-head GPT-2, and what the sharing costs.

Grouped-query attention (GQA) lets each group of consecutive query heads share ONE key head
and ONE value head; multi-query attention (MQA) is the case of a single group, and
multi-head attention (MHA) the case of one group per head. The cache then holds one key
and one value per GROUP instead of per head.

`pool_kv_heads(model, groups)` converts a GPT-2 checkpoint the way the GQA paper does
(Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from
Multi-Head Checkpoints", arXiv 2305.13245, section 2.1): each group's key and value
projections (weights and biases) are the mean of its heads' projections. The paper then
uptrains for ~5% of the original compute; here there is NO uptraining, so what
`sharing_costs` measures is the damage of the conversion alone.

The converted model still has n_head key/value heads in its c_attn (the heads of a group
hold identical copies), so it runs through the unchanged GPT-2 code; a real GQA model
would compute and cache each group's key and value once. The cache size is therefore
counted with the formulas of `mla_core.analysis.cache_size`, not from the copies.

Shapes: C = n_embd, H = n_head, D = head_dim, G = groups, T tokens. GPT-2's
c_attn (an nn.Linear, weight [3C, C]) stacks the output rows [q | k | v], each C = H * D
rows with head h in rows h*D .. (h+1)*D.
"""

from __future__ import annotations

import copy

import torch

from mla_core.analysis.cache_size import bytes_per_token, dims_from_config
from mla_core.analysis.mla_sweep import attention_kl, run_on_windows, text_windows
from mla_core.errors import UserError, check_layer_head
from mla_core.models.gpt2 import GPT2

# Where the conversion comes from (shown on screen beside the measured costs).
GQA_PAPER = "GQA paper, arXiv 2305.13245"


def check_groups(groups: int, n_head: int) -> int:
    """`groups` unless it is not a divisor of n_head in 1..n_head (UserError)."""
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise UserError(f"groups={groups!r} must be a whole number dividing the {n_head} heads")
    if not 1 <= groups <= n_head or n_head % groups:
        raise UserError(f"groups={groups} must divide the {n_head} heads (1..{n_head})")
    return groups


def gqa_group_counts(n_head: int) -> list[int]:
    """Group counts strictly between MQA (1) and MHA (n_head) that divide n_head: the GQA
    variants a model with n_head heads has (none for 3 heads; 2, 3, 4, 6 for 12)."""
    return [g for g in range(2, n_head) if n_head % g == 0]


def middle_gqa_groups(n_head: int) -> int | None:
    """The GQA group count a scene shows: the middle one of `gqa_group_counts` (the upper
    middle when there are two: 4 for 12 heads, 2 for 4 heads), or None when there is none."""
    counts = gqa_group_counts(n_head)
    return counts[len(counts) // 2] if counts else None


def kind_of(groups: int, n_head: int) -> str:
    """The cache_size kind of a group count: "mha", "mqa" or "gqa"."""
    if groups == n_head:
        return "mha"
    return "mqa" if groups == 1 else "gqa"


def variant_label(groups: int, n_head: int) -> str:
    """How a variant is named on screen: "MHA", "GQA-4", "MQA"."""
    kind = kind_of(groups, n_head)
    return f"GQA-{groups}" if kind == "gqa" else kind.upper()


def pooled_projection(
    weight: torch.Tensor, bias: torch.Tensor, n_head: int, groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One projection's per-head rows replaced by their group's mean.

    weight [H * D, C], bias [H * D] -> the same shapes, where the H/G heads of each group
    of consecutive heads hold the group mean of their D rows.
    """
    check_groups(groups, n_head)
    head_dim = weight.shape[0] // n_head
    per_group = n_head // groups
    w = weight.view(groups, per_group, head_dim, -1)  # [G, H/G, D, C]
    b = bias.view(groups, per_group, head_dim)  # [G, H/G, D]
    w_mean = w.mean(dim=1, keepdim=True).expand_as(w)  # every head of a group: the group mean
    b_mean = b.mean(dim=1, keepdim=True).expand_as(b)
    return w_mean.reshape(weight.shape), b_mean.reshape(bias.shape)


@torch.no_grad()
def pool_kv_heads(model: GPT2, groups: int) -> GPT2:
    """A copy of `model` whose every layer shares keys and values within `groups` groups of
    consecutive heads: the key and the value projections (weights and biases) of each group
    are the mean of its heads' (GQA paper's conversion, no uptraining). Queries, the output
    projection and everything outside attention are copied unchanged; `model` is untouched.

    groups == n_head gives MHA (the model itself), groups == 1 MQA.
    """
    config = model.config
    check_groups(groups, config.n_head)
    pooled = copy.deepcopy(model).eval()  # deepcopy keeps lm_head tied to wte
    n_embd = config.n_embd
    for block in pooled.h:
        c_attn = block.attn.c_attn  # weight [3C, C]: rows [q | k | v]
        for start in (n_embd, 2 * n_embd):  # k rows, then v rows
            rows = slice(start, start + n_embd)
            weight, bias = pooled_projection(
                c_attn.weight[rows], c_attn.bias[rows], config.n_head, groups
            )
            c_attn.weight[rows] = weight
            c_attn.bias[rows] = bias
    return pooled


def sharing_costs(
    model: GPT2,
    text: str,
    group_counts: list[int],
    layer: int,
    head: int,
    window: int = 128,
    max_windows: int | None = None,
    dtype_bytes: int | None = None,
) -> dict:
    """What sharing keys and values costs, per group count, against the model itself (MHA).

    The text is cut into windows (`mla_sweep.text_windows`, each starting with
    <|endoftext|>); the model and each pooled copy run end to end on every window. Per
    group count (a JSON-ready row):

    - bytes_per_token: the KV cache of one token, all layers (`cache_size` formulas: MHA
      2 H D L, GQA 2 G D L, MQA 2 D L numbers) times `dtype_bytes` (default: the bytes of
      the model's own numbers, as its KVCache stores them);
    - head_kl: KL(MHA pattern row || pooled pattern row) of ONE head (layer, head), mean over
      windows and query positions >= 1, nats (`mla_sweep.attention_kl`);
    - perplexity of the text, and top1_agreement with the model's own next-token choices.
    """
    config = model.config
    check_layer_head(layer, head, config.n_layer, config.n_head, "")
    for groups in group_counts:
        check_groups(groups, config.n_head)
    if dtype_bytes is None:
        dtype_bytes = model.wte.weight.element_size()
    window = min(window, config.n_ctx)
    windows = text_windows(text, window, max_windows)
    dims = dims_from_config(config)
    base_top1, base_perplexity, base_patterns = run_on_windows(model, windows)
    one_head = (slice(layer, layer + 1), slice(None), slice(head, head + 1))  # (L, n, H, ..)
    rows = []
    for groups in group_counts:
        kind = kind_of(groups, config.n_head)
        if kind == "mha":  # the model itself: nothing converted
            top1, perplexity, patterns = base_top1, base_perplexity, base_patterns
        else:
            top1, perplexity, patterns = run_on_windows(pool_kv_heads(model, groups), windows)
        kl = attention_kl(base_patterns[one_head], patterns[one_head])  # shape (1,)
        rows.append(
            {
                "groups": groups,
                "kind": kind,
                "label": variant_label(groups, config.n_head),
                "kv_heads_per_layer": groups,
                "bytes_per_token": bytes_per_token(dims, kind, dtype_bytes, groups),
                "head_kl": float(kl[0]),
                "perplexity": perplexity,
                "top1_agreement": float((top1 == base_top1).double().mean()),
            }
        )
    return {
        "what": "GPT-2 with keys and values mean-pooled within groups of heads "
        "(GQA paper's checkpoint conversion, no uptraining), against the model itself",
        "head": {"layer": layer, "head": head},
        "dtype_bytes": dtype_bytes,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "head_dim": config.head_dim,
        "text": {
            "windows": int(windows.shape[0]),
            "window_tokens": window,
            "scored_tokens": int(windows[:, 1:].numel()),
        },
        "rows": rows,
    }


@torch.no_grad()
def grouped_kv(
    model: GPT2, token_ids: list[int], layer: int, groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values that layer `layer` caches for `token_ids` when its heads share
    them in `groups` groups: (k, v), each [G, T, D], one per group, computed from the MODEL's
    own input to that layer with the group-mean projections of `pooled_projection`
    (groups == n_head: the model's own per-head keys and values)."""
    config = model.config
    check_layer_head(layer, None, config.n_layer, config.n_head, "")
    check_groups(groups, config.n_head)
    attn = model.h[layer].attn
    seen: list[torch.Tensor] = []
    hook = attn.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    try:
        model(torch.tensor([token_ids], device=model.wte.weight.device))
    finally:
        hook.remove()
    x = seen[0][0]  # [T, C]: ln_1 of the residual stream, what c_attn reads
    n_embd, per_group = config.n_embd, config.n_head // groups
    out = []
    for start in (n_embd, 2 * n_embd):  # k rows, then v rows of c_attn
        rows = slice(start, start + n_embd)
        weight, bias = pooled_projection(
            attn.c_attn.weight[rows], attn.c_attn.bias[rows], config.n_head, groups
        )
        per_head = (x @ weight.T + bias).view(len(token_ids), config.n_head, config.head_dim)
        out.append(per_head[:, ::per_group].transpose(0, 1).cpu())  # [G, T, D]: a head per group
    return out[0], out[1]
