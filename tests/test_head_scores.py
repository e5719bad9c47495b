"""Head scores: exact values on hand-built patterns, and agreement with transformers' patterns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mla_core.analysis.head_scores import (
    REFERENCE_TEXT,
    HeadScores,
    duplicate_token_score,
    first_token_score,
    induction_score,
    measure_head_scores,
    previous_token_score,
    repeated_random_tokens,
    typical_head,
    typical_heads,
)
from mla_core.cli import main as cli_main
from mla_core.errors import UserError
from mla_core.loading.tokenizer import ENDOFTEXT_ID, gpt2_tokenizer
from mla_core.loading.weights import load_gpt2_from_dir

T = 9


def one_hot_pattern(targets: list[int]) -> np.ndarray:
    """A [T, T] pattern in which query i puts all its attention on key targets[i]."""
    pattern = np.zeros((len(targets), len(targets)))
    pattern[np.arange(len(targets)), targets] = 1.0
    assert all(t <= i for i, t in enumerate(targets))  # causal
    return pattern


def uniform_causal_pattern(n: int) -> np.ndarray:
    return np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]


# --- hand-built patterns ----------------------------------------------------------------


def test_perfect_previous_token_pattern() -> None:
    pattern = one_hot_pattern([0] + list(range(T - 1)))
    assert previous_token_score(pattern) == pytest.approx(1.0)
    # only query 1, whose previous token IS the first token, looks at position 0
    assert first_token_score(pattern) == pytest.approx(1 / (T - 1))


def test_perfect_first_token_pattern() -> None:
    pattern = one_hot_pattern([0] * T)
    assert first_token_score(pattern) == pytest.approx(1.0)
    assert previous_token_score(pattern) == pytest.approx(1 / (T - 1))


def test_uniform_pattern_matches_the_formula() -> None:
    # query i spreads 1/(i+1) over keys 0..i: both scores are the mean of 1/(i+1), i = 1..T-1
    expected = np.mean([1 / (i + 1) for i in range(1, T)])
    pattern = uniform_causal_pattern(T)
    assert previous_token_score(pattern) == pytest.approx(expected)
    assert first_token_score(pattern) == pytest.approx(expected)


def test_scores_broadcast_over_layers_and_heads() -> None:
    stack = np.stack([one_hot_pattern([0] + list(range(T - 1))), uniform_causal_pattern(T)])
    scores = previous_token_score(stack[None])  # [1, 2, T, T] -> [1, 2]
    assert scores.shape == (1, 2)
    assert scores[0, 0] == pytest.approx(1.0) and scores[0, 1] < 0.5


def test_induction_and_duplicate_patterns_on_a_repeated_sequence() -> None:
    n = 4
    ids = [ENDOFTEXT_ID, 11, 12, 13, 14, 11, 12, 13, 14]  # BOS, A B C D, A B C D
    first_half = list(range(n + 1))  # BOS and the first copy look at themselves
    # induction: the second "A" (position 5) looks at the first "B" (position 2), etc.
    induction = one_hot_pattern(first_half + [p - n + 1 for p in range(n + 1, 2 * n + 1)])
    duplicate = one_hot_pattern(first_half + [p - n for p in range(n + 1, 2 * n + 1)])
    assert induction_score(induction, ids) == pytest.approx(1.0)
    assert duplicate_token_score(induction, ids) == pytest.approx(0.0)
    assert duplicate_token_score(duplicate, ids) == pytest.approx(1.0)
    assert induction_score(duplicate, ids) == pytest.approx(0.0)
    # a previous-token head is neither
    previous = one_hot_pattern([0] + list(range(2 * n)))
    assert induction_score(previous, ids) == pytest.approx(0.0)
    assert duplicate_token_score(previous, ids) == pytest.approx(0.0)


def test_duplicate_score_sums_over_several_earlier_copies() -> None:
    ids = [7, 5, 7, 7]  # query 3 has two earlier copies (0 and 2), query 2 has one
    pattern = np.array([[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.25, 0.5, 0.25, 0], [0.3, 0.1, 0.2, 0.4]])
    # query 2: 0.25 (key 0); query 3: 0.3 + 0.2 (keys 0 and 2)
    assert duplicate_token_score(pattern, ids) == pytest.approx((0.25 + 0.5) / 2)


def test_bad_inputs_are_user_errors() -> None:
    with pytest.raises(UserError, match=r"\[\.\.\., T, T\]"):
        previous_token_score(np.zeros((3, 4)))
    with pytest.raises(UserError, match="do not match"):
        induction_score(uniform_causal_pattern(4), [1, 2, 3])
    with pytest.raises(UserError, match="no query has a duplicate"):
        duplicate_token_score(uniform_causal_pattern(4), [1, 2, 3, 4])


def test_repeated_random_tokens() -> None:
    ids = repeated_random_tokens(30, seed=3)
    assert len(ids) == 61 and ids[0] == ENDOFTEXT_ID and ids[1:31] == ids[31:]
    assert all(1000 <= i < 10000 for i in ids[1:])
    assert ids == repeated_random_tokens(30, seed=3) != repeated_random_tokens(30, seed=4)


def test_typical_head_is_the_highest_scoring_one_earliest_first() -> None:
    table = np.array([[0.1, 0.7], [0.7, 0.2], [0.3, 0.0]])
    zeros = np.zeros_like(table)
    scores = HeadScores(table, zeros, zeros, zeros, 10, 5, 1, 0)
    pick = typical_head(scores, "previous_token")
    assert (pick.layer, pick.head, pick.name) == (0, 1, "0.1")
    assert pick.score == pytest.approx(0.7)
    assert set(typical_heads(scores)) == {
        "previous_token",
        "first_token",
        "duplicate_token",
        "induction",
    }
    with pytest.raises(UserError, match="unknown head score"):
        typical_head(scores, "name_mover")


# --- on a model, against transformers ---------------------------------------------------


def oracle_patterns(oracle: torch.nn.Module, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        out = oracle(torch.tensor([ids]), output_attentions=True)
    return torch.stack([a[0] for a in out.attentions]).numpy()  # [L, H, T, T]


def test_model_scores_match_transformers_patterns(tiny_gpt2_dir: Path, load_oracle) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_dir)
    scores = measure_head_scores(model, repeat_tokens=20, n_sequences=3, seed=5)
    oracle = load_oracle(tiny_gpt2_dir)

    text_ids = [ENDOFTEXT_ID, *gpt2_tokenizer().encode(REFERENCE_TEXT)][:64]  # n_ctx 64
    assert scores.text_tokens == len(text_ids)
    text_pattern = oracle_patterns(oracle, text_ids)
    np.testing.assert_allclose(scores.previous_token, previous_token_score(text_pattern), atol=1e-5)
    np.testing.assert_allclose(scores.first_token, first_token_score(text_pattern), atol=1e-5)

    duplicate, induction = [], []
    for seed in (5, 6, 7):
        ids = repeated_random_tokens(20, seed)
        pattern = oracle_patterns(oracle, ids)
        duplicate.append(duplicate_token_score(pattern, ids))
        induction.append(induction_score(pattern, ids))
    np.testing.assert_allclose(scores.duplicate_token, np.mean(duplicate, 0), atol=1e-5)
    np.testing.assert_allclose(scores.induction, np.mean(induction, 0), atol=1e-5)
    assert scores.shape == (2, 4)


def test_sequences_longer_than_the_context_are_refused(tiny_gpt2_dir: Path) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_dir)  # n_ctx 64: at most 31 repeated tokens
    with pytest.raises(UserError, match="exceed the model's context of 64"):
        measure_head_scores(model, repeat_tokens=32)


def test_heads_command(tiny_gpt2_dir: Path, capsys) -> None:
    args = ["heads", "--weights", str(tiny_gpt2_dir), "--repeat-tokens", "20", "--device", "cpu"]
    assert cli_main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["heads"]) == 8
    assert report["weights"]["kind"] == "weights-arg"
    pick = report["typical"]["previous_token"]
    best = max(report["heads"], key=lambda h: h["previous_token"])
    assert (pick["layer"], pick["head"]) == (best["layer"], best["head"])

    assert cli_main(args) == 0
    table = capsys.readouterr().out
    assert "previous-token" in table and "induction" in table and "*" in table

    assert cli_main([*args[:3], "--repeat-tokens", "40"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "context of 64" in err
