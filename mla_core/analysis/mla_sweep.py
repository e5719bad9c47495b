"""How much GPT-2 loses when its keys and values share a rank-r latent: a sweep over r.

For each rank r (clipped to n_embd) the GPT-2 is converted (`mla_core.models.gpt2_to_mla`) and
run on the same held-out English text as the original. Per rank:

- cache bytes per token (the `cache_size` formulas: r * layers * bytes) and the fraction of
  GPT-2's MHA cache (2 * n_embd * layers * bytes) that is;
- attention-pattern error: KL(p_GPT-2 || p_MLA) of every head's attention row, averaged
  over layers, heads and query positions (the first position is left out: it can only
  attend to itself in both models); both models run end to end, so errors of earlier
  layers carry into later ones, as they would in use;
- top-1 agreement: how often the converted model's most likely next token is GPT-2's;
- perplexity of the held-out text under the converted model (GPT-2's own is the baseline);
- the share of ||[W_K; W_V]||_F^2 that the kept singular values hold (mean over layers).

The text is cut into windows of `window` tokens, each starting with <|endoftext|>; every
window is one forward pass, so the cost is (ranks + 1) * windows forwards.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from mla_core.atomic import write_text_atomically
from mla_core.errors import UserError
from mla_core.loading.tokenizer import ENDOFTEXT_ID, gpt2_tokenizer
from mla_core.models.gpt2 import GPT2
from mla_core.models.gpt2_to_mla import cache_bytes_per_token, convert_gpt2, kv_spectrum

DEFAULT_RANKS = (8, 16, 32, 64, 128, 256, 384, 512, 768)
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "data"
HELDOUT_SAMPLE = ASSETS / "heldout_sample.txt"
HELDOUT_SAMPLE_SOURCE = (
    "assets/data/heldout_sample.txt: original English prose written for this project "
    "(~440 words), a stand-in until the held-out Wikipedia split exists"
)
DEFAULT_OUT = ASSETS / "mla_rank_sweep.json"


def clip_ranks(ranks: list[int] | tuple[int, ...], n_embd: int) -> list[int]:
    """Ranks in 1..n_embd, sorted, without repeats (larger ones are clipped to n_embd)."""
    bad = [r for r in ranks if r < 1]
    if bad:
        raise UserError(f"--ranks {bad[0]} is not allowed: every rank must be >= 1")
    return sorted({min(r, n_embd) for r in ranks})


def text_windows(text: str, window: int, max_windows: int | None = None) -> torch.Tensor:
    """The text's tokens as (n, window) rows, each [<|endoftext|>, window - 1 text tokens]."""
    if window < 2:
        raise UserError(f"--window {window} must be >= 2 tokens")
    ids = gpt2_tokenizer().encode(text)
    per_row = window - 1
    n = len(ids) // per_row
    if max_windows is not None:
        n = min(n, max_windows)
    if n < 1:
        raise UserError(
            f"the held-out text has {len(ids)} tokens, fewer than one window of {per_row}"
        )
    rows = torch.tensor(ids[: n * per_row]).view(n, per_row)
    return torch.cat((torch.full((n, 1), ENDOFTEXT_ID), rows), dim=1)


@torch.no_grad()
def run_on_windows(
    model: GPT2, windows: torch.Tensor, batch: int = 4
) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Top-1 next tokens (n, T), perplexity of the text, attention patterns (L, n, H, T, T)."""
    top1, nll, patterns = [], [], []
    for rows in windows.split(batch):
        capture: list[dict[str, torch.Tensor]] = []
        logits = model(rows.to(model.wte.weight.device), capture=capture).cpu()  # (b, T, V)
        top1.append(logits.argmax(-1))
        log_probs = torch.log_softmax(logits[:, :-1].double(), dim=-1)  # t predicts t + 1
        nll.append(-log_probs.gather(-1, rows[:, 1:, None]).flatten())
        patterns.append(torch.stack([layer["pattern"].cpu().double() for layer in capture]))
    perplexity = float(torch.cat(nll).mean().exp())
    return torch.cat(top1), perplexity, torch.cat(patterns, dim=1)


def attention_kl(reference: torch.Tensor, approx: torch.Tensor) -> torch.Tensor:
    """Mean KL(reference || approx) per layer, over heads and query rows 1.. : shape (L,).

    Summed as p log(p / q) - p + q per key: the same KL for rows that sum to 1, but every
    term is >= 0, so float rounding cannot make a near-zero KL negative.
    """
    p, q = reference[..., 1:, :], approx[..., 1:, :]
    log_ratio = p.log() - q.clamp_min(1e-300).log()
    terms = torch.where(p > 0, p * log_ratio - p + q, q)
    return terms.sum(-1).mean(dim=(1, 2, 3))


def rank_sweep(
    model: GPT2,
    text: str,
    ranks: list[int] | tuple[int, ...] = DEFAULT_RANKS,
    window: int = 128,
    max_windows: int | None = None,
    dtype_bytes: int = 2,
) -> dict:
    """The sweep's numbers (see the module docstring) as a JSON-ready dict."""
    config = model.config
    ranks = clip_ranks(ranks, config.n_embd)
    if window > config.n_ctx:
        raise UserError(
            f"--window {window} is longer than the model's context of {config.n_ctx} tokens"
        )
    windows = text_windows(text, window, max_windows)
    spectra = [kv_spectrum(block.attn) for block in model.h]  # one SVD per layer, all ranks
    base_top1, base_perplexity, base_patterns = run_on_windows(model, windows)
    mha_bytes = cache_bytes_per_token(config, 1, dtype_bytes)["mha"]
    rows = []
    for rank in ranks:
        converted = convert_gpt2(model, rank, spectra)
        top1, perplexity, patterns = run_on_windows(converted, windows)
        kl_per_layer = attention_kl(base_patterns, patterns)
        mla_bytes = cache_bytes_per_token(config, rank, dtype_bytes)["mla"]
        rows.append(
            {
                "rank": rank,
                "cache_bytes_per_token": mla_bytes,
                "cache_fraction_of_mha": mla_bytes / mha_bytes,
                "attention_kl_mean": float(kl_per_layer.mean()),
                "attention_kl_per_layer": [float(x) for x in kl_per_layer],
                "top1_agreement": float((top1 == base_top1).double().mean()),
                "perplexity": perplexity,
                "kv_weight_energy_kept": sum(s.energy_kept(rank) for s in spectra) / len(spectra),
            }
        )
    return {
        "what": "GPT-2 attention converted to MLA by a joint truncated SVD of [W_K; W_V] per "
        "layer (mla_core.models.gpt2_to_mla), at each rank",
        "model": {
            "name": config.name,
            "n_layer": config.n_layer,
            "n_head": config.n_head,
            "n_embd": config.n_embd,
        },
        "dtype_bytes": dtype_bytes,
        "mha_cache_bytes_per_token": mha_bytes,
        "text": {
            "windows": int(windows.shape[0]),
            "window_tokens": window,
            "scored_tokens": int(windows[:, 1:].numel()),
        },
        "metrics": {
            "attention_kl_mean": "mean over layers, heads and query positions >= 1 of "
            "KL(GPT-2 pattern row || MLA pattern row), nats",
            "top1_agreement": "fraction of positions where both models' argmax next token agree",
            "perplexity": "exp(mean NLL) of the held-out text tokens",
            "kv_weight_energy_kept": "mean over layers of sum(S[:r]^2) / sum(S^2) of [W_K; W_V]",
        },
        "baseline_perplexity": base_perplexity,
        "ranks": rows,
    }


def text_provenance(path: Path, description: str) -> dict:
    """Where the text came from: its path (relative to the repository when inside it) and sha256."""
    data = path.read_bytes()
    try:
        shown = str(path.resolve().relative_to(ASSETS.parent.parent))
    except ValueError:
        shown = str(path)
    return {"path": shown, "sha256": hashlib.sha256(data).hexdigest(), "source": description}


def write_json_atomically(obj: dict, target: Path) -> None:
    if not target.parent.is_dir():
        raise UserError(f"--out {str(target)!r}: the folder {str(target.parent)!r} does not exist")
    write_text_atomically(target, json.dumps(obj, indent=2) + "\n")


def format_table(result: dict) -> str:
    """The sweep as a Markdown table (the README and the closing note use it)."""
    lines = [
        f"MHA cache: {result['mha_cache_bytes_per_token']:,} bytes/token "
        f"({result['dtype_bytes']} bytes per number); GPT-2 perplexity "
        f"{result['baseline_perplexity']:.2f}",
        "",
        "| rank | cache bytes/token | of MHA | attention KL | top-1 agreement | perplexity "
        "| K/V energy kept |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["ranks"]:
        lines.append(
            f"| {row['rank']} | {row['cache_bytes_per_token']:,} "
            f"| {row['cache_fraction_of_mha']:.1%} | {row['attention_kl_mean']:.3g} "
            f"| {row['top1_agreement']:.1%} | {row['perplexity']:.2f} "
            f"| {row['kv_weight_energy_kept']:.1%} |"
        )
    return "\n".join(lines)
