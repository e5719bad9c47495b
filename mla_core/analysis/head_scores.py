"""What each attention head does, measured: four scores per head, and the most typical heads.

Each score is the attention a head pays, on average, to one particular earlier position:

- previous-token: to the token just before (query i looks at key i - 1);
- first-token (BOS): to position 0, the <|endoftext|> token put in front of the text; heads
  with nothing to do often park their attention there;
- duplicate-token: to earlier copies of the current token;
- induction: to the token that FOLLOWED an earlier copy of the current token ("... A B ... A"
  -> look at B, so the model can predict B again).

The first two are measured on ordinary English text (`REFERENCE_TEXT`), the last two on
random token sequences repeated twice (`repeated_random_tokens`): in the second copy every
token has exactly one earlier duplicate and one "token after it", and nothing but an
induction mechanism can predict the second half. Scores are in [0, 1]: a perfect
previous-token pattern scores exactly 1.

    scores = measure_head_scores(model)
    scores.previous_token[4, 11]                    # layer 4, head 11
    typical_heads(scores)["induction"]              # HeadPick(layer=5, head=5, score=...)

The scoring functions take plain arrays (pattern [..., T, T], token ids [T]) so they can be
checked on hand-built patterns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mla_core.errors import UserError
from mla_core.loading.tokenizer import ENDOFTEXT_ID, gpt2_tokenizer

SCORE_KINDS = ("previous_token", "first_token", "duplicate_token", "induction")
SCORE_LABELS = {
    "previous_token": "previous-token",
    "first_token": "first-token (BOS)",
    "duplicate_token": "duplicate-token",
    "induction": "induction",
}

# A head is called by its role (a "previous-token head") only when its score reaches this
# threshold, i.e. it spends at least 30% of its attention where the role says. Chance is far
# below it: a head spread evenly over the ~100-token reference text gives the previous token
# about 0.01, and the induction score's target is one of ~80 keys. Well-known GPT-2 small heads
# score far above it (previous-token head 4.11 and induction head 5.5 score about 0.9). Below
# it, a scene says "highest previous-token score: 0.09", not "previous-token head": the head
# was the best of its kind, not an instance of it.
ROLE_THRESHOLD = 0.3


def has_role(score: float | None) -> bool:
    """Whether a head with this score may be named by the role it was scored on."""
    return score is not None and score >= ROLE_THRESHOLD


# Plain English written for this project (no licence strings attached), about 100 tokens.
REFERENCE_TEXT = (
    " The river rises in the hills north of the town and flows south for about forty miles"
    " before it reaches the sea. In the spring the water is high and fast, and the old stone"
    " bridge near the market is sometimes closed. Farmers along the valley grow wheat, apples"
    " and potatoes, and many families have lived there for more than two hundred years. The"
    " town has a small museum, a railway station and a school that was built in 1902."
)

# Random tokens are drawn from ids 1,000..9,999: frequent BPE pieces that every model with
# this vocabulary has seen in training (rare ids may be untrained rows of a small model).
RANDOM_TOKEN_RANGE = (1000, 10000)


# --- scores of one attention pattern ----------------------------------------------------


def previous_token_score(pattern: np.ndarray) -> np.ndarray:
    """Mean attention from query i to key i - 1, over queries 1..T-1. pattern [..., T, T]."""
    _check_pattern(pattern)
    n = pattern.shape[-1]
    rows = np.arange(1, n)
    return pattern[..., rows, rows - 1].mean(axis=-1)


def first_token_score(pattern: np.ndarray) -> np.ndarray:
    """Mean attention from query i to key 0, over queries 1..T-1 (query 0 has no choice)."""
    _check_pattern(pattern)
    return pattern[..., 1:, 0].mean(axis=-1)


def duplicate_token_score(pattern: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """Attention to earlier copies of the query's own token, summed per query, averaged
    over the queries that have at least one earlier copy."""
    ids = np.asarray(token_ids)
    same = ids[:, None] == ids[None, :]  # [T_query, T_key]
    return _masked_attention_score(pattern, same & _strictly_earlier(len(ids)), "duplicate")


def induction_score(pattern: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """Attention to key j whose PREVIOUS token equals the query's token (j < query), summed
    per query, averaged over the queries that have such a key."""
    ids = np.asarray(token_ids)
    n = len(ids)
    after_copy = np.zeros((n, n), dtype=bool)
    after_copy[:, 1:] = ids[:, None] == ids[None, :-1]  # key j follows a copy of token i
    return _masked_attention_score(pattern, after_copy & _strictly_earlier(n), "induction")


def _strictly_earlier(n: int) -> np.ndarray:
    return np.tril(np.ones((n, n), dtype=bool), k=-1)


def _masked_attention_score(pattern: np.ndarray, mask: np.ndarray, what: str) -> np.ndarray:
    _check_pattern(pattern)
    if mask.shape != pattern.shape[-2:]:
        raise UserError(
            f"{len(mask)} token ids do not match an attention pattern over "
            f"{pattern.shape[-1]} tokens"
        )
    queries = mask.any(axis=-1)
    if not queries.any():
        raise UserError(f"no query has a {what} key in these tokens; repeat some tokens")
    per_query = (pattern * mask).sum(axis=-1)  # [..., T]
    return per_query[..., queries].mean(axis=-1)


def _check_pattern(pattern: np.ndarray) -> None:
    if pattern.ndim < 2 or pattern.shape[-1] != pattern.shape[-2] or pattern.shape[-1] < 2:
        raise UserError(
            f"an attention pattern must be [..., T, T] with T >= 2, not {pattern.shape}"
        )


# --- the inputs -------------------------------------------------------------------------


def repeated_random_tokens(n_tokens: int, seed: int) -> list[int]:
    """<|endoftext|>, then n_tokens random ids, then the same ids again (2 n_tokens + 1 long)."""
    rng = np.random.default_rng(seed)
    half = rng.integers(*RANDOM_TOKEN_RANGE, size=n_tokens).tolist()
    return [ENDOFTEXT_ID, *half, *half]


# --- every head of a model --------------------------------------------------------------


@dataclass
class HeadScores:
    """Four [n_layer, n_head] score arrays and what they were measured on."""

    previous_token: np.ndarray
    first_token: np.ndarray
    duplicate_token: np.ndarray
    induction: np.ndarray
    text_tokens: int  # length of the reference text, BOS included
    repeat_tokens: int  # length of one random half
    n_sequences: int
    seed: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.previous_token.shape

    def kind(self, kind: str) -> np.ndarray:
        if kind not in SCORE_KINDS:
            raise UserError(f"unknown head score {kind!r}; choose from {', '.join(SCORE_KINDS)}")
        return getattr(self, kind)

    def as_dict(self) -> dict:
        n_layer, n_head = self.shape
        return {
            "measured_on": {
                "previous_token, first_token": f"reference English text, {self.text_tokens} "
                "tokens with BOS",
                "duplicate_token, induction": f"{self.n_sequences} random sequences of "
                f"{self.repeat_tokens} tokens (ids {RANDOM_TOKEN_RANGE[0]}.."
                f"{RANDOM_TOKEN_RANGE[1] - 1}) repeated twice after BOS, seed {self.seed}",
            },
            "heads": [
                {"layer": layer, "head": head}
                | {kind: round(float(self.kind(kind)[layer, head]), 4) for kind in SCORE_KINDS}
                for layer in range(n_layer)
                for head in range(n_head)
            ],
        }


def measure_head_scores(
    model, repeat_tokens: int = 40, n_sequences: int = 4, seed: int = 0
) -> HeadScores:
    """Score every head of a GPT-2 (`mla_core.models.gpt2.GPT2`) or of a DeepSeek-style model
    (`mla_core.models.deepseek.DeepSeekModel`, its MLA heads on the naive path) with the four
    measures above."""
    from mla_core.analysis.capture import capture_attention, context_length

    if repeat_tokens < 2 or n_sequences < 1:
        raise UserError(
            f"need at least 2 repeated tokens and 1 sequence, got {repeat_tokens}, {n_sequences}"
        )
    n_ctx = context_length(model.config)
    if 2 * repeat_tokens + 1 > n_ctx:
        raise UserError(
            f"{2 * repeat_tokens + 1} tokens (2 x {repeat_tokens} + BOS) exceed the model's "
            f"context of {n_ctx}"
        )
    # BOS + the reference text, cut to the model's context if it is shorter (tiny test models)
    text_ids = [ENDOFTEXT_ID, *gpt2_tokenizer().encode(REFERENCE_TEXT)][:n_ctx]
    text = capture_attention(model, text_ids, bos=False, top_k=1)
    duplicate, induction = [], []
    for i in range(n_sequences):
        ids = repeated_random_tokens(repeat_tokens, seed=seed + i)
        pattern = capture_attention(model, ids, bos=False, top_k=1).pattern  # [L, H, T, T]
        duplicate.append(duplicate_token_score(pattern, ids))
        induction.append(induction_score(pattern, ids))
    return HeadScores(
        previous_token=previous_token_score(text.pattern),
        first_token=first_token_score(text.pattern),
        duplicate_token=np.mean(duplicate, axis=0),
        induction=np.mean(induction, axis=0),
        text_tokens=len(text.token_ids),
        repeat_tokens=repeat_tokens,
        n_sequences=n_sequences,
        seed=seed,
    )


# --- choosing heads for the scenes ------------------------------------------------------


@dataclass(frozen=True)
class HeadPick:
    kind: str
    layer: int
    head: int
    score: float

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.head}"


def typical_head(scores: HeadScores, kind: str) -> HeadPick:
    """The head that scores highest on `kind` (ties: the earliest layer, then head)."""
    table = scores.kind(kind)
    flat = int(np.argmax(table))  # argmax returns the first maximum in row-major order
    layer, head = divmod(flat, table.shape[1])
    return HeadPick(kind, layer, head, float(table[layer, head]))


def typical_heads(scores: HeadScores) -> dict[str, HeadPick]:
    """The most typical head of each kind: what scenes show unless the user names a head."""
    return {kind: typical_head(scores, kind) for kind in SCORE_KINDS}


def format_table(scores: HeadScores) -> str:
    """A plain-text table, one row per head, with the typical head of each kind marked *."""
    picks = typical_heads(scores)
    header = f"{'head':>6}" + "".join(f"{SCORE_LABELS[k]:>20}" for k in SCORE_KINDS)
    lines = [header]
    n_layer, n_head = scores.shape
    for layer in range(n_layer):
        for head in range(n_head):
            cells = []
            for kind in SCORE_KINDS:
                mark = "*" if (picks[kind].layer, picks[kind].head) == (layer, head) else " "
                cells.append(f"{scores.kind(kind)[layer, head]:>19.3f}{mark}")
            lines.append(f"{layer:>3}.{head:<2}" + "".join(cells))
    lines.append(
        "* the most typical head of each kind: "
        + ", ".join(f"{SCORE_LABELS[k]} {p.name} ({p.score:.2f})" for k, p in picks.items())
    )
    return "\n".join(lines)
