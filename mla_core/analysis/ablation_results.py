"""The attention ablation trained on this machine, read back for the video.

`python -m mla_core ablation` trains four small models that differ only in their attention
(MHA, GQA, MQA, MLA) on the same text, steps and seed, and writes one JSON file. This module
reads that file, checks that it holds what the scenes draw, and summarises it: each kind's
KV-cache bytes per token against its validation loss, and how MLA compares with the others.
Whatever the runs measured is what is shown: if MLA loses at this scale, the summary says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mla_core.errors import UserError

ABLATION_JSON = Path(__file__).resolve().parents[2] / "assets" / "data" / "attention_ablation.json"
KIND_ORDER = ("mha", "gqa", "mqa", "mla")
RUN_FIELDS = (
    "kind",
    "label",
    "cache_bytes_per_token",
    "cache_numbers_per_token_per_layer",
    "parameters",
    "val_loss",
    "val_ppl",
    "train_seconds",
)


def load_ablation(path: str | Path = ABLATION_JSON) -> dict:
    """The ablation JSON, with its runs in the order MHA, GQA, MQA, MLA (one line if broken)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"no attention ablation at {str(path)!r}: run `python -m mla_core ablation` "
            "(it trains the four models and writes this file)"
        )
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        runs = {run["kind"]: run for run in table["runs"]}
        missing = [kind for kind in KIND_ORDER if kind not in runs]
        if missing:
            raise UserError(f"attention ablation {str(path)!r} lacks the runs {missing}")
        for run in runs.values():
            for field in RUN_FIELDS:
                if field not in run:
                    raise UserError(f"attention ablation {str(path)!r}: a run lacks {field!r}")
            if not math.isfinite(run["val_loss"]):
                raise UserError(
                    f"attention ablation {str(path)!r}: the {run['kind']} loss is not finite"
                )
        for field in ("command", "seed", "shape", "data", "cache_dtype_bytes"):
            if field not in table:
                raise UserError(f"attention ablation {str(path)!r} lacks {field!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"attention ablation {str(path)!r} is not readable JSON: {err}") from None
    table["runs"] = [runs[kind] for kind in KIND_ORDER]
    return table


def mla_against_the_rest(table: dict) -> dict:
    """MLA's validation loss and cache beside each other kind's: the difference in loss
    (negative: MLA is better) and MLA's cache as a share of theirs."""
    by_kind = {run["kind"]: run for run in table["runs"]}
    mla = by_kind["mla"]
    return {
        kind: {
            "loss_difference": mla["val_loss"] - run["val_loss"],
            "cache_share": mla["cache_bytes_per_token"] / run["cache_bytes_per_token"],
        }
        for kind, run in by_kind.items()
        if kind != "mla"
    }
