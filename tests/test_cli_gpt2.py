"""`python -m mla_core predict` and `attention` on a checkpoint the tests make."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mla_core.cli import main

FLAG_PROMPT = " The American flag is red, white, and"
FLAG_IDS = [383, 1605, 6056, 318, 2266, 11, 2330, 11, 290]
ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_predict_json_matches_transformers(capsys, tiny_gpt2_dir, load_oracle) -> None:
    rc, out, _ = run(
        capsys,
        "predict",
        "--prompt",
        FLAG_PROMPT,
        "--top-k",
        "4",
        "--weights",
        str(tiny_gpt2_dir),
        "--device",
        "cpu",
        "--json",
    )
    assert rc == 0
    report = json.loads(out)
    assert report["token_ids"] == FLAG_IDS and report["tokens"][0] == "\u2423The"
    assert report["weights"]["kind"] == "weights-arg"
    with torch.no_grad():
        logits = load_oracle(tiny_gpt2_dir)(torch.tensor([FLAG_IDS])).logits[0, -1]
    expected = torch.topk(torch.softmax(logits, -1), 4)
    assert [t["token_id"] for t in report["top_k"]] == expected.indices.tolist()
    np.testing.assert_allclose(
        [t["probability"] for t in report["top_k"]], expected.values.numpy(), rtol=1e-5
    )


def test_predict_table(capsys, tiny_gpt2_dir) -> None:
    rc, out, _ = run(capsys, "predict", "--prompt", FLAG_PROMPT, "--weights", str(tiny_gpt2_dir))
    assert rc == 0
    assert out.startswith(f"weights: --weights {tiny_gpt2_dir.resolve()}")
    assert len([line for line in out.splitlines() if line[:4].strip().isdigit()]) == 10


@pytest.mark.parametrize("bos", [True, False])
def test_attention_npz_matches_transformers(
    capsys, tiny_gpt2_dir, load_oracle, tmp_path, bos: bool
) -> None:
    out_file = tmp_path / "head.npz"
    rc, out, _ = run(
        capsys,
        "attention",
        "--prompt",
        FLAG_PROMPT,
        "--layer",
        "1",
        "--head",
        "2",
        "--weights",
        str(tiny_gpt2_dir),
        "--bos" if bos else "--no-bos",
        "--out",
        str(out_file),
    )
    assert rc == 0 and f"wrote {out_file}" in out
    data = np.load(out_file)
    ids = [50256] * bos + FLAG_IDS
    assert data["token_ids"].tolist() == ids
    assert data["tokens"][int(bos)] == "\u2423The"
    for name in ("q", "k", "v", "z"):
        assert data[name].shape == (len(ids), 8)
    with torch.no_grad():
        attentions = load_oracle(tiny_gpt2_dir)(
            torch.tensor([ids]), output_attentions=True
        ).attentions
    np.testing.assert_allclose(data["pattern"], attentions[1][0, 2].numpy(), rtol=0, atol=1e-5)
    assert int(data["layer"]) == 1 and int(data["head"]) == 2 and bool(data["bos"]) is bos
    assert list(tmp_path.iterdir()) == [out_file]  # no temp file left behind


def test_attention_json(capsys, tiny_gpt2_dir) -> None:
    rc, out, _ = run(
        capsys,
        "attention",
        "--prompt",
        "hi there",
        "--layer",
        "0",
        "--head",
        "3",
        "--no-bos",
        "--weights",
        str(tiny_gpt2_dir),
        "--json",
    )
    report = json.loads(out)
    assert rc == 0 and report["tokens"] == ["hi", "\u2423there"]
    assert np.array(report["pattern"]).shape == (2, 2) and report["pattern"][0][1] == 0.0


def _drop_wte(tensors: dict) -> None:
    del tensors["transformer.wte.weight"]


def _bad_shape(tensors: dict) -> None:
    tensors["transformer.h.0.ln_1.weight"] = torch.ones(31)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--prompt", ""], "prompt is empty"),
        (["predict", "--prompt", " a" * 65], "longer than the model's context of 64"),
        (["predict", "--prompt", "x", "--top-k", "0"], "--top-k 0"),
        (["attention", "--prompt", "x", "--layer", "2", "--head", "0"], "--layer 2"),
        (["attention", "--prompt", "x", "--layer", "0", "--head", "4"], "--head 4"),
        (["attention", "--prompt", "x", "--layer", "-1", "--head", "0"], "--layer -1"),
        (["attention", "--prompt", "x", "--layer", "0", "--head", "0", "--model", "t5"], "t5"),
        (["predict", "--prompt", "x", "--device", "tpu"], "tpu"),
        (["attention", "--prompt", "x", "--layer", "0"], "--head"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tiny_gpt2_dir, argv, message) -> None:
    try:
        rc, out, err = run(capsys, *argv, "--weights", str(tiny_gpt2_dir))
    except SystemExit as exit_:  # argparse errors exit from inside parse_args
        rc, (out, err) = exit_.code, capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error:") and message in err


@pytest.mark.parametrize("edit", [_drop_wte, _bad_shape])
def test_broken_checkpoint_is_one_line_and_exit_2(capsys, edited_checkpoint, edit) -> None:
    rc, out, err = run(
        capsys, "predict", "--prompt", "x", "--weights", str(edited_checkpoint(edit))
    )
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert ("wte.weight" if edit is _drop_wte else "h.0.ln_1.weight has shape [31]") in err


def test_missing_weights_folder_and_bad_out_folder(capsys, tmp_path, tiny_gpt2_dir) -> None:
    rc, _, err = run(capsys, "predict", "--prompt", "x", "--weights", str(tmp_path / "nope"))
    assert rc == 2 and "does not exist" in err and err.count("\n") == 1
    argv = ["attention", "--prompt", "x", "--layer", "0", "--head", "0"]
    rc, _, err = run(
        capsys, *argv, "--weights", str(tiny_gpt2_dir), "--out", str(tmp_path / "no/x.npz")
    )
    assert rc == 2 and "does not exist" in err and err.count("\n") == 1


def test_no_weights_anywhere_says_how_to_provide_them(tmp_path) -> None:
    """Through the CLI in a fresh process, with an empty HF cache and the embedded model's
    folder pointed at an empty one (as in a checkout without assets/)."""
    code = (
        "import sys; from pathlib import Path; import mla_core.loading.weights as w; "
        "w.EMBEDDED_DIR = Path(sys.argv[1]); from mla_core.cli import main; "
        "sys.exit(main(['predict', '--prompt', 'x']))"
    )
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "no_model")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no GPT-2 weights found" in result.stderr
