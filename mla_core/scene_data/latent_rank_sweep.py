"""LatentRankSweep: how small can the latent be? GPT-2 converted to MLA at several ranks.

The rank sweep of `mla_core.analysis.mla_sweep.rank_sweep` for the video's GPT-2 on the
held-out sample (`HELDOUT_SAMPLE`), at ranks that are fractions of n_embd (so the same
fractions work for the 192-wide demo model and the 768-wide GPT-2 small, n_embd itself
included); one head's attention pattern on the prompt for the original and three converted
models; and the singular values of that head's layer's [W_K; W_V] (2C x C), which has at
most C of them: why rank C is exact.
"""

from __future__ import annotations

import numpy as np

from mla_core.analysis.capture import capture_attention
from mla_core.analysis.mla_sweep import HELDOUT_SAMPLE, HELDOUT_SAMPLE_SOURCE, rank_sweep
from mla_core.analysis.mla_sweep import text_provenance as heldout_provenance
from mla_core.models.gpt2_to_mla import convert_gpt2, kv_spectrum
from mla_core.scene_data.heads import main_head
from mla_core.scene_data.inputs import SceneInputs
from mla_core.scene_data.store import SceneData

# Ranks as fractions of n_embd: 1/32 ... 1 (for n_embd 192: 6, 12, 24, 48, 96, 192).
RANK_DIVISORS = (32, 16, 8, 4, 2, 1)
# The patterns shown beside the original: these divisors of n_embd.
PATTERN_DIVISORS = (16, 4, 1)
WINDOW = 128  # tokens per held-out window (or the model's context, if shorter)


def sweep_ranks(n_embd: int, divisors: tuple[int, ...] = RANK_DIVISORS) -> list[int]:
    """n_embd / d for each divisor (at least 1), ascending, without repeats."""
    return sorted({max(1, n_embd // d) for d in divisors})


def sweep_window(n_ctx: int) -> int:
    return min(WINDOW, n_ctx)


def latent_rank_sweep(inputs: SceneInputs) -> SceneData:
    """Arrays: ranks, cache_bytes_per_token, top1_agreement, perplexity, attention_kl
    (mean), energy_kept [R] (the sweep's rows); pattern_ranks [3]; patterns [4, T, T]
    (the original's, then each pattern rank's, of the shown head on the prompt);
    w_kv [2C, C] the shown layer's [W_K; W_V] and its singular_values [C]."""
    model = inputs.model
    config = model.config
    text = HELDOUT_SAMPLE.read_text(encoding="utf-8")
    ranks = sweep_ranks(config.n_embd)
    window = sweep_window(config.n_ctx)
    sweep = rank_sweep(model, text, ranks, window)
    rows = sweep["ranks"]

    head = main_head(model, inputs.params)
    bos = inputs.params.show_bos
    pattern_ranks = sweep_ranks(config.n_embd, PATTERN_DIVISORS)
    spectrum = kv_spectrum(model.h[head.layer].attn)
    original = capture_attention(model, inputs.params.prompt, bos=bos, top_k=1)
    patterns = [original.pattern[head.layer, head.head]]
    for rank in pattern_ranks:
        converted = capture_attention(convert_gpt2(model, rank), inputs.params.prompt, bos, 1)
        patterns.append(converted.pattern[head.layer, head.head])

    def column(name: str) -> np.ndarray:
        return np.array([row[name] for row in rows], dtype=np.float64)

    return SceneData(
        "latent_rank_sweep",
        arrays={
            "ranks": np.array(ranks, dtype=np.int64),
            "cache_bytes_per_token": np.array(
                [row["cache_bytes_per_token"] for row in rows], dtype=np.int64
            ),
            "top1_agreement": column("top1_agreement"),
            "perplexity": column("perplexity"),
            "attention_kl": column("attention_kl_mean"),
            "energy_kept": column("kv_weight_energy_kept"),
            "pattern_ranks": np.array(pattern_ranks, dtype=np.int64),
            "patterns": np.stack(patterns).astype(np.float64),
            "singular_values": spectrum.s.cpu().numpy(),
            "w_kv": spectrum.w_kv.cpu().numpy().astype(np.float32),
        },
        meta={
            "sweep": sweep,  # rank_sweep's JSON, as `python -m mla_core sweep` writes it
            "tokens": original.tokens,
            "head": head.as_dict(),
            "n_embd": config.n_embd,
            "n_layer": config.n_layer,
            "w_kv_shape": list(spectrum.w_kv.shape),
            "rank_divisors": list(RANK_DIVISORS),
            "provenance": {
                **inputs.prompt_provenance(original.token_ids, heads=[head.name]),
                "heldout_text": heldout_provenance(HELDOUT_SAMPLE, HELDOUT_SAMPLE_SOURCE),
                "window": window,
                "computed_by": "mla_core.analysis.mla_sweep.rank_sweep",
            },
        },
    )
