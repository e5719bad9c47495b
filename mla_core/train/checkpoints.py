"""Checkpoints of a run: safetensors + json, so that resuming never unpickles anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mla_core.errors import UserError
from mla_core.models.gpt2 import GPT2


def unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with a tied matrix kept once (under its first name): GPT-2's
    lm_head.weight is wte.weight and is left out, as safetensors cannot store shared tensors."""
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        state[name] = tensor.contiguous()
    return state


def save_checkpoint(
    folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, history: dict
) -> None:
    """Model, AdamW moments and step counts, `step` and `history`, written to a temporary
    folder that then replaces `folder` (a crash leaves the previous checkpoint whole)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(unique_state(model), str(tmp / "model.safetensors"))
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
    folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, dict]:
    """Restore model and optimizer from `folder` in place; returns (step, history)."""
    meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(model.state_dict()) - set(unique_state(model))
    if unexpected or set(missing) - tied:
        raise UserError(
            f"checkpoint {str(folder)!r} does not fit the model (missing "
            f"{sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    if isinstance(model, GPT2):
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
