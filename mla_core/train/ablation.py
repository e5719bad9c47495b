"""The attention ablation: MHA, GQA, MQA and MLA trained on the same text, the same way.

    python -m mla_core ablation --steps 2000            # all four kinds, then the table
    python -m mla_core ablation --steps 2000 --resume   # continue after an interruption

The four models (`mla_core.models.ablation`) share the backbone, width, depth, seed and
initialisation; their SwiGLU widths are matched so their parameter counts are close. Each is
trained with the demo GPT-2's recipe (`mla_core.train`): the same batches at every step
(`batch_for_step` with one seed), AdamW with warm-up and cosine decay, gradient clipping,
bfloat16 autocast and one compiled forward + loss. Then each is measured on the same held-out
documents (the demo GPT-2's split): all of the validation stream, in n_ctx windows.

Per kind, under `<checkpoint root>/<kind>/`:
- `checkpoint/`: model, optimizer and history every `checkpoint_every` steps (safetensors
  + json, `mla_core.train.checkpoints`), so `--resume` continues where a run stopped;
- `result.json`: the kind's finished numbers, so `--resume` skips a finished kind and the
  table can be assembled from all four.
Wall time is summed over resumes (work lost after the last checkpoint is not counted twice).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mla_core.atomic import write_text_atomically
from mla_core.errors import UserError
from mla_core.models.ablation import (
    KINDS,
    attention_parameters,
    build_model,
    cache_numbers_per_token_per_layer,
    count_parameters,
    kind_label,
    kv_heads,
)
from mla_core.models.configs import AblationShape
from mla_core.train.batches import batch_for_step
from mla_core.train.checkpoints import load_checkpoint, save_checkpoint
from mla_core.train.loop import build_optimizer, optimizer_step, training_loss_function
from mla_core.train.losses import validation_loss
from mla_core.train.settings import AblationSettings, learning_rate

CACHE_DTYPE_BYTES = 2  # a bf16/fp16 cache
RESULT_FILE = "result.json"
TRAIN_LOSS_TAIL = 50  # final_train_loss: mean of the last this many training batches


@dataclass
class Corpus:
    train_ids: np.ndarray
    val_ids: np.ndarray


def load_corpus(s: AblationSettings, n_ctx: int) -> Corpus:
    """The Wikipedia summaries split as the demo GPT-2's are, as GPT-2 token streams."""
    from mla_core.loading import corpus

    docs = corpus.load_wiki_summaries()
    train_docs, val_docs = corpus.split_documents(docs, s.val_fraction, s.split_seed)
    data = Corpus(corpus.token_stream(train_docs), corpus.token_stream(val_docs))
    for name, ids in (("training", data.train_ids), ("validation", data.val_ids)):
        if len(ids) < n_ctx + 2:
            raise UserError(f"the {name} text has {len(ids)} tokens, too few for n_ctx={n_ctx}")
    print(
        f"corpus: train {len(train_docs):,} docs / {len(data.train_ids):,} tokens, validation "
        f"{len(val_docs):,} docs / {len(data.val_ids):,} tokens",
        flush=True,
    )
    return data


def autocast_dtype(s: AblationSettings):
    return torch.bfloat16 if s.precision == "bf16" else None


def fingerprint(shape: AblationShape, s: AblationSettings) -> dict:
    """Everything that decides a kind's numbers: a checkpoint resumes only under the same."""
    return {"shape": asdict(shape), "settings": asdict(s)}


def run_ablation(
    shape: AblationShape,
    s: AblationSettings,
    kinds: list[str],
    out: Path,
    device: str,
    checkpoint_root: Path,
    checkpoint_every: int,
    resume: bool,
    command: str,
    save_mla: Path | None = None,
) -> dict:
    """Train (or, with `resume`, finish) every kind in `kinds`, then write the table to `out`."""
    from mla_core.loading.corpus import CORPUS_ATTRIBUTION

    data = load_corpus(s, shape.n_ctx)
    ordered = [kind for kind in KINDS if kind in kinds]
    runs = [
        train_kind(kind, shape, s, data, device, checkpoint_root / kind, checkpoint_every, resume)
        for kind in ordered
    ]
    table = {
        "about": (
            "Four small DeepSeek-style language models (RMSNorm, SwiGLU MLP, RoPE, tied "
            "embeddings) that differ only in their attention, trained on the same batches of "
            "English Wikipedia summaries with the same seed and schedule. SwiGLU widths are "
            "matched so the parameter counts are close. val_loss: mean next-token cross-entropy "
            "(nats) over the whole held-out validation stream in n_ctx windows, in float32; "
            "curve: cheap checks on the first eval_windows windows under the training precision; "
            "final_train_loss: mean of the last 50 training batches; train_seconds: wall time "
            "of the training steps, checks and checkpoints (compilation included), summed over "
            "resumes. Cache bytes per token: all layers, at cache_dtype_bytes per number."
        ),
        "command": command,
        "seed": s.seed,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device,
        "precision": "bf16 autocast" if s.precision == "bf16" else "float32",
        "shape": {
            "n_layer": shape.n_layers,
            "hidden_size": shape.hidden_size,
            "n_head": shape.n_heads,
            "head_dim": shape.head_dim,
            "n_ctx": shape.n_ctx,
            "batch_size": s.batch_size,
            "steps": s.steps,
            "tokens_seen": s.steps * s.batch_size * shape.n_ctx,
            "lr": s.lr,
            "min_lr": s.min_lr,
            "warmup_steps": s.warmup_steps,
            "adamw_betas": [0.9, 0.95],
            "weight_decay": s.weight_decay,
            "grad_clip": s.grad_clip,
            "vocab_size": shape.vocab_size,
            "tied_embeddings": True,
            "gqa_kv_heads": shape.gqa_kv_heads,
            "mla_kv_lora_rank": shape.kv_lora_rank,
            "mla_qk_nope_head_dim": shape.qk_nope_head_dim,
            "mla_qk_rope_head_dim": shape.qk_rope_head_dim,
            "mla_v_head_dim": shape.v_head_dim,
            "mla_q_lora_rank": None,
            "eval_every": s.eval_every,
            "eval_windows": s.eval_windows,
            "compiled": s.compile,
            "fused_adamw": s.fused_adamw,
        },
        "data": {
            "corpus": CORPUS_ATTRIBUTION,
            "train_tokens": int(len(data.train_ids)),
            "validation_tokens": int(len(data.val_ids)),
            "val_fraction": s.val_fraction,
            "split_seed": s.split_seed,
        },
        "cache_dtype_bytes": CACHE_DTYPE_BYTES,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out, json.dumps(table, indent=1) + "\n")
    print(f"wrote {out}", flush=True)
    for run in runs:
        print(
            f"{run['label']:>6}: val loss {run['val_loss']:.4f} (ppl {run['val_ppl']:.1f}), "
            f"{run['cache_bytes_per_token']:,} cache bytes/token, "
            f"{run['parameters']:,} parameters, {run['train_seconds']:.0f} s",
            flush=True,
        )
    if save_mla is not None:
        if "mla" not in ordered:
            raise UserError("--save-mla needs the mla kind in --kinds")
        save_mla_model(shape, s, checkpoint_root / "mla", save_mla, table)
    return table


def train_kind(
    kind: str,
    shape: AblationShape,
    s: AblationSettings,
    data: Corpus,
    device: str,
    folder: Path,
    checkpoint_every: int,
    resume: bool,
) -> dict:
    """Train one kind to the end (from its checkpoint with `resume`) and measure it."""
    wanted = fingerprint(shape, s)
    result_file, checkpoint = folder / RESULT_FILE, folder / "checkpoint"
    if resume and result_file.is_file():
        stored = json.loads(result_file.read_text(encoding="utf-8"))
        check_fingerprint(stored["fingerprint"], wanted, result_file)
        print(f"{kind}: finished earlier, result from {result_file}", flush=True)
        return stored["result"]
    if not resume:
        shutil.rmtree(folder, ignore_errors=True)  # a fresh run: no stale checkpoint or result
    folder.mkdir(parents=True, exist_ok=True)

    if s.compile:
        torch._dynamo.reset()  # each kind compiles its own graph
    model = build_model(kind, shape, s.seed).to(device)
    optimizer = build_optimizer(model, s)
    step_loss = training_loss_function(model, device, autocast_dtype(s), s.compile)
    history: dict = {"step": [], "train_loss": [], "val_step": [], "val_loss": []}
    start_step, seconds_before = 0, 0.0
    if resume and (checkpoint / "state.json").is_file():
        meta = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
        check_fingerprint(meta["history"]["fingerprint"], wanted, checkpoint)
        start_step, history = load_checkpoint(checkpoint, model, optimizer)
        history.pop("fingerprint")
        seconds_before = history.pop("wall_time_s")
        print(f"{kind}: resumed from {checkpoint} at step {start_step}", flush=True)
    print(f"{kind}: {count_parameters(model):,} parameters, training {s.steps} steps", flush=True)

    started = time.perf_counter()
    for step in range(start_step, s.steps):
        model.train()
        inputs, targets = batch_for_step(data.train_ids, step, s.batch_size, shape.n_ctx, s.seed)
        inputs, targets = inputs.to(device), targets.to(device)
        loss = optimizer_step(
            model, optimizer, step_loss, inputs, targets, learning_rate(step, s), s.grad_clip
        )
        done = step + 1
        history["step"].append(done)
        history["train_loss"].append(round(loss.item(), 5))
        if done % s.eval_every == 0 or done == s.steps:
            val = measure(
                model, data.val_ids, shape.n_ctx, device, autocast_dtype(s), s.eval_windows
            )
            history["val_step"].append(done)
            history["val_loss"].append(round(val, 5))
            print(
                f"{kind} step {done}/{s.steps}: train loss "
                f"{np.mean(history['train_loss'][-TRAIN_LOSS_TAIL:]):.4f}, val loss {val:.4f} "
                f"({s.eval_windows} windows), "
                f"{seconds_before + time.perf_counter() - started:.0f} s",
                flush=True,
            )
        if done % checkpoint_every == 0 or done == s.steps:
            state = history | {
                "fingerprint": wanted,
                "wall_time_s": seconds_before + time.perf_counter() - started,
            }
            save_checkpoint(checkpoint, model, optimizer, done, state)
    train_seconds = seconds_before + time.perf_counter() - started

    val_loss = measure(model, data.val_ids, shape.n_ctx, device, None, 0)  # all of it, fp32
    per_layer = cache_numbers_per_token_per_layer(model)
    tail = history["train_loss"][-TRAIN_LOSS_TAIL:]
    result = {
        "kind": kind,
        "label": kind_label(kind, shape),
        "kv_heads": kv_heads(kind, shape),
        "cache_numbers_per_token_per_layer": per_layer,
        "cache_bytes_per_token": per_layer * shape.n_layers * CACHE_DTYPE_BYTES,
        "parameters": count_parameters(model),
        "attention_parameters": attention_parameters(model),
        "intermediate_size": model.config.intermediate_size,
        "val_loss": round(val_loss, 5),
        "val_ppl": round(math.exp(val_loss), 3),
        "final_train_loss": round(float(np.mean(tail)), 5),
        "train_seconds": round(train_seconds, 1),
        "curve": {"step": history["val_step"], "val_loss": history["val_loss"]},
    }
    record = {"fingerprint": wanted, "result": result}
    write_text_atomically(result_file, json.dumps(record, indent=1) + "\n")
    print(f"{kind}: val loss {val_loss:.4f} on all validation tokens", flush=True)
    return result


def measure(
    model: torch.nn.Module,
    val_ids: np.ndarray,
    n_ctx: int,
    device: str,
    autocast_dtype,
    max_windows: int,
) -> float:
    """Validation loss (first `max_windows` windows, or all with 0), autocast if a dtype."""
    model.eval()
    with torch.autocast(
        device_type=device, dtype=autocast_dtype or torch.float32, enabled=bool(autocast_dtype)
    ):
        return validation_loss(model, val_ids, n_ctx, max_windows)


def check_fingerprint(stored: dict, wanted: dict, where: Path) -> None:
    """UserError unless a checkpoint or result was made with the settings of this run."""
    if stored == wanted:
        return
    differ = [
        f"{key}={stored[part].get(key)!r}"
        for part in ("shape", "settings")
        for key in wanted[part]
        if stored[part].get(key) != wanted[part][key]
    ]
    raise UserError(
        f"{str(where)!r} was made with other settings ({', '.join(differ[:4])}); "
        "run without --resume to start again"
    )


def save_mla_model(
    shape: AblationShape, s: AblationSettings, folder: Path, target: Path, table: dict
) -> None:
    """The trained MLA model into `target` as a Hugging Face DeepSeek-V3 folder, with its
    model card, loss curve and training record (`mla_core.train.mla_card`)."""
    from safetensors.torch import load_file

    from mla_core.train.mla_card import write_demo_mla_folder

    model = build_model("mla", shape, s.seed)
    model.load_state_dict(load_file(str(folder / "checkpoint" / "model.safetensors")))
    state = json.loads((folder / "checkpoint" / "state.json").read_text(encoding="utf-8"))
    history = {k: state["history"][k] for k in ("step", "train_loss", "val_step", "val_loss")}
    write_demo_mla_folder(model, table, history, target)
    print(f"saved the MLA model to {target}", flush=True)
