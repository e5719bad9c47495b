"""The model folder a run ships: float16 weights, their sha256, the held-out slice and the card.

It is written to a temporary folder beside the target, then renamed into place; every loss
recorded there is measured on the float16 weights as shipped.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mla_core.models.gpt2 import GPT2
from mla_core.train.card import model_card, plot_loss_curve
from mla_core.train.losses import (
    HELDOUT_FILE,
    HELDOUT_TOKENS,
    heldout_slice_loss,
    make_heldout_slice,
    validation_loss,
)
from mla_core.train.settings import TrainSettings

TRAINING_FILE = "training.json"


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
    from mla_core.loading.weights import (
        WEIGHTS_FILE,
        load_gpt2_from_dir,
        save_gpt2,
        sha256_of_file,
        verified_sha256,
    )

    tokens_per_step = s.batch_size * s.n_ctx
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        save_gpt2(model.to("cpu").float(), tmp, write_sha256=False)
        to_float16(tmp / WEIGHTS_FILE, tmp / "config.json")
        (tmp / (WEIGHTS_FILE + ".sha256")).write_text(
            f"{sha256_of_file(tmp / WEIGHTS_FILE)}\n", encoding="utf-8"
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
        summary["stages"] = earlier_stages(s.init_from) + [stage_record(summary)]
        plot_loss_curve(history, tokens_per_step, tmp / "loss_curve.png", summary["stages"])
        (tmp / TRAINING_FILE).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        (tmp / "MODEL.md").write_text(model_card(summary), encoding="utf-8")
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)
        _replace_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


STAGE_FIELDS = ("command", "steps", "tokens_seen", "wall_time_s", "threads", "val_loss", "sha256")


def stage_record(summary: dict) -> dict:
    """What the card keeps of one training run when a later run starts from its weights:
    its command, size, time, result, and its validation curve (for the combined plot)."""
    history = summary.get("history", {})
    return {field: summary.get(field) for field in STAGE_FIELDS} | {
        "init_from": summary.get("settings", {}).get("init_from", ""),
        "best_heads": {
            kind: pick["score"] for kind, pick in summary["head_scores"]["best"].items()
        },
        "curve": {
            key: history[key]
            for key in ("val_step", "val_loss", "best_previous_token", "best_induction")
            if key in history
        },
    }


def earlier_stages(init_from: str) -> list[dict]:
    """The training runs behind the weights a run starts from (`--init-from`), oldest first:
    that folder's own stages, or that folder as one stage."""
    if not init_from:
        return []
    record = json.loads((Path(init_from) / TRAINING_FILE).read_text(encoding="utf-8"))
    return record.get("stages") or [stage_record(record)]


def head_score_summary(model, repeat_tokens: int = 40) -> dict:
    """Every head's scores and the most typical head of each kind (`analysis.head_scores`), for
    a GPT-2 or a DeepSeek-style model."""
    from mla_core.analysis.head_scores import measure_head_scores, typical_heads

    scores = measure_head_scores(model, repeat_tokens=repeat_tokens)
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


def _replace_folder(new: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
