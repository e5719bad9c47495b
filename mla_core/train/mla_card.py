"""The demo MLA model's folder: the ablation's trained MLA run as a Hugging Face DeepSeek-V3
folder (`loading.deepseek_folder`), with its card (MODEL.md), loss curve and training record.

    python -m mla_core ablation ... --save-mla assets/models/demo-mla

The card says what the model is, how it was trained (the exact command, seed and time), what
it scores on the demo GPT-2's held-out documents, what it caches per token, and what its heads
do (`analysis.head_scores`, the same four scores as the demo GPT-2's card).
"""

from __future__ import annotations

import json
import platform
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from mla_core.atomic import copy_atomically, write_text_atomically
from mla_core.models.deepseek import DeepSeekModel

WEIGHTS_DTYPE = torch.bfloat16  # as shipped: 2 bytes per parameter


def plot_curve(history: dict, tokens_per_step: int, path: Path) -> None:
    """Training loss (per batch and a 25-step mean) and the validation checks, per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, train = np.asarray(history["step"]), np.asarray(history["train_loss"])
    window = min(25, len(train))
    smooth = np.convolve(train, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, train, color="#bbbbbb", lw=0.6, label="training batch loss")
    ax.plot(
        steps[window - 1 :], smooth, color="#1f77b4", lw=1.5, label=f"training ({window}-step mean)"
    )
    ax.plot(
        history["val_step"], history["val_loss"], "o-", color="#d62728", ms=3, label="validation"
    )
    ax.set_xlabel(f"step ({tokens_per_step:,} tokens per step)")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title("demo-mla: the ablation's MLA run on Wikipedia summaries")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def head_summary(model: DeepSeekModel) -> dict:
    """The demo GPT-2 card's head summary, with 40 random tokens repeated once unless the
    model's context is shorter."""
    from mla_core.analysis.capture import context_length
    from mla_core.train.model_folder import head_score_summary

    return head_score_summary(model, min(40, (context_length(model.config) - 1) // 2))


def model_card(record: dict) -> str:
    """MODEL.md from the training record."""
    from mla_core.train.card import head_section

    c, run, shape = record["config"], record["result"], record["shape"]
    mha_bytes = 2 * c["n_heads"] * shape["head_dim"] * c["n_layers"] * 2
    model_rows = _table(
        ("architecture", "DeepSeek-style: RMSNorm, MLA, dense SwiGLU MLP, tied embeddings"),
        ("layers x heads", f"{c['n_layers']} x {c['n_heads']} (hidden size {c['hidden_size']})"),
        (
            "attention",
            "queries straight from h (no query compression, as DeepSeek-V2-Lite); latent c_KV "
            f"of {c['kv_lora_rank']} numbers with RMSNorm; per head {c['qk_nope_head_dim']} "
            f"content + {c['qk_rope_head_dim']} RoPE dims for q.k, {c['v_head_dim']} value "
            f"dims; one RoPE key of {c['qk_rope_head_dim']} numbers shared by all heads",
        ),
        (
            "KV cache per token",
            f"{c['kv_lora_rank']} + {c['qk_rope_head_dim']} = "
            f"{run['cache_numbers_per_token_per_layer']} numbers per layer, "
            f"{run['cache_bytes_per_token']:,} bytes over {c['n_layers']} layers in bf16 "
            f"(multi-head attention of the same shape: {mha_bytes:,})",
        ),
        (
            "MLP width",
            f"{c['intermediate_size']} (matched so the ablation's four models have close "
            "parameter counts)",
        ),
        ("context", f"trained on {shape['n_ctx']}-token windows; RoPE base {c['rope_theta']:g}"),
        (
            "parameters",
            f"{run['parameters']:,} (the 50,257 x {c['hidden_size']} token embedding is "
            f"{50257 * c['hidden_size']:,})",
        ),
        ("weights", f"`model.safetensors`, bfloat16, {record['weights_bytes'] / 1e6:.1f} MB"),
        ("sha256", f"`{record['sha256']}`"),
    )
    training_rows = _table(
        ("command", f"`{record['command']}`"),
        (
            "steps",
            f"{shape['steps']:,} x {shape['batch_size']} sequences x {shape['n_ctx']} tokens = "
            f"{shape['tokens_seen']:,} tokens",
        ),
        (
            "optimiser",
            f"AdamW (betas 0.9, 0.95; weight decay {shape['weight_decay']}), lr "
            f"{shape['lr']:g} after {shape['warmup_steps']} warm-up steps, cosine to "
            f"{shape['min_lr']:g}, gradient clip {shape['grad_clip']}",
        ),
        (
            "precision",
            "bf16 autocast, fp32 master weights, forward and loss compiled together; "
            "shipped as bfloat16",
        ),
        ("seed", str(record["seed"])),
        (
            "wall time",
            f"{run['train_seconds'] / 60:.1f} min on {record['threads']} CPU thread(s) "
            f"(torch {record['torch_version']}), sharing the machine with other jobs",
        ),
    )
    result_rows = _table(
        (
            "validation loss",
            f"{run['val_loss']:.4f} nats/token (all {record['validation_tokens']:,} validation "
            f"tokens of the demo GPT-2's held-out documents, in {shape['n_ctx']}-token windows)",
        ),
        ("validation perplexity", f"{run['val_ppl']:.1f}"),
        (
            "final training loss",
            f"{run['final_train_loss']:.4f} (mean of the last 50 training batches)",
        ),
    )
    return f"""# demo-mla: the project's small DeepSeek-style model

A small language model with DeepSeek's Multi-head Latent Attention, trained by this project on
the same text, tokenizer and split as the demo GPT-2 (`assets/models/demo-gpt2`). It is the
MLA run of the attention ablation (`python -m mla_core ablation`, `docs/ablation.md`): the
same recipe trained MHA, GQA and MQA models beside it. **It is not a DeepSeek model**: it is
tiny and weak (validation perplexity {run["val_ppl"]:.0f}), and it exists so that the video's
MLA scenes draw trained matrices, not noise.

Saved in the Hugging Face DeepSeek-V3 layout (`config.json` with `model_type: deepseek_v3`,
every layer dense, `model.safetensors`): `transformers.DeepseekV3ForCausalLM.from_pretrained`
loads it, and `tests/test_deepseek_folder.py` checks that its logits equal ours.

{model_rows}

## Training
{training_rows}

![loss curve](loss_curve.png)

## Results
{result_rows}

{head_section(record["head_scores"])}
Measured on this folder with `python -m mla_core heads --weights assets/models/demo-mla`.

## Corpus and licence
{record["corpus"]} The weights are a derivative of that text; share them under the same
licence (CC BY-SA 4.0).
"""


def _table(*rows: tuple[str, str]) -> str:
    """A two-column Markdown table without a header."""
    return "\n".join(["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)])


def write_demo_mla_folder(model: DeepSeekModel, table: dict, history: dict, target: Path) -> dict:
    """Save the trained MLA model to `target` as a DeepSeek-V3 folder with its card; return
    the training record (also written as training.json)."""
    from mla_core.loading.deepseek_folder import save_deepseek_folder
    from mla_core.loading.weights import sha256_of_file

    model = model.float().eval()
    run = next(r for r in table["runs"] if r["kind"] == "mla")
    record = {
        "model": "demo-mla",
        "config": asdict(model.config),
        "result": run,
        "shape": table["shape"],
        "command": table["command"],
        "seed": table["seed"],
        "threads": table["threads"],
        "torch_version": table["torch_version"],
        "python_version": platform.python_version(),
        "validation_tokens": table["data"]["validation_tokens"],
        "corpus": table["data"]["corpus"],
        "head_scores": head_summary(model),
        "history": history,
    }
    save_deepseek_folder(model, target, dtype=WEIGHTS_DTYPE)
    weights = Path(target) / "model.safetensors"
    record["weights_bytes"] = weights.stat().st_size
    record["sha256"] = sha256_of_file(weights)  # the card gives the weights' size and hash
    with tempfile.TemporaryDirectory() as scratch:
        curve = Path(scratch) / "loss_curve.png"
        plot_curve(history, table["shape"]["batch_size"] * table["shape"]["n_ctx"], curve)
        copy_atomically(curve, Path(target) / "loss_curve.png")
    write_text_atomically(Path(target) / "MODEL.md", model_card(record))
    write_text_atomically(Path(target) / "training.json", json.dumps(record, indent=1) + "\n")
    return record
