"""Checkpoints of a run: safetensors + json, so that resuming never unpickles anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mla_core.models.gpt2 import GPT2


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
