"""MODEL.md and loss_curve.png: what the shipped model is, how it was trained, what it scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mla_core.train.batches import RANDOM_REPEAT_LENGTH, REPEAT_SPAN


def plot_loss_curve(
    history: dict, tokens_per_step: int, path: Path, stages: list[dict] | None = None
) -> None:
    """Training and validation loss of this run and, with the head scores, beside it; with
    several `stages` (runs that started from the previous one's weights), the validation
    loss and head scores of every stage, one after the other, boundaries dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    boundaries = _stage_boundaries(stages)  # where each later stage starts
    several = bool(boundaries)
    steps = np.asarray(history["step"]) + (boundaries[-1] if several else 0)
    train = np.asarray(history["train_loss"])
    window = 25
    smooth = (
        np.convolve(train, np.ones(window) / window, mode="valid") if len(train) > window else train
    )
    heads = [kind for kind in ("previous_token", "induction") if history.get(f"best_{kind}")]
    fig, axes = plt.subplots(1, 2 if heads else 1, figsize=(12 if heads else 7, 4), dpi=110)
    ax = axes[0] if heads else axes
    ax.plot(steps, train, color="#bbbbbb", lw=0.6, label="training batch loss")
    ax.plot(
        steps[len(steps) - len(smooth) :],
        smooth,
        color="#1f77b4",
        lw=1.5,
        label=f"training loss ({window}-step mean)",
    )
    curves = _stage_curves(stages) if several else history
    ax.plot(
        curves["val_step"],
        curves["val_loss"],
        "o-",
        color="#d62728",
        ms=3,
        label="validation loss" + (" (all stages)" if several else ""),
    )
    for boundary in boundaries:
        ax.axvline(boundary, color="#888888", ls=":", lw=1)
    ax.set_xlabel(
        f"step ({tokens_per_step:,} tokens per step)" + (", all stages" if several else "")
    )
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title("demo-gpt2: training on Wikipedia summaries")
    ax.grid(alpha=0.3)
    ax.legend()
    if heads:
        from mla_core.analysis.head_scores import SCORE_LABELS

        ax = axes[1]
        for kind, colour in zip(heads, ("#2ca02c", "#9467bd"), strict=False):
            ax.plot(
                curves["val_step"],
                curves[f"best_{kind}"],
                "o-",
                color=colour,
                ms=3,
                label=f"best {SCORE_LABELS[kind]} score",
            )
        for boundary in boundaries:
            ax.axvline(boundary, color="#888888", ls=":", lw=1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("step" + (" (all stages)" if several else ""))
        ax.set_ylabel("score of the best head (0..1)")
        ax.set_title("attention heads finding their roles (mla_core.analysis.head_scores)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _stage_curves(stages: list[dict]) -> dict:
    """The stages' validation curves joined on one step axis."""
    joined: dict = {"val_step": [], "val_loss": [], "best_previous_token": [], "best_induction": []}
    offset = 0
    for stage in stages:
        curve = stage.get("curve", {})
        n = len(curve.get("val_step", []))
        joined["val_step"] += [offset + step for step in curve.get("val_step", [])]
        for key in ("val_loss", "best_previous_token", "best_induction"):
            joined[key] += curve.get(key, [float("nan")] * n)
        offset += stage["steps"]
    return joined


def _stage_boundaries(stages: list[dict] | None) -> list[int]:
    if not stages or len(stages) < 2:
        return []
    return list(np.cumsum([stage["steps"] for stage in stages[:-1]]))


def stages_section(stages: list[dict]) -> str:
    """The card's table of training stages, when the weights went through more than one run."""
    if len(stages) < 2:
        return ""
    rows = "".join(
        f"| {i} | {st['steps']:,} | {st['tokens_seen']:,} | {st['wall_time_s'] / 60:.0f} min "
        f"({st['threads']} thread{'s' if st['threads'] > 1 else ''}) | {st['val_loss']:.4f} | "
        f"{st['best_heads']['previous_token']:.3f} | {st['best_heads']['induction']:.3f} |\n"
        for i, st in enumerate(stages, 1)
    )
    commands = "\n".join(f"# stage {i}\n{st['command']}" for i, st in enumerate(stages, 1))
    total = sum(st["tokens_seen"] for st in stages)
    minutes = sum(st["wall_time_s"] for st in stages) / 60
    return f"""
## Training stages
The weights went through {len(stages)} runs, each starting from the weights the one before
wrote (`--init-from`), with a fresh optimizer and learning-rate schedule: {total:,} tokens
and {minutes:.0f} minutes in all. Validation loss (all held-out tokens) and the best head
scores at the end of each stage:

| stage | steps | tokens | wall time | validation loss | best previous-token | best induction |
|---:|---:|---:|---:|---:|---:|---:|
{rows}
Commands, in order (paths as they were on the training machine; stage 1's output is the
model this project shipped before, in git history):
```
{commands}
```
"""


def head_section(head_scores: dict) -> str:
    """The card's table of attention heads: the best of each kind, then every head."""
    from mla_core.analysis.head_scores import SCORE_KINDS, SCORE_LABELS

    best = head_scores.get("best", head_scores)  # older records kept only the best
    rows = "".join(
        f"| {SCORE_LABELS[kind]} | {pick['head']} | {pick['score']:.3f} |\n"
        for kind, pick in best.items()
    )
    text = (
        "\n## Attention heads (`python -m mla_core heads`)\n"
        "The highest-scoring head of each kind (scores in [0, 1]; a head that attends "
        "uniformly over ~90 tokens scores about 0.05 on previous-token and first-token):\n\n"
        f"| score | head | value |\n|---|---|---|\n{rows}"
    )
    previous = best["previous_token"]
    if previous["score"] > 0.5:
        text += (
            f"\nHead {previous['head']} is a clear previous-token head: on ordinary text it puts "
            f"{previous['score']:.0%} of its attention on the token just before.\n"
        )
    else:
        text += (
            "\nNo head is a clear previous-token head yet (none above 0.5): with the tokens "
            "this run could afford, the heads still attend by content, not by position. "
            "Position-based heads need far more training tokens (`--device cuda`).\n"
        )
    if "all" in head_scores:
        header = " | ".join(SCORE_LABELS[kind] for kind in SCORE_KINDS)
        lines = "".join(
            f"| {h['layer']}.{h['head']} | "
            + " | ".join(f"{h[kind]:.3f}" for kind in SCORE_KINDS)
            + " |\n"
            for h in head_scores["all"]
        )
        text += (
            "\nEvery head (previous-token and first-token measured on a short English text, "
            "duplicate-token and induction on random tokens repeated twice):\n\n"
            f"| head | {header} |\n|---|" + "---:|" * len(SCORE_KINDS) + f"\n{lines}"
        )
    return text


def model_card(t: dict) -> str:
    from mla_core.loading.corpus import CORPUS_ATTRIBUTION, CORPUS_NAME

    mb = t["weights_bytes"] / 1e6
    position_init = {
        "normal": "N(0, 0.02) like GPT-2",
        "sinusoidal": "to the Transformer's sinusoids (scaled to std "
        f"{t['settings'].get('position_std', 0.02):g}), so that heads can learn relative offsets "
        "such as 'one token back' early",
    }[t["settings"].get("position_init", "normal")]
    notes = f"\n| note | {t['note']} |" if t.get("note") else ""
    heads = head_section(t["head_scores"]) if t.get("head_scores") else ""
    stages = stages_section(t.get("stages", []))
    retrain_note = (
        "That is the last stage; it starts from the weights of the stages before it (above), "
        "run in order.\n"
        if stages
        else ""
    )
    random_repeats = t["settings"].get("random_repeat_fraction", 0.0)
    random_row = (
        f"\n| random repeats | {random_repeats:.0%} of the training windows are a random "
        f"sequence of {RANDOM_REPEAT_LENGTH[0]}-{RANDOM_REPEAT_LENGTH[1]} tokens drawn from "
        "the corpus, repeated to fill the window, with no loss on its first copy: only "
        "copying from the earlier occurrence predicts the rest |"
        if random_repeats
        else ""
    )
    repeats = t["settings"].get("repeat_fraction", 0.0)
    repeat_row = (
        f"\n| planted repeats | {repeats:.0%} of the training windows get one span of their own "
        f"text ({REPEAT_SPAN[0]}-{REPEAT_SPAN[1]} tokens, random place) copied later in the "
        "window, so that copying pays off; validation text has none |"
        if repeats
        else ""
    )
    return f"""# demo-gpt2: the project's embedded GPT-2-architecture model

A small model with the GPT-2 architecture and the exact GPT-2 tokenizer (50,257-token BPE),
trained by this project so that the video renders on a machine with no GPT-2 weights and no
network. **It is not OpenAI's GPT-2**: everything drawn with it says "demo model". Pass
`--weights DIR` (a Hugging Face GPT-2 folder) to use GPT-2 small instead.

| | |
|---|---|
| architecture | GPT-2: pre-LayerNorm blocks, learned positions, GELU (tanh), tied head |
| layers x heads x head dim | {t["n_layer"]} x {t["n_head"]} x {t["head_dim"]} \
(n_embd {t["n_embd"]}) |
| context | {t["n_ctx"]} tokens |
| parameters | {t["parameters"]:,} (the token embedding alone is \
{t["vocab_size"]:,} x {t["n_embd"]}) |
| weights | `model.safetensors`, float16, {mb:.1f} MB |
| sha256 | `{t["sha256"]}` |

## Why this shape
The 50,257 x n_embd token embedding dominates the size: at float16 and a 25 MB budget n_embd
can be at most about 240. n_embd = {t["n_embd"]} = {t["n_head"]} x {t["head_dim"]} keeps
GPT-2's {t["head_dim"]}-dimensional heads and leaves room for {t["n_layer"]} layers
({t["n_layer"] * t["n_head"]} heads in all; an induction circuit needs at least two layers).
A {t["n_ctx"]}-token context is longer than anything the video shows.

## Corpus and licence
{CORPUS_NAME}. {CORPUS_ATTRIBUTION} The weights are a derivative of that text; share them
under the same licence (CC BY-SA 4.0). Documents are split by a seeded permutation:
{t["settings"]["val_fraction"]:.0%} of them ({t["validation_tokens"]:,} tokens) are held out for
validation; `heldout_slice.json` ships {t["heldout_slice_tokens"]} tokens of them.

## Training{" (the last stage)" if stages else ""}
| | |
|---|---|
| steps | {t["steps"]:,} x {t["batch_size"]} sequences x {t["n_ctx"]} tokens |
| tokens seen | {t["tokens_seen"]:,} |
| optimiser | AdamW (betas 0.9, 0.95; weight decay {t["settings"]["weight_decay"]}), \
lr {t["settings"]["lr"]:g} after {t["settings"]["warmup_steps"]} warm-up steps, cosine to \
{t["settings"]["min_lr"]:g}, gradient clip {t["settings"]["grad_clip"]} |
| precision | {t["settings"]["precision"]} autocast, fp32 master weights; shipped as float16 |
| position embedding | learned, as in GPT-2; initialised {position_init} |{repeat_row}{random_row}
| seed | {t["seed"]} |
| wall time | {t["wall_time_s"] / 60:.1f} min on {t["threads"]} CPU threads \
(torch {t["torch_version"]}) |{notes}
{stages}
## Results (measured on the float16 weights as shipped)
| | |
|---|---|
| final training loss | {t["final_train_loss"]:.4f} ({t["final_train_loss_note"]}) |
| validation loss | {t["val_loss"]:.4f} nats/token \
(all {t["validation_tokens"]:,} validation tokens) |
| validation perplexity | {t["val_ppl"]:.2f} |
| held-out slice loss | {t["heldout_slice_loss"]:.4f} ({t["heldout_slice_tokens"]} tokens of \
`heldout_slice.json`; recomputed by tests/test_demo_model.py) |

{heads}
![loss curve](loss_curve.png)

The numbers are also in `training.json` (with the whole loss history).

## Re-training
```
pip install --no-deps -r requirements-train.txt
{t["command"]}
```
{retrain_note}Same command, same machine kind, same torch: the same weights (fixed seeds, a fixed
number of steps, batches drawn per step from a seeded generator).
"""
