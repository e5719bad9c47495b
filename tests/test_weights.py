"""Where weights come from, and loading/saving Hugging Face GPT-2 checkpoints."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mla_core.errors import UserError
from mla_core.loading import weights as weights_module
from mla_core.loading.weights import (
    DEVICE_CHOICE_ENV,
    WEIGHTS_ENV,
    check_device,
    load_gpt2,
    load_gpt2_from_dir,
    resolve_weights,
    save_gpt2,
)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, no_env) -> None:
    """Downloads allowed again (conftest sets HF_HUB_OFFLINE=1); the tests using this fake
    the download itself (tests/test_auto_weights.py serves a real one)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


def fake_hf_cache(cache_dir: Path, checkpoint: Path, repo_id: str = "gpt2") -> Path:
    """A Hugging Face hub cache holding `checkpoint` as the main snapshot of `repo_id`."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(checkpoint / name, snapshot / name)
    return snapshot


# --- loading and saving -----------------------------------------------------------------


def test_round_trip_is_exact(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    model = load_gpt2_from_dir(tiny_gpt2_dir)
    save_gpt2(model, tmp_path / "saved")
    # The file we write holds exactly the tensors transformers wrote, bit for bit.
    original = load_file(tiny_gpt2_dir / "model.safetensors")
    saved = load_file(tmp_path / "saved" / "model.safetensors")
    assert set(saved) == set(original)
    for key, tensor in original.items():
        assert torch.equal(saved[key], tensor), key
    reloaded = load_gpt2_from_dir(tmp_path / "saved")
    for (name, a), (_, b) in zip(
        model.state_dict().items(), reloaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert reloaded.lm_head.weight is reloaded.wte.weight


def test_saved_checkpoint_loads_in_transformers(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    from transformers import GPT2LMHeadModel

    model = load_gpt2_from_dir(tiny_gpt2_dir)
    folder = save_gpt2(model, tmp_path / "saved")
    oracle, info = GPT2LMHeadModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.arange(10).view(1, 10) * 997
    with torch.no_grad():
        torch.testing.assert_close(model(ids), oracle.eval()(ids).logits, rtol=0, atol=1e-5)
    digest = (folder / "model.safetensors.sha256").read_text().split()[0]
    assert digest == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_official_layout_loads_the_same_weights(tiny_gpt2_dir, tiny_gpt2_official_dir) -> None:
    a, b = load_gpt2_from_dir(tiny_gpt2_dir), load_gpt2_from_dir(tiny_gpt2_official_dir)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_pickle_checkpoint_is_refused(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
    shutil.copy(tiny_gpt2_dir / "config.json", tmp_path)
    with pytest.raises(UserError, match="pytorch_model.bin.*save_pretrained.*safe_serialization"):
        load_gpt2_from_dir(tmp_path)


def _drop_ln_f_bias(t: dict) -> None:
    del t["transformer.ln_f.bias"]


def _shrink_wpe(t: dict) -> None:
    t["transformer.wpe.weight"] = t["transformer.wpe.weight"][:32].clone()


def _add_stray(t: dict) -> None:
    t["transformer.h.9.attn.c_attn.weight"] = torch.zeros(2, 2)


def _untie_head(t: dict) -> None:
    t["lm_head.weight"] = t["transformer.wte.weight"] + 1


def _tie_head(t: dict) -> None:
    t["lm_head.weight"] = t["transformer.wte.weight"].clone()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop_ln_f_bias, "lacks 1 GPT-2 tensor.*ln_f.bias"),
        (_shrink_wpe, r"wpe.weight has shape \[32, 32\], expected \[64, 32\]"),
        (_add_stray, "does not have: h.9.attn.c_attn.weight"),
        (_untie_head, "lm_head.weight differs"),
    ],
)
def test_broken_checkpoints_are_one_line_errors(edited_checkpoint, edit, message) -> None:
    with pytest.raises(UserError, match=message) as err:
        load_gpt2_from_dir(edited_checkpoint(edit))
    assert "\n" not in str(err.value)


def test_stored_tied_head_is_accepted(edited_checkpoint, tiny_gpt2_dir: Path) -> None:
    """A checkpoint that also stores lm_head.weight (equal to wte) loads to the same model."""
    with_head = load_gpt2_from_dir(edited_checkpoint(_tie_head))
    without = load_gpt2_from_dir(tiny_gpt2_dir)
    assert with_head.lm_head.weight is with_head.wte.weight  # still tied, not a copy
    ids = torch.tensor([[383, 1605, 6056]])
    with torch.no_grad():
        torch.testing.assert_close(with_head(ids), without(ids), rtol=0, atol=0)


def test_unsupported_config_and_garbage_file(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    config = json.loads((tiny_gpt2_dir / "config.json").read_text())
    shutil.copy(tiny_gpt2_dir / "model.safetensors", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    with pytest.raises(UserError, match="activation_function 'relu'"):
        load_gpt2_from_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_gpt2_from_dir(tmp_path)


# --- where the weights come from --------------------------------------------------------


def test_weights_argument_wins_over_everything(
    tiny_gpt2_dir: Path, tiny_gpt2_official_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(tiny_gpt2_official_dir))
    fake_hf_cache(tmp_path / "hub", tiny_gpt2_official_dir)
    source = resolve_weights(tiny_gpt2_dir, download=True, hf_cache_dir=tmp_path / "hub")
    assert source.kind == "weights-arg" and source.path == tiny_gpt2_dir.resolve()
    assert str(tiny_gpt2_dir.resolve()) in source.description
    expected = hashlib.sha256((tiny_gpt2_dir / "model.safetensors").read_bytes()).hexdigest()
    assert source.sha256 == expected


def test_environment_variable_comes_next(
    tiny_gpt2_dir: Path, tiny_gpt2_official_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(tiny_gpt2_dir))
    fake_hf_cache(tmp_path / "hub", tiny_gpt2_official_dir)
    source = resolve_weights(hf_cache_dir=tmp_path / "hub")
    assert source.kind == "env" and WEIGHTS_ENV in source.description


@pytest.mark.parametrize("repo_id", ["gpt2", "openai-community/gpt2"])
def test_hugging_face_cache_before_download_and_embedded(
    tiny_gpt2_dir: Path, tmp_path: Path, monkeypatch, no_env, repo_id: str
) -> None:
    def no_download(*args, **kwargs):
        raise AssertionError("must not download when the cache has the files")

    monkeypatch.setattr(weights_module, "download_gpt2", no_download)
    snapshot = fake_hf_cache(tmp_path / "hub", tiny_gpt2_dir, repo_id)
    source = resolve_weights(
        download=True, hf_cache_dir=tmp_path / "hub", embedded_dir=tiny_gpt2_dir
    )
    assert source.kind == "hf-cache" and source.path == snapshot.resolve()
    assert repo_id in source.description and source.repo_id == repo_id


def test_download_unless_told_not_to(tiny_gpt2_dir: Path, tmp_path: Path, monkeypatch, online):
    calls = []

    def fake_download(cache_dir):
        calls.append(cache_dir)
        return tiny_gpt2_dir

    monkeypatch.setattr(weights_module, "download_gpt2", fake_download)
    empty_hub, no_embedded = tmp_path / "hub", tmp_path / "none"
    with pytest.raises(UserError, match="no GPT-2 weights found.*--weights.*go online"):
        resolve_weights(download=False, hf_cache_dir=empty_hub, embedded_dir=no_embedded)
    assert calls == []
    source = resolve_weights(hf_cache_dir=empty_hub, embedded_dir=no_embedded)
    assert source.kind == "download" and calls == [empty_hub]
    assert source.repo_id == "openai-community/gpt2"


def test_offline_download_is_a_one_line_error(tmp_path: Path, monkeypatch, online) -> None:
    def offline(*args, **kwargs):
        raise OSError("Name or service not known\ntraceback details")

    monkeypatch.setattr("huggingface_hub.get_hf_file_metadata", offline)
    with pytest.raises(UserError, match="could not download.*Name or service.*offline") as err:
        resolve_weights(download=True, hf_cache_dir=tmp_path / "hub")
    assert "\n" not in str(err.value)
    lines = []  # without --download: one line says so, and the demo model is used
    source = resolve_weights(hf_cache_dir=tmp_path / "hub", report=lines.append)
    assert source.kind == "embedded" and len(lines) == 1 and "Name or service" in lines[0]


def test_embedded_model_is_the_fallback(
    tiny_gpt2_dir: Path, tmp_path: Path, monkeypatch, no_env
) -> None:
    source = resolve_weights(hf_cache_dir=tmp_path / "hub", embedded_dir=tiny_gpt2_dir)
    assert source.kind == "embedded" and "embedded" in source.description
    model, source = load_gpt2(
        hf_cache_dir=tmp_path / "hub", embedded_dir=tiny_gpt2_dir, device="cpu"
    )
    assert model.config.n_layer == 2 and source.kind == "embedded"


def test_default_embedded_folder_is_in_the_repository() -> None:
    root = Path(__file__).resolve().parent.parent
    assert weights_module.EMBEDDED_DIR == root / "assets" / "models" / "demo-gpt2"


def test_sha256_file_is_checked(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "w"
    shutil.copytree(tiny_gpt2_dir, folder)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    (folder / "model.safetensors.sha256").write_text(digest + "  model.safetensors\n")
    assert resolve_weights(folder).sha256 == digest
    (folder / "model.safetensors.sha256").write_text("ab" * 32 + "\n")
    with pytest.raises(UserError, match="sha256.*corrupt"):
        resolve_weights(folder)


def test_missing_or_incomplete_folders(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        resolve_weights(tmp_path / "nope")
    with pytest.raises(UserError, match="has no model.safetensors"):
        resolve_weights(tmp_path)
    shutil.copy(tiny_gpt2_dir / "model.safetensors", tmp_path)
    with pytest.raises(UserError, match="has no config.json"):
        resolve_weights(tmp_path)


def test_device_choice() -> None:
    has_gpu = torch.cuda.is_available()
    assert check_device("cpu") == "cpu"
    for unset in (None, ""):  # a missing flag, or video.toml's device = ""
        assert check_device(unset) == ("cuda" if has_gpu else "cpu")
    for bad in ("tpu", "CPU", "cuda:0"):
        with pytest.raises(UserError, match=f"device '{bad}' is not allowed; use cpu or cuda"):
            check_device(bad)
    if has_gpu:
        assert check_device("cuda") == "cuda"
    else:
        with pytest.raises(UserError, match="no CUDA GPU"):
            check_device("cuda")


def test_device_choice_handed_down_by_render_py(monkeypatch) -> None:
    """render.py puts what "" resolved to in the environment of its manim processes; they
    take it without asking torch. An explicit device is still checked, and a value that is
    not a device is ignored."""
    has_gpu = torch.cuda.is_available()
    monkeypatch.setenv(DEVICE_CHOICE_ENV, "cuda")
    assert check_device("") == "cuda"  # taken as given: the parent checked it
    assert check_device("cpu") == "cpu"
    if not has_gpu:
        with pytest.raises(UserError, match="no CUDA GPU"):
            check_device("cuda")
    monkeypatch.setenv(DEVICE_CHOICE_ENV, "tpu")
    assert check_device("") == ("cuda" if has_gpu else "cpu")
