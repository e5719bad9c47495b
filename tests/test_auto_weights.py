"""weights = "auto": a real download from a Hugging Face hub, without the internet.

A small HTTP server in a thread plays the hub: it serves conftest's tiny random GPT-2
(config.json + model.safetensors) as `openai-community/gpt2` in the hub's URL layout,
`/{repo}/resolve/{revision}/{filename}`, with the headers huggingface_hub 2.x reads (ETag,
X-Repo-Commit, Content-Length) on HEAD and GET, and counts every request. HF_ENDPOINT points
at it and the Hugging Face cache is a temporary folder. Another "hub" accepts connections and
never answers, to check that an unreachable hub falls back to the demo model quickly.

conftest sets HF_HUB_OFFLINE=1 for the whole test run; the tests here that want the network
take it away again (in this process also huggingface_hub's own copy of it, read at import).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from helpers import REPO

from mla_core.errors import UserError
from mla_core.loading import weights as weights_module
from mla_core.loading.weights import (
    AUTO_CHOICE_ENV,
    EMBEDDED_DIR,
    WEIGHTS_ENV,
    WeightsSource,
    auto_choice_json,
    load_gpt2_from_dir,
    resolve_weights,
)
from mla_core.loading.weights_setting import parse_weights_spec

REPO_ID = "openai-community/gpt2"
COMMIT = "8a1f2c3d4e5f60718293a4b5c6d7e8f901234567"  # any 40 hex digits: the "main" commit
FLAG_IDS = [383, 1605, 6056, 318, 2266, 11, 2330, 11, 290]


class FakeHub:
    """A hub serving `files` of REPO_ID at revision main; `requests` counts (method, file)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: Counter[tuple[str, str]] = Counter()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                prefix = f"/{REPO_ID}/resolve/main/"
                name = self.path[len(prefix) :] if self.path.startswith(prefix) else self.path
                hub.requests[(self.command, name)] += 1
                data = hub.files.get(name)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, method: str | None = None, name: str | None = None) -> int:
        return sum(
            n
            for (m, f), n in self.requests.items()
            if (method is None or m == method) and (name is None or f == name)
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(tiny_gpt2_dir: Path) -> Iterator[FakeHub]:
    files = {n: (tiny_gpt2_dir / n).read_bytes() for n in ("config.json", "model.safetensors")}
    server = FakeHub(files)
    yield server
    server.close()


@pytest.fixture
def silent_hub() -> Iterator[str]:
    """A hub that accepts connections (the kernel does, from the backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process may use the network again (conftest took it away), with no weights
    folder from the environment."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(AUTO_CHOICE_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    return monkeypatch


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- in this process: resolve_weights against the fake hub --------------------------------


def test_auto_downloads_once_then_uses_the_cache(
    hub: FakeHub, online, tmp_path: Path, load_oracle, tiny_gpt2_dir: Path
) -> None:
    online.setenv("HF_ENDPOINT", hub.url)
    lines: list[str] = []
    cache = tmp_path / "hub"

    source = resolve_weights("auto", hf_cache_dir=cache, report=lines.append)
    assert source.kind == "download" and source.repo_id == REPO_ID
    assert source.sha256 == sha256(hub.files["model.safetensors"])
    assert source.path == cache / "models--openai-community--gpt2" / "snapshots" / COMMIT
    assert (source.path / "config.json").read_bytes() == hub.files["config.json"]
    assert hub.count("GET", "model.safetensors") == 1
    assert hub.count(name="pytorch_model.bin") == 0  # safetensors only, never a pickle
    assert len(lines) == 1 and lines[0].startswith(f"weights: downloaded {REPO_ID}")

    before = sum(hub.requests.values())
    again = resolve_weights("auto", hf_cache_dir=cache, report=lines.append)
    assert again.kind == "hf-cache" and again.path == source.path and again.repo_id == REPO_ID
    assert sum(hub.requests.values()) == before  # the cache is read without the network
    assert "from the Hugging Face cache" in lines[1]

    # the downloaded model is the one served: same next-token logits as transformers' GPT-2
    ours = load_gpt2_from_dir(again.path)
    with torch.no_grad():
        expected = load_oracle(tiny_gpt2_dir)(torch.tensor([FLAG_IDS])).logits
        got = ours(torch.tensor([FLAG_IDS]))
    got = got[0] if isinstance(got, tuple) else got
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_an_unreachable_hub_falls_back_to_the_demo_model_quickly(
    silent_hub: str, online, tmp_path: Path
) -> None:
    online.setenv("HF_ENDPOINT", silent_hub)
    lines: list[str] = []
    start = time.monotonic()
    source = resolve_weights(hf_cache_dir=tmp_path / "hub", report=lines.append)
    elapsed = time.monotonic() - start
    assert source.kind == "embedded" and source.path == EMBEDDED_DIR
    assert elapsed < 30, f"waited {elapsed:.1f} s for a hub that does not answer"
    assert len(lines) == 1
    assert f"download of {REPO_ID} from {silent_hub} failed (no answer within 3 s)" in lines[0]
    assert "using the embedded demo GPT-2" in lines[0]


def test_download_flag_makes_a_failed_download_an_error(online, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(UserError, match=f"could not download {REPO_ID}") as err:
        resolve_weights(download=True, hf_cache_dir=tmp_path / "hub", report=print)
    assert "\n" not in str(err.value)
    online.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="--download: HF_HUB_OFFLINE is set"):
        resolve_weights(download=True, hf_cache_dir=tmp_path / "hub", report=print)


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE is set, so no download was tried"),
        ("TRANSFORMERS_OFFLINE=1", "HF_HUB_OFFLINE is set, so no download was tried"),
        ("--no-download", "downloads are off (--no-download)"),
        ("demo", None),
    ],
)
def test_offline_choices_never_try_the_network(
    hub: FakeHub, online, tmp_path: Path, how: str, expected: str | None
) -> None:
    online.setenv("HF_ENDPOINT", hub.url)
    tried = []
    real_download = weights_module.download_gpt2
    online.setattr(weights_module, "download_gpt2", lambda *a: tried.append(a) or real_download(*a))
    lines: list[str] = []
    kwargs = {"hf_cache_dir": tmp_path / "hub", "report": lines.append}
    if how == "--no-download":
        source = resolve_weights(download=False, **kwargs)
    elif how == "demo":
        source = resolve_weights("demo", **kwargs)
    else:
        name, value = how.split("=")
        online.setenv(name, value)
        source = resolve_weights(**kwargs)
    assert source.kind == "embedded"
    assert tried == [] and sum(hub.requests.values()) == 0
    if expected is None:
        assert lines == []  # "demo" was asked for: nothing to explain
    else:
        assert len(lines) == 1 and expected in lines[0] and "embedded demo GPT-2" in lines[0]
    # and the same settings with the network allowed do download (the spy can see it)
    online.delenv("HF_HUB_OFFLINE", raising=False)
    online.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_weights(**kwargs).kind == "download" and len(tried) == 1


def test_render_py_hands_its_answer_to_later_processes(
    tiny_gpt2_dir: Path, online, tmp_path: Path
) -> None:
    """What render.py resolved "auto" to is used as is: no cache lookup, no network."""
    given = WeightsSource("download", tiny_gpt2_dir, "handed down", "ab" * 32, REPO_ID)
    online.setenv(AUTO_CHOICE_ENV, auto_choice_json(given))
    online.setattr(weights_module, "find_in_hf_cache", lambda *a: pytest.fail("looked"))
    online.setattr(weights_module, "download_gpt2", lambda *a: pytest.fail("downloaded"))
    assert resolve_weights("auto") == given
    assert resolve_weights("", report=print) == given  # "" is "auto" (old video.toml files)
    assert resolve_weights("demo").kind == "embedded"  # only "auto" is handed down


def test_weights_settings(tmp_path: Path) -> None:
    assert parse_weights_spec(None) == parse_weights_spec("") == parse_weights_spec(" auto ")
    assert parse_weights_spec("auto") == "auto" and parse_weights_spec("demo") == "demo"
    assert parse_weights_spec("./auto") == Path("auto")
    assert parse_weights_spec(Path("demo")) == Path("demo")
    with pytest.raises(UserError, match=r'^weights: .*nope.* does not exist; use "auto", "demo"'):
        resolve_weights(str(tmp_path / "nope"), flag="weights")


# --- what the scenes and manifests say ------------------------------------------------------


def test_captions_and_provenance_name_the_model(tiny_gpt2_dir: Path) -> None:
    from mla_core.scene_data.inputs import SceneInputs
    from mla_core.scene_data.params import VideoParams

    def inputs(kind: str, repo_id: str = "") -> SceneInputs:
        source = WeightsSource(kind, tiny_gpt2_dir, f"{kind} weights", "0123456789ab" * 5, repo_id)
        return SceneInputs(VideoParams(), source, "c" * 64, "cpu")

    for kind in ("download", "hf-cache"):
        hub_inputs = inputs(kind, REPO_ID)
        caption = hub_inputs.model_caption
        assert caption == f"model: OpenAI's GPT-2 ({REPO_ID}), sha256 0123456789ab"
        assert hub_inputs.provenance["model_kind"] == kind
        assert hub_inputs.provenance["model_repo"] == REPO_ID
    assert "demo model" in inputs("embedded").model_caption
    assert "GPT-2 (" not in inputs("embedded").model_caption
    for kind in ("weights-arg", "env"):
        assert inputs(kind).model_caption == f"model: {tiny_gpt2_dir.name}, sha256 0123456789ab"
        assert "model_repo" not in inputs(kind).provenance


# --- end to end: render.py and python -m mla_core in their own processes -------------------


def hub_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    """The environment of a user on a machine where `endpoint` is the Hugging Face hub."""
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", WEIGHTS_ENV, AUTO_CHOICE_ENV):
        env.pop(name, None)
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_CACHE=str(tmp_path / "hf-hub"),
        MLA_SCENE_DATA_CACHE=str(tmp_path / "scene_data"),
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    return env


def run_in(env: dict[str, str], cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_render_downloads_once_and_the_manifest_says_so(hub: FakeHub, tmp_path: Path) -> None:
    env = hub_env(tmp_path, hub.url)
    media, figures = tmp_path / "media", tmp_path / "figures"
    args = ["--media-dir", str(media), "--figures-dir", str(figures), "still", "NextToken"]
    result = run_in(env, tmp_path, str(REPO / "render.py"), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"weights: downloaded {REPO_ID} into the Hugging Face cache" in result.stderr
    assert hub.count("GET", "model.safetensors") == 1  # once, by render.py, not per process

    manifest = json.loads((figures / "NextToken_low.manifest.json").read_text(encoding="utf-8"))
    provenance = manifest["record"]["provenance"]
    assert provenance["model_kind"] == "download"  # the manim process used render.py's answer
    assert provenance["model_repo"] == REPO_ID
    assert provenance["model_sha256"] == sha256(hub.files["model.safetensors"])
    assert manifest["fingerprint"]["model_sha256"] == provenance["model_sha256"]

    # the next run finds it in that cache, without a request
    before = sum(hub.requests.values())
    source = resolve_weights(hf_cache_dir=tmp_path / "hf-hub", download=False, report=print)
    assert source.kind == "hf-cache" and source.sha256 == provenance["model_sha256"]
    assert sum(hub.requests.values()) == before


@pytest.mark.slow
def test_a_command_without_network_says_so_in_one_line(silent_hub: str, tmp_path: Path) -> None:
    predict = ["-m", "mla_core", "predict", "--prompt", " The", "--device", "cpu", "--json"]
    result = run_in(hub_env(tmp_path, silent_hub), REPO, *predict)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["weights"]["kind"] == "embedded"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # what was tried and which model is used, nothing else
    assert f"download of {REPO_ID} from {silent_hub} failed (no answer within 3 s)" in lines[0]
    assert "using the embedded demo GPT-2" in lines[0]


def test_the_commands_network_flags(hub: FakeHub, online, tmp_path: Path, capsys) -> None:
    from mla_core.cli import main

    predict = ["predict", "--prompt", " The", "--device", "cpu", "--json"]
    online.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    online.setenv("HF_ENDPOINT", hub.url)
    for extra in (["--no-download"], ["--weights", "demo"]):
        assert main(predict + extra) == 0
        assert json.loads(capsys.readouterr().out)["weights"]["kind"] == "embedded"
    assert sum(hub.requests.values()) == 0
    with pytest.raises(SystemExit) as usage:  # one or the other
        main(predict + ["--download", "--no-download"])
    assert usage.value.code == 2 and "not allowed with argument" in capsys.readouterr().err

    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    capsys.readouterr()
    assert main(predict + ["--download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not download {REPO_ID}") and err.count("\n") == 1
    assert main(predict) == 0  # without --download: the demo model
    assert json.loads(capsys.readouterr().out)["weights"]["kind"] == "embedded"


def test_render_py_no_download(hub: FakeHub, online, tmp_path: Path, capsys) -> None:
    import render

    online.setenv("HF_ENDPOINT", hub.url)
    online.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    for argv in (["--no-download", "data", "Hook"], ["data", "Hook", "--no-download"]):
        assert render.main(argv) == 0
        err = capsys.readouterr().err
        assert "downloads are off (--no-download); using the embedded demo GPT-2" in err
        assert AUTO_CHOICE_ENV not in os.environ  # the run's answer is not left behind
    assert sum(hub.requests.values()) == 0
