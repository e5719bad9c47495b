"""The worked example of the technical notes that accompany the video this project re-creates.

The notes (Welch Labs' DeepSeek/MLA video; its scenes are in stephencwelch/manim_videos,
`_2025/deepseek/`) compute the KV cache of a "DeepSeek-V2" with 30 layers and 32 heads of
128 dims, 2 bytes per number:

    MHA  2 * 32 * 128 * 30 * 2 = 491,520 bytes per token
    MLA  (512 + 64) * 30 * 2   =  34,560 bytes per token

and print the saving as "(491,520 - 34,560) / 492,520 = 92.8%". The denominator is a typo:
divided by the cache it saves from, 491,520, the saving is 92.97%. The printed 92.8% is
exactly what the mistyped 492,520 gives, which is how the typo shows itself.

The 30 layers and 32 heads are the constructor defaults of `DeepseekV2Config` in
deepseek-ai's `configuration_deepseek.py` (the remote code of the DeepSeek-V2 repositories on
the Hugging Face hub), not the released DeepSeek-V2 (60 layers, 128 heads: 3,932,160 vs
69,120 bytes per token). transformers' own `DeepseekV2Config` defaults to 32 layers; its
head widths (128, RoPE 64, latent 512) are the same.
"""

from __future__ import annotations

from mla_core.analysis.cache_size import CacheDims, bytes_per_token

NOTES_V2_EXAMPLE = CacheDims(
    name="the notes' V2-style example (DeepseekV2Config defaults)",
    n_layers=30,
    n_heads=32,
    head_dim=128,
    kv_lora_rank=512,
    qk_rope_head_dim=64,
    qk_head_dim=128 + 64,
    v_head_dim=128,
)
NOTES_DTYPE_BYTES = 2
# As printed in the notes: "(491,520-34,560)/492,520 = 92.8%" (the denominator mistyped).
NOTES_PRINTED_DENOMINATOR = 492_520
NOTES_PRINTED_PERCENT = 92.8


def notes_example(dims: CacheDims = NOTES_V2_EXAMPLE, dtype_bytes: int = NOTES_DTYPE_BYTES) -> dict:
    """The notes' example recomputed: MHA and MLA bytes per token, the saving divided by the
    MHA cache (correct) and by the printed denominator (what the notes show), as fractions."""
    mha = bytes_per_token(dims, "mha", dtype_bytes)
    mla = bytes_per_token(dims, "mla", dtype_bytes)
    return {
        "n_layers": dims.n_layers,
        "n_heads": dims.n_heads,
        "head_dim": dims.head_dim,
        "dtype_bytes": dtype_bytes,
        "mha_bytes_per_token": mha,
        "mla_bytes_per_token": mla,
        "reduction": (mha - mla) / mha,
        "printed_denominator": NOTES_PRINTED_DENOMINATOR,
        "reduction_with_printed_denominator": (mha - mla) / NOTES_PRINTED_DENOMINATOR,
        "printed_percent": NOTES_PRINTED_PERCENT,
    }
