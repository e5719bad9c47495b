"""Which heads the GPT-2 scenes show: the ones named in `params.heads`, else the most
typical head of each kind as `mla_core.analysis.head_scores` measures them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mla_core.analysis.head_scores import (
    ROLE_THRESHOLD,
    SCORE_LABELS,
    has_role,
    measure_head_scores,
)
from mla_core.errors import check_layer_head
from mla_core.models.gpt2 import GPT2
from mla_core.scene_data.params import VideoParams, parse_heads

# the gallery's heads, in the order shown (names as in mla_core.analysis.head_scores)
HEAD_KINDS = ("previous_token", "duplicate_token", "induction", "first_token")


@dataclass(frozen=True)
class ChosenHead:
    layer: int
    head: int
    kind: str  # what it is most typical of, e.g. "previous_token"; "" when the user named it
    score: float | None = None  # its score for that kind

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.head}"

    @property
    def has_role(self) -> bool:
        """Its score passes `head_scores.ROLE_THRESHOLD`: it may be called, e.g., a
        previous-token head. Otherwise it is only the highest scorer of its kind."""
        return bool(self.kind) and has_role(self.score)

    def as_dict(self) -> dict:
        return {
            "layer": self.layer,
            "head": self.head,
            "kind": self.kind,
            "kind_label": SCORE_LABELS.get(self.kind, ""),  # e.g. "previous-token"
            "score": self.score,
            "has_role": self.has_role,
            "role_threshold": ROLE_THRESHOLD,
        }


def pick_heads(model: GPT2, kinds: tuple[str, ...] = HEAD_KINDS) -> list[ChosenHead]:
    """One head per kind: the first kind gets the most typical head; each later kind the
    best head not already chosen, so a gallery never shows the same head twice."""
    scores = measure_head_scores(model)
    chosen: list[ChosenHead] = []
    for kind in kinds:
        table = scores.kind(kind).copy()  # [n_layer, n_head]
        for taken in chosen:
            table[taken.layer, taken.head] = -np.inf
        layer, head = divmod(int(np.argmax(table)), table.shape[1])
        chosen.append(ChosenHead(layer, head, kind, float(table[layer, head])))
    return chosen


def heads_to_show(model: GPT2, params: VideoParams) -> list[ChosenHead]:
    """params.heads ("5.1,2.2"), checked against the model, else one typical head per kind."""
    named = parse_heads(params.heads)
    if named is None:
        return pick_heads(model)
    for layer, head in named:
        check_layer_head(layer, head, model.config.n_layer, model.config.n_head, "heads: ")
    return [ChosenHead(layer, head, "") for layer, head in named]


def main_head(model: GPT2, params: VideoParams) -> ChosenHead:
    """The head a one-head scene opens up: the first one named, else the most typical
    previous-token head (its pattern reads at a glance)."""
    if parse_heads(params.heads) is not None:
        return heads_to_show(model, params)[0]
    return pick_heads(model, ("previous_token",))[0]
