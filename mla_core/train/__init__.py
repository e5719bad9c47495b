"""Train the embedded demo model: a small GPT-2 on Wikipedia summaries, reproducibly, on a CPU.

    python -m mla_core.train --steps 1400 --out assets/models/demo-gpt2

What one run does, top to bottom:
1. corpus: the Wikipedia summaries (`mla_core.loading.corpus`), split by document into train and
   validation with a fixed seed, tokenized with the exact GPT-2 BPE;
2. model: `mla_core.models.gpt2.GPT2` of the chosen shape, GPT-2's initialisation, fixed seed;
3. training: AdamW, linear warm-up then cosine decay, gradient clipping; the batch of step s
   is drawn by a generator seeded with (seed, s), so a run resumed from a checkpoint sees the
   same batches as one that never stopped; bfloat16 autocast for speed (master weights fp32);
   optionally some windows get a planted repeat of their own text (`--repeat-fraction`);
   at every validation check every head is scored (`mla_core.analysis.head_scores`) and the best
   previous-token and induction scores are logged, so a run shows whether heads form;
4. a checkpoint (safetensors + json, never a pickle) every `--checkpoint-every` steps;
5. the model folder (written to a temporary folder, then renamed into place): config.json,
   model.safetensors (float16, Hugging Face GPT-2 layout via `mla_core.loading.weights.save_gpt2`),
   model.safetensors.sha256, heldout_slice.json, training.json, loss_curve.png and MODEL.md.
   Every loss recorded there is measured on the float16 weights as shipped.

A fixed number of steps, never a timer: the same command gives the same model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from mla_core.errors import UserError
from mla_core.models.configs import GPT2Config
from mla_core.models.gpt2 import GPT2

DEFAULT_OUT = Path("assets/models/demo-gpt2")
DEFAULT_CHECKPOINT_DIR = Path(".cache/train-checkpoint")
HELDOUT_FILE = "heldout_slice.json"
TRAINING_FILE = "training.json"
HELDOUT_TOKENS = 512  # "a few hundred tokens" of validation text shipped beside the model


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    n_ctx: int
    n_layer: int
    n_head: int
    n_embd: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    val_fraction: float
    seed: int
    eval_every: int
    eval_windows: int
    precision: str  # "bf16" (autocast) or "fp32"
    position_init: str = "normal"  # "normal" (GPT-2's N(0, 0.02)) or "sinusoidal"
    repeat_fraction: float = 0.0  # share of windows with a span of their own text repeated
    position_std: float = 0.02  # std of the sinusoidal position init (GPT-2's init is 0.02)
    fused_adamw: bool = False  # torch's fused AdamW kernel: same maths, fewer passes over memory
    compile: bool = False  # torch.compile the forward and the loss together (same maths, faster)


# --- learning rate and batches ----------------------------------------------------------


def learning_rate(step: int, s: TrainSettings) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` at the last step."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    progress = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_for_step(
    ids: np.ndarray,
    step: int,
    batch_size: int,
    n_ctx: int,
    seed: int,
    repeat_fraction: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of the token stream: inputs [B, T] and next-token targets [B, T].

    With `repeat_fraction` > 0, that share of the windows (on average) gets one span of its
    own text copied to a later place (`plant_repeat`).
    """
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(ids) - n_ctx - 1, size=batch_size)
    windows = np.stack([ids[s : s + n_ctx + 1] for s in starts]).astype(np.int64)
    if repeat_fraction > 0:
        for window in windows:
            if rng.random() < repeat_fraction:
                plant_repeat(window, rng)
    windows = torch.from_numpy(windows)
    return windows[:, :-1], windows[:, 1:]


REPEAT_SPAN = (8, 128)  # shortest and longest repeated span, in tokens


def plant_repeat(window: np.ndarray, rng: np.random.Generator) -> None:
    """Copy a span of `window` over a later stretch of it, in place.

    Text repeats itself (names, phrases, quoted lines), and a model that notices "this came
    before, and what followed it then was B" can predict B again: the induction circuit, a
    previous-token head feeding an induction head (Olsson et al. 2022). Wikipedia lead
    sections are too short to repeat much, so some windows get one planted repeat. The span's
    length, source and destination are random, so no fixed positional offset predicts the
    copy: only looking up the earlier occurrence by content does.
    """
    n = len(window)
    length = int(rng.integers(REPEAT_SPAN[0], min(REPEAT_SPAN[1], n // 2) + 1))
    source = int(rng.integers(0, n - 2 * length + 1))
    target = int(rng.integers(source + length, n - length + 1))
    window[target : target + length] = window[source : source + length]


def sinusoidal_positions(n_ctx: int, n_embd: int, std: float = 0.02) -> torch.Tensor:
    """A starting point for the learned position embedding: the Transformer's sinusoids.

    Row p holds sin/cos of p at geometrically spaced frequencies (Vaswani et al. 2017), scaled
    to the std of GPT-2's initialisation. Position p - 1 is then a fixed rotation of position p,
    so an attention head can learn "look one token back" with one linear map instead of first
    discovering an ordering of 256 random vectors. The rows stay trainable, as in GPT-2.
    """
    position = torch.arange(n_ctx, dtype=torch.float64)[:, None]  # [T, 1]
    frequency = 10000.0 ** (-torch.arange(0, n_embd, 2, dtype=torch.float64) / n_embd)
    table = torch.zeros(n_ctx, n_embd, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return (table * std * math.sqrt(2.0)).float()  # sin and cos have RMS 1/sqrt(2)


# --- losses -----------------------------------------------------------------------------


@torch.no_grad()
def sequence_loss(model: GPT2, ids: list[int] | np.ndarray, n_ctx: int | None = None) -> float:
    """Mean next-token cross-entropy (nats) over a token sequence, read in n_ctx-token chunks.

    Chunk c holds tokens [c*n_ctx, (c+1)*n_ctx) as inputs and predicts the token after each;
    every token but the first is predicted exactly once.
    """
    n_ctx = n_ctx or model.config.n_ctx
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, n_ctx):
        inputs = ids[start : start + n_ctx]
        targets = ids[start + 1 : start + n_ctx + 1]
        inputs = inputs[: len(targets)]
        logits = model(inputs[None].to(device))[0].float()  # [T, V]
        total += F.cross_entropy(logits, targets.to(device), reduction="sum").item()
        count += len(targets)
    return total / count


@torch.no_grad()
def validation_loss(model: GPT2, val_ids: np.ndarray, n_ctx: int, max_windows: int = 0) -> float:
    """Mean loss over consecutive n_ctx windows of the validation stream (all, or the first N)."""
    n_windows = (len(val_ids) - 1) // n_ctx
    if max_windows:
        n_windows = min(n_windows, max_windows)
    return sequence_loss(model, val_ids[: n_windows * n_ctx + 1], n_ctx)


def heldout_slice_loss(model: GPT2, model_dir: str | Path) -> float:
    """The loss on the held-out slice shipped in `model_dir` (what the tests recompute)."""
    ids = heldout_slice_ids(model_dir)
    return sequence_loss(model, ids, model.config.n_ctx)


def heldout_slice_ids(model_dir: str | Path) -> list[int]:
    """Token ids of the shipped held-out slice: its documents, each ended by <|endoftext|>."""
    from mla_core.loading.tokenizer import ENDOFTEXT_ID, gpt2_tokenizer

    data = json.loads((Path(model_dir) / HELDOUT_FILE).read_text(encoding="utf-8"))
    tok = gpt2_tokenizer()
    ids: list[int] = []
    for doc in data["documents"]:
        ids += tok.encode(doc["text"]) + [ENDOFTEXT_ID]
    return ids[: data["n_tokens"]]


def make_heldout_slice(val_docs: list, n_tokens: int) -> dict:
    """The first validation documents (in split order) that give at least n_tokens tokens."""
    from mla_core.loading.corpus import CORPUS_ATTRIBUTION, CORPUS_LICENCE
    from mla_core.loading.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    docs, have = [], 0
    for doc in val_docs:
        docs.append({"title": doc.title, "text": doc.text})
        have += len(tok.encode(doc.text)) + 1
        if have >= n_tokens:
            break
    return {
        "about": "Validation documents held out of training; the tests recompute the loss on "
        "the first n_tokens tokens (each document followed by <|endoftext|>).",
        "licence": CORPUS_LICENCE,
        "attribution": CORPUS_ATTRIBUTION
        + " Titles name the Wikipedia articles; the text is their lead section.",
        "n_tokens": min(n_tokens, have),
        "documents": docs,
    }


# --- checkpoints (safetensors + json, so resuming never unpickles) ----------------------


def save_checkpoint(
    folder: Path, model: GPT2, optimizer: torch.optim.Optimizer, step: int, history: dict
) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"},
        str(tmp / "model.safetensors"),
    )
    optim_tensors, optim_steps = {}, {}
    for index, state in optimizer.state_dict()["state"].items():
        optim_tensors[f"{index}.exp_avg"] = state["exp_avg"]
        optim_tensors[f"{index}.exp_avg_sq"] = state["exp_avg_sq"]
        optim_steps[str(index)] = float(state["step"])
    save_file(optim_tensors, str(tmp / "optimizer.safetensors"))
    meta = {"step": step, "optimizer_steps": optim_steps, "history": history}
    (tmp / "state.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_checkpoint(
    folder: Path, model: GPT2, optimizer: torch.optim.Optimizer
) -> tuple[int, dict]:
    meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    state = load_file(str(folder / "model.safetensors"))
    model.load_state_dict(state, strict=False)
    model.lm_head.weight = model.wte.weight
    tensors = load_file(str(folder / "optimizer.safetensors"))
    optim_state = optimizer.state_dict()
    optim_state["state"] = {
        int(index): {
            "step": torch.tensor(step),
            "exp_avg": tensors[f"{index}.exp_avg"],
            "exp_avg_sq": tensors[f"{index}.exp_avg_sq"],
        }
        for index, step in meta["optimizer_steps"].items()
    }
    optimizer.load_state_dict(optim_state)
    return meta["step"], meta["history"]


# --- the run ----------------------------------------------------------------------------


def build_optimizer(model: GPT2, s: TrainSettings) -> torch.optim.AdamW:
    """AdamW; weight decay on the matrices (and the embeddings), not on biases or LayerNorms."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": s.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=s.lr, betas=(0.9, 0.95), eps=1e-8, fused=True if s.fused_adamw else None
    )


def training_loss_function(model: GPT2, device: str, autocast_dtype, compile_step: bool):
    """The loss of one batch: forward (under autocast) and cross-entropy kept in float32.

    With `compile_step`, forward and loss are compiled as one graph, so the 50,257-wide logits
    never round-trip through memory in float32 between the two (most of a step's time).
    """

    def loss_of(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.autocast(
            device_type=device, dtype=autocast_dtype or torch.float32, enabled=bool(autocast_dtype)
        ):
            logits = model(inputs)  # [B, T, V]
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))

    return torch.compile(loss_of) if compile_step else loss_of


def train(
    s: TrainSettings,
    out_dir: Path,
    device: str,
    checkpoint_dir: Path,
    checkpoint_every: int,
    resume: bool,
    command: str,
) -> dict:
    from tqdm import tqdm

    from mla_core.loading.corpus import load_wiki_summaries, split_documents, token_stream

    started = time.time()
    docs = load_wiki_summaries()
    train_docs, val_docs = split_documents(docs, s.val_fraction, s.seed)
    train_ids, val_ids = token_stream(train_docs), token_stream(val_docs)
    print(
        f"corpus: {len(docs):,} documents; train {len(train_docs):,} docs / {len(train_ids):,} "
        f"tokens, validation {len(val_docs):,} docs / {len(val_ids):,} tokens",
        flush=True,
    )

    config = GPT2Config(
        name="demo-gpt2", n_ctx=s.n_ctx, n_embd=s.n_embd, n_layer=s.n_layer, n_head=s.n_head
    )
    torch.manual_seed(s.seed)
    model = GPT2(config)
    if s.position_init == "sinusoidal":
        with torch.no_grad():
            model.wpe.weight.copy_(
                sinusoidal_positions(config.n_ctx, config.n_embd, std=s.position_std)
            )
    model = model.to(device)
    optimizer = build_optimizer(model, s)
    autocast_dtype = torch.bfloat16 if s.precision == "bf16" else None
    step_loss = training_loss_function(model, device, autocast_dtype, s.compile)
    history: dict = {"step": [], "train_loss": [], "lr": [], "val_step": [], "val_loss": []}
    start_step = 0
    if resume and (checkpoint_dir / "state.json").is_file():
        start_step, history = load_checkpoint(checkpoint_dir, model, optimizer)
        print(f"resumed from {checkpoint_dir} at step {start_step}", flush=True)
    seconds_before = history.get("wall_time_s", 0.0)
    print(f"model: {model.num_parameters():,} parameters, {asdict(config)}", flush=True)

    bar = tqdm(
        range(start_step, s.steps),
        initial=start_step,
        total=s.steps,
        mininterval=10.0,
        file=sys.stdout,
        dynamic_ncols=False,
        ncols=100,
    )
    for step in bar:
        model.train()
        lr = learning_rate(step, s)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = batch_for_step(
            train_ids, step, s.batch_size, s.n_ctx, s.seed, s.repeat_fraction
        )
        inputs, targets = inputs.to(device), targets.to(device)
        loss = step_loss(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        optimizer.step()

        history["step"].append(step + 1)
        history["train_loss"].append(round(loss.item(), 5))
        history["lr"].append(lr)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", refresh=False)
        done = step + 1
        if done % s.eval_every == 0 or done == s.steps:
            model.eval()
            with torch.autocast(
                device_type=device,
                dtype=autocast_dtype or torch.float32,
                enabled=bool(autocast_dtype),
            ):
                val = validation_loss(model, val_ids, s.n_ctx, s.eval_windows)
            heads = best_head_scores(model)
            history["val_step"].append(done)
            history["val_loss"].append(round(val, 5))
            for kind, score in heads.items():
                history.setdefault(f"best_{kind}", []).append(round(score, 4))
            bar.write(
                f"step {done}/{s.steps}: train loss {np.mean(history['train_loss'][-50:]):.4f} "
                f"(mean of last 50), val loss {val:.4f} ({s.eval_windows} windows), "
                f"best previous-token head {heads['previous_token']:.3f}, "
                f"induction {heads['induction']:.3f}, {time.time() - started:.0f} s"
            )
        if done % checkpoint_every == 0 or done == s.steps:
            history["wall_time_s"] = seconds_before + time.time() - started
            save_checkpoint(checkpoint_dir, model, optimizer, done, history)
            bar.write(f"checkpoint at step {done} -> {checkpoint_dir}")
    bar.close()
    # Wall time of the training proper (corpus and model set-up included), summed over resumes.
    train_seconds = seconds_before + time.time() - started

    summary = write_model_folder(
        model, s, out_dir, val_docs, val_ids, len(train_ids), history, train_seconds, command
    )
    shown = {k: v for k, v in summary.items() if k not in ("settings", "history")}
    print(json.dumps(shown, indent=2), flush=True)
    return summary


def write_model_folder(
    model: GPT2,
    s: TrainSettings,
    out_dir: Path,
    val_docs: list,
    val_ids: np.ndarray,
    n_train_tokens: int,
    history: dict,
    train_seconds: float,
    command: str,
) -> dict:
    """Save the float16 model and its card into a temporary folder, then rename it into place."""
    from mla_core.loading.weights import WEIGHTS_FILE, load_gpt2_from_dir, save_gpt2

    tokens_per_step = s.batch_size * s.n_ctx
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        save_gpt2(model.to("cpu").float(), tmp, write_sha256=False)
        to_float16(tmp / WEIGHTS_FILE, tmp / "config.json")
        from mla_core.loading.weights import verified_sha256

        (tmp / (WEIGHTS_FILE + ".sha256")).write_text(
            f"{_sha256(tmp / WEIGHTS_FILE)}\n", encoding="utf-8"
        )
        digest = verified_sha256(tmp)
        heldout = make_heldout_slice(val_docs, HELDOUT_TOKENS)
        (tmp / HELDOUT_FILE).write_text(
            json.dumps(heldout, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )

        shipped = load_gpt2_from_dir(tmp)  # float16 weights, computed in float32
        val_loss = validation_loss(shipped, val_ids, s.n_ctx)
        heldout_loss = heldout_slice_loss(shipped, tmp)
        tail = history["train_loss"][-50:]
        heads = head_score_summary(shipped)
        summary = {
            "model": "demo-gpt2",
            "architecture": "GPT-2 (pre-LayerNorm, learned positions, gelu_new, tied head)",
            "n_layer": s.n_layer,
            "n_head": s.n_head,
            "n_embd": s.n_embd,
            "head_dim": s.n_embd // s.n_head,
            "n_ctx": s.n_ctx,
            "vocab_size": model.config.vocab_size,
            "parameters": model.num_parameters(),
            "weights_dtype": "float16",
            "weights_bytes": (tmp / WEIGHTS_FILE).stat().st_size,
            "sha256": digest,
            "steps": s.steps,
            "batch_size": s.batch_size,
            "tokens_per_step": tokens_per_step,
            "tokens_seen": tokens_per_step * s.steps,
            "train_tokens": int(n_train_tokens),
            "epochs": round(tokens_per_step * s.steps / n_train_tokens, 3),
            "validation_tokens": int(len(val_ids)),
            "final_train_loss": round(float(np.mean(tail)), 4),
            "final_train_loss_note": f"mean of the last {len(tail)} training batches",
            "val_loss": round(val_loss, 4),
            "val_ppl": round(math.exp(val_loss), 2),
            "heldout_slice_tokens": heldout["n_tokens"],
            "heldout_slice_loss": round(heldout_loss, 4),
            "head_scores": heads,
            "wall_time_s": round(train_seconds),
            "command": command,
            "seed": s.seed,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "threads": torch.get_num_threads(),
            "settings": asdict(s),
            "history": history,
        }
        plot_loss_curve(history, tokens_per_step, tmp / "loss_curve.png")
        (tmp / TRAINING_FILE).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        (tmp / "MODEL.md").write_text(model_card(summary), encoding="utf-8")
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)
        _replace_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


@torch.no_grad()
def best_head_scores(model: GPT2) -> dict[str, float]:
    """The highest score of each kind over all heads, tracked during training."""
    from mla_core.analysis.head_scores import SCORE_KINDS, measure_head_scores

    scores = measure_head_scores(model)
    return {kind: float(scores.kind(kind).max()) for kind in SCORE_KINDS}


def head_score_summary(model: GPT2) -> dict:
    """Every head's scores and the most typical head of each kind (`analysis.head_scores`)."""
    from mla_core.analysis.head_scores import measure_head_scores, typical_heads

    scores = measure_head_scores(model)
    return {
        "best": {
            kind: {"head": pick.name, "score": round(pick.score, 4)}
            for kind, pick in typical_heads(scores).items()
        },
        "all": scores.as_dict()["heads"],
    }


def to_float16(weights_file: Path, config_file: Path) -> None:
    """Rewrite a saved float32 checkpoint as float16 (half the bytes; computed in fp32 later)."""
    tensors = {k: v.to(torch.float16) for k, v in load_file(str(weights_file)).items()}
    save_file(tensors, str(weights_file), metadata={"format": "pt"})
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["torch_dtype"] = "float16"
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    from mla_core.loading.weights import sha256_of_file

    return sha256_of_file(path)


def _replace_folder(new: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def plot_loss_curve(history: dict, tokens_per_step: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(history["step"])
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
    ax.plot(
        history["val_step"],
        history["val_loss"],
        "o-",
        color="#d62728",
        ms=3,
        label="validation loss",
    )
    ax.set_xlabel(f"step ({tokens_per_step:,} tokens per step)")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title("demo-gpt2: training on Wikipedia summaries")
    ax.grid(alpha=0.3)
    ax.legend()
    if heads:
        from mla_core.analysis.head_scores import SCORE_LABELS

        ax = axes[1]
        for kind, colour in zip(heads, ("#2ca02c", "#9467bd"), strict=False):
            ax.plot(
                history["val_step"],
                history[f"best_{kind}"],
                "o-",
                color=colour,
                ms=3,
                label=f"best {SCORE_LABELS[kind]} score",
            )
        ax.set_ylim(0, 1)
        ax.set_xlabel("step")
        ax.set_ylabel("score of the best head (0..1)")
        ax.set_title("attention heads finding their roles (mla_core.analysis.head_scores)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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

## Training
| | |
|---|---|
| steps | {t["steps"]:,} x {t["batch_size"]} sequences x {t["n_ctx"]} tokens |
| tokens seen | {t["tokens_seen"]:,} |
| optimiser | AdamW (betas 0.9, 0.95; weight decay {t["settings"]["weight_decay"]}), \
lr {t["settings"]["lr"]:g} after {t["settings"]["warmup_steps"]} warm-up steps, cosine to \
{t["settings"]["min_lr"]:g}, gradient clip {t["settings"]["grad_clip"]} |
| precision | {t["settings"]["precision"]} autocast, fp32 master weights; shipped as float16 |
| position embedding | learned, as in GPT-2; initialised {position_init} |{repeat_row}
| seed | {t["seed"]} |
| wall time | {t["wall_time_s"] / 60:.1f} min on {t["threads"]} CPU threads \
(torch {t["torch_version"]}) |{notes}

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
Same command, same machine kind, same torch: the same weights (fixed seeds, a fixed number of
steps, batches drawn per step from a seeded generator).
"""


# --- command line -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from mla_core.cli import OneLineArgumentParser

    p = OneLineArgumentParser(
        prog="python -m mla_core.train",
        description="Train the embedded demo GPT-2 on Wikipedia summaries (fixed seeds).",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model folder to write")
    p.add_argument("--steps", type=int, default=1400, help="optimizer steps (fixed, no timer)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per step")
    p.add_argument("--n-ctx", type=int, default=256, help="context length (tokens)")
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=3)
    p.add_argument("--n-embd", type=int, default=192)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=1e-4, help="learning rate at the last step")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--val-fraction", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--eval-every", type=int, default=100, help="steps between validation checks")
    p.add_argument("--eval-windows", type=int, default=24, help="validation windows per check")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument(
        "--position-init",
        choices=("normal", "sinusoidal"),
        default="sinusoidal",
        help="starting values of the learned position embedding (default sinusoidal)",
    )
    p.add_argument(
        "--position-std",
        type=float,
        default=0.02,
        help="std of the sinusoidal position init (0.02 = GPT-2's init scale)",
    )
    p.add_argument(
        "--repeat-fraction",
        type=float,
        default=0.0,
        help="share of training windows given one repeated span of their own text (0..1)",
    )
    p.add_argument(
        "--fused-adamw",
        action="store_true",
        help="use torch's fused AdamW (faster for small batches; rounding differs slightly)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile forward and loss as one graph (needs a C++ compiler; faster)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR)
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    return p


def main(argv: list[str] | None = None) -> int:
    from mla_core.loading.weights import check_device

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        for name in (
            "steps",
            "batch_size",
            "n_ctx",
            "eval_every",
            "eval_windows",
            "checkpoint_every",
        ):
            if getattr(args, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")
        if args.warmup_steps < 0 or args.warmup_steps >= args.steps:
            raise UserError(f"--warmup-steps {args.warmup_steps} must be in 0..steps-1")
        if not args.position_std > 0:
            raise UserError(f"--position-std {args.position_std} must be > 0")
        if not 0.0 <= args.repeat_fraction <= 1.0:
            raise UserError(f"--repeat-fraction {args.repeat_fraction} must be in 0..1")
        device = check_device(args.device)
        if args.threads is not None:
            if args.threads < 1:
                raise UserError(f"--threads {args.threads} must be >= 1")
            torch.set_num_threads(args.threads)
        else:
            torch.set_num_threads(os.cpu_count() or 1)
        settings = TrainSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            n_ctx=args.n_ctx,
            n_layer=args.n_layer,
            n_head=args.n_head,
            n_embd=args.n_embd,
            lr=args.lr,
            min_lr=args.min_lr,
            warmup_steps=args.warmup_steps,
            weight_decay=args.weight_decay,
            grad_clip=args.grad_clip,
            val_fraction=args.val_fraction,
            seed=args.seed,
            eval_every=args.eval_every,
            eval_windows=args.eval_windows,
            precision=args.precision,
            position_init=args.position_init,
            repeat_fraction=args.repeat_fraction,
            position_std=args.position_std,
            fused_adamw=args.fused_adamw,
            compile=args.compile,
        )
        # The command as it would be typed again (without --resume: resuming changes nothing).
        command = "python -m mla_core.train " + shlex.join(a for a in argv if a != "--resume")
        train(
            settings,
            args.out,
            device,
            args.checkpoint_dir,
            args.checkpoint_every,
            args.resume,
            command.strip(),
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
