"""The training recipe's pieces (mla_core.train): schedule, batches, planted repeats, positions.

These run without the training corpus; the shipped model itself is checked in
test_demo_model.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import made_up_documents

from mla_core.train.batches import (
    IGNORE_TARGET,
    RANDOM_REPEAT_LENGTH,
    REPEAT_SPAN,
    batch_for_step,
    plant_repeat,
    sinusoidal_positions,
)
from mla_core.train.cli import main
from mla_core.train.settings import TrainSettings, learning_rate

# A stream of distinct ids: any id seen twice in a window was put there by a planted repeat.
STREAM = np.arange(100_000, dtype=np.int32)


def settings(**changes) -> TrainSettings:
    base = dict(
        steps=1000,
        batch_size=4,
        n_ctx=256,
        n_layer=2,
        n_head=2,
        n_embd=128,
        lr=2e-3,
        min_lr=1e-4,
        warmup_steps=100,
        weight_decay=0.1,
        grad_clip=1.0,
        val_fraction=0.03,
        seed=0,
        eval_every=100,
        eval_windows=4,
        precision="fp32",
    )
    return TrainSettings(**(base | changes))


def test_learning_rate_warms_up_then_decays_to_min_lr() -> None:
    s = settings()
    assert learning_rate(0, s) == pytest.approx(s.lr / s.warmup_steps)
    assert learning_rate(s.warmup_steps - 1, s) == pytest.approx(s.lr)
    assert learning_rate(s.warmup_steps, s) == pytest.approx(s.lr)
    assert learning_rate(s.steps, s) == pytest.approx(s.min_lr)
    middle = (s.warmup_steps + s.steps) // 2
    assert learning_rate(middle, s) == pytest.approx((s.lr + s.min_lr) / 2, rel=1e-2)
    after = [learning_rate(step, s) for step in range(s.warmup_steps, s.steps)]
    assert all(a >= b for a, b in zip(after[:-1], after[1:], strict=True))


def test_plain_batches_are_windows_of_the_stream_with_shifted_targets() -> None:
    inputs, targets = batch_for_step(STREAM, step=7, batch_size=4, n_ctx=32, seed=3)
    assert inputs.shape == targets.shape == (4, 32)
    assert inputs.dtype == torch.int64
    for row_in, row_out in zip(inputs.numpy(), targets.numpy(), strict=True):
        assert np.array_equal(np.diff(row_in), np.ones(31))  # a consecutive stretch
        assert np.array_equal(row_out, row_in + 1)  # the next token of each


def test_batches_depend_only_on_seed_and_step() -> None:
    a = batch_for_step(STREAM, 5, 4, 64, seed=1, repeat_fraction=0.5)
    b = batch_for_step(STREAM, 5, 4, 64, seed=1, repeat_fraction=0.5)
    c = batch_for_step(STREAM, 6, 4, 64, seed=1, repeat_fraction=0.5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_no_repeats_leave_the_windows_as_before() -> None:
    """repeat_fraction 0 draws nothing extra: the batches of earlier runs are unchanged."""
    plain = batch_for_step(STREAM, 11, 8, 128, seed=9)
    zero = batch_for_step(STREAM, 11, 8, 128, seed=9, repeat_fraction=0.0)
    assert torch.equal(plain[0], zero[0])


def copied_span(window: np.ndarray) -> tuple[int, int, int]:
    """(source, target, length) of the one planted repeat in a window of the distinct STREAM."""
    expected = np.arange(window[0], window[0] + len(window))
    changed = np.flatnonzero(window != expected)
    assert len(changed) > 0, "no span was copied"
    target, length = int(changed[0]), len(changed)
    assert np.array_equal(changed, np.arange(target, target + length)), "not one stretch"
    source = int(window[target] - window[0])
    return source, target, length


@pytest.mark.parametrize("seed", range(20))
def test_a_planted_repeat_copies_one_earlier_span(seed: int) -> None:
    window = np.arange(1000, 1257, dtype=np.int64)  # 257 = n_ctx + 1, as batch_for_step cuts
    original = window.copy()
    plant_repeat(window, np.random.default_rng(seed))
    source, target, length = copied_span(window)
    assert REPEAT_SPAN[0] <= length <= REPEAT_SPAN[1]
    assert source + length <= target  # the copy comes after its source, without overlap
    assert np.array_equal(window[target : target + length], original[source : source + length])


def test_repeat_fraction_sets_the_share_of_windows_with_a_repeat() -> None:
    with_repeat = 0
    n_windows = 0
    for step in range(100):
        inputs, targets = batch_for_step(STREAM, step, 8, 128, seed=4, repeat_fraction=0.5)
        # targets stay the inputs shifted by one, repeat or not
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
        for row in inputs.numpy():
            n_windows += 1
            with_repeat += len(np.unique(row)) < len(row)
    assert 0.4 < with_repeat / n_windows < 0.6
    all_of_them = batch_for_step(STREAM, 0, 16, 128, seed=4, repeat_fraction=1.0)[0].numpy()
    assert all(len(np.unique(row)) < len(row) for row in all_of_them)


def test_random_repeat_windows_repeat_one_random_sequence_and_ignore_its_first_copy() -> None:
    n_ctx, batch = 128, 64
    plain_inputs, _ = batch_for_step(STREAM, 9, batch, n_ctx, seed=3)
    inputs, targets = batch_for_step(STREAM, 9, batch, n_ctx, seed=3, random_repeat_fraction=0.5)
    replaced = 0
    for row in range(batch):
        ignored = int((targets[row] == IGNORE_TARGET).sum())
        if ignored == 0:  # an untouched window: the same as without random repeats
            assert torch.equal(inputs[row], plain_inputs[row])
            assert torch.equal(targets[row, :-1], inputs[row, 1:])
            continue
        replaced += 1
        length = ignored  # the first copy's targets are ignored, up to the second copy
        assert RANDOM_REPEAT_LENGTH[0] <= length <= RANDOM_REPEAT_LENGTH[1]
        assert (targets[row, :length] == IGNORE_TARGET).all()
        window = torch.cat([inputs[row], targets[row, -1:]])
        sequence = window[:length]
        # the whole window is that sequence over and over, and every kept target (position
        # t >= L) is the token that followed the same token one copy earlier (position t - L)
        assert torch.equal(window, sequence.repeat(n_ctx // length + 2)[: n_ctx + 1])
        assert torch.equal(inputs[row, length:], inputs[row, : n_ctx - length])
        assert torch.equal(targets[row, length:], window[1 : n_ctx - length + 1])
        assert np.isin(sequence.numpy(), STREAM).all()
    assert 20 <= replaced <= 44  # about half of 64


def test_sinusoidal_positions_make_one_step_back_a_fixed_rotation() -> None:
    table = sinusoidal_positions(256, 32).double()  # [T, C]
    assert table.shape == (256, 32)
    assert table.std().item() == pytest.approx(0.02, rel=0.1)
    pairs = torch.view_as_complex(table.reshape(256, 16, 2).contiguous())  # [T, C/2]
    # each (sin, cos) pair has a fixed length at every position ...
    assert torch.allclose(pairs.abs(), pairs.abs()[:1].expand(256, 16), rtol=1e-5)
    # ... and turns by a fixed angle per step: row p-1 is the same rotation of row p for all p
    step = pairs[:-1] / pairs[1:]  # [T-1, C/2]
    assert torch.allclose(step, step[:1].expand(255, 16), atol=1e-4)
    assert (step[0].angle().abs() > 1e-4).all()  # and every pair does turn


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--repeat-fraction", "1.5"], "--repeat-fraction 1.5 must be in 0..1"),
        (["--random-repeat-fraction", "-1"], "--random-repeat-fraction -1.0 must be in 0..1"),
        (["--position-std", "0"], "--position-std 0.0 must be > 0"),
        (["--steps", "0"], "--steps 0 must be >= 1"),
        (["--steps", "10", "--warmup-steps", "10"], "--warmup-steps 10 must be in 0..steps-1"),
        (["--threads", "0"], "--threads 0 must be >= 1"),
    ],
)
def test_bad_training_flags_are_one_line_errors(flags, message, capsys) -> None:
    assert main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {message}"


# --- one whole (tiny) run, on a made-up corpus -------------------------------------------


def test_a_tiny_run_writes_a_verified_model_folder(tmp_path, monkeypatch, capsys) -> None:
    import json

    from mla_core.loading.weights import load_gpt2_from_dir, verified_sha256

    monkeypatch.setattr("mla_core.loading.corpus.load_wiki_summaries", made_up_documents)
    out = tmp_path / "model"
    argv = [
        "--steps", "4", "--batch-size", "2", "--n-ctx", "96", "--n-layer", "2",
        "--n-head", "2", "--n-embd", "64", "--warmup-steps", "1", "--eval-every", "2",
        "--eval-windows", "2", "--val-fraction", "0.2", "--precision", "fp32",
        "--position-init", "sinusoidal", "--position-std", "0.1", "--repeat-fraction", "0.5",
        "--fused-adamw", "--threads", "1", "--device", "cpu", "--out", str(out),
        "--checkpoint-dir", str(tmp_path / "checkpoint"),
    ]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert record["steps"] == 4 and len(record["history"]["train_loss"]) == 4
    assert record["settings"]["repeat_fraction"] == 0.5
    assert record["settings"]["position_std"] == 0.1
    assert record["settings"]["fused_adamw"] is True
    # head scores tracked at every evaluation, then every head scored on the shipped weights
    assert record["history"]["val_step"] == [2, 4]
    assert len(record["history"]["best_previous_token"]) == 2
    assert len(record["head_scores"]["all"]) == 2 * 2
    assert verified_sha256(out) == record["sha256"]
    model = load_gpt2_from_dir(out)
    assert model.config.n_layer == 2 and model.config.n_embd == 64
    card = (out / "MODEL.md").read_text(encoding="utf-8")
    assert record["sha256"] in card and "| 1.1 |" in card  # the per-head table
    assert "planted repeats | 50% of the training windows" in card
    assert "python -m mla_core.train --steps 4" in card
    # the recorded per-head table is what the shipped weights score
    from mla_core.analysis.head_scores import measure_head_scores

    scores = measure_head_scores(model)
    for row in record["head_scores"]["all"]:
        layer, head = row["layer"], row["head"]
        assert row["previous_token"] == pytest.approx(scores.previous_token[layer, head], abs=1e-4)
    assert "val loss" in capsys.readouterr().out


def test_a_second_stage_starts_from_the_first_and_the_card_lists_both(
    tmp_path, monkeypatch
) -> None:
    """--init-from: the run starts from those weights (not random ones), and its card and
    training.json carry the stages behind them."""
    import json

    from mla_core.loading.weights import load_gpt2_from_dir

    monkeypatch.setattr("mla_core.loading.corpus.load_wiki_summaries", made_up_documents)
    common = [
        "--batch-size", "2", "--n-ctx", "96", "--n-layer", "2", "--n-head", "2",
        "--n-embd", "64", "--warmup-steps", "1", "--eval-every", "2", "--eval-windows", "2",
        "--val-fraction", "0.2", "--precision", "fp32", "--threads", "1", "--device", "cpu",
    ]  # fmt: skip
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*common, "--steps", "2", "--out", str(first),
                 "--checkpoint-dir", str(tmp_path / "c1")]) == 0  # fmt: skip
    # zero learning rate: the second stage's weights must be the first's, not a fresh init
    assert main([*common, "--steps", "2", "--lr", "0", "--min-lr", "0", "--out", str(second),
                 "--init-from", str(first), "--random-repeat-fraction", "0.5",
                 "--checkpoint-dir", str(tmp_path / "c2")]) == 0  # fmt: skip
    a, b = load_gpt2_from_dir(first), load_gpt2_from_dir(second)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    record = json.loads((second / "training.json").read_text(encoding="utf-8"))
    first_record = json.loads((first / "training.json").read_text(encoding="utf-8"))
    assert [stage["sha256"] for stage in record["stages"]] == [
        first_record["sha256"],
        record["sha256"],
    ]
    assert record["stages"][1]["init_from"] == str(first)
    card = (second / "MODEL.md").read_text(encoding="utf-8")
    assert "## Training stages" in card and "# stage 2" in card
    assert first_record["command"] in card and record["command"] in card
    assert "random repeats | 50% of the training windows" in card


def test_init_from_a_model_of_another_shape_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("mla_core.loading.corpus.load_wiki_summaries", made_up_documents)
    from mla_core.loading.weights import save_gpt2
    from mla_core.models.configs import GPT2Config
    from mla_core.models.gpt2 import GPT2

    other = save_gpt2(GPT2(GPT2Config(n_ctx=96, n_embd=32, n_layer=1, n_head=2)), tmp_path / "m")
    argv = ["--steps", "2", "--batch-size", "2", "--n-ctx", "96", "--n-layer", "2",
            "--n-head", "2", "--n-embd", "64", "--warmup-steps", "1", "--threads", "1",
            "--device", "cpu", "--init-from", str(other), "--out", str(tmp_path / "out"),
            "--checkpoint-dir", str(tmp_path / "c")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --init-from") and "differs" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
