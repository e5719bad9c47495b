"""The run: corpus, model, optimizer, then a fixed number of steps with checks and checkpoints."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mla_core.models.configs import GPT2Config
from mla_core.models.gpt2 import GPT2
from mla_core.train.batches import batch_for_step, sinusoidal_positions
from mla_core.train.checkpoints import load_checkpoint, save_checkpoint
from mla_core.train.losses import validation_loss
from mla_core.train.model_folder import write_model_folder
from mla_core.train.settings import OptimizerSettings, TrainSettings, learning_rate


def build_optimizer(model: nn.Module, s: OptimizerSettings) -> torch.optim.AdamW:
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


def start_from_folder(model: GPT2, folder: Path) -> None:
    """Copy the weights of a saved GPT-2 folder of the same shape into `model` (a second
    training stage); the optimizer and the schedule start afresh."""
    from mla_core.errors import UserError
    from mla_core.loading.weights import load_gpt2_from_dir

    start = load_gpt2_from_dir(folder)
    theirs, ours = asdict(start.config), asdict(model.config)
    theirs.pop("name"), ours.pop("name")
    if theirs != ours:
        raise UserError(f"--init-from {folder}: its shape {theirs} differs from this run's {ours}")
    model.load_state_dict(start.state_dict())  # in place: the tied head stays tied


def training_loss_function(model: nn.Module, device: str, autocast_dtype, compile_step: bool):
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


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step_loss,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    lr: float,
    grad_clip: float,
) -> torch.Tensor:
    """One training step at learning rate `lr`: the batch's loss, its gradients, clipped to
    norm `grad_clip`, and the AdamW update. Returns the loss (before the update)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = step_loss(inputs, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss


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
    if s.init_from:
        start_from_folder(model, Path(s.init_from))
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
        inputs, targets = batch_for_step(
            train_ids,
            step,
            s.batch_size,
            s.n_ctx,
            s.seed,
            s.repeat_fraction,
            s.random_repeat_fraction,
        )
        inputs, targets = inputs.to(device), targets.to(device)
        loss = optimizer_step(model, optimizer, step_loss, inputs, targets, lr, s.grad_clip)

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


@torch.no_grad()
def best_head_scores(model: GPT2) -> dict[str, float]:
    """The highest score of each kind over all heads, tracked during training."""
    from mla_core.analysis.head_scores import SCORE_KINDS, measure_head_scores

    scores = measure_head_scores(model)
    return {kind: float(scores.kind(kind).max()) for kind in SCORE_KINDS}
