"""Where GPT-2's weights come from, and how a Hugging Face checkpoint becomes our model.

The weights setting (`--weights`, video.toml's `weights =`) is one of:
- "auto" (the default; "" means the same): the first of
  1. the `MLA_GPT2_WEIGHTS` environment variable (a folder);
  2. a `gpt2` snapshot already in the Hugging Face cache (looked up offline, no network call);
  3. a download of `openai-community/gpt2` (config.json and model.safetensors only) into the
     Hugging Face cache, unless offline (`HF_HUB_OFFLINE=1`, `--no-download`); a hub that does
     not answer within a few seconds counts as offline;
  4. the project's embedded demo model, `assets/models/demo-gpt2/`;
  and one line on stderr says what was tried and which model is used.
- "demo": the embedded demo model, never the network;
- a folder path (a `pathlib.Path` is always a folder; write "./auto" for a folder named auto).

`resolve_weights(..., download=True)` (`--download`) is "auto", but a failed download is an
error instead of a fall-back to the demo model.

A weights folder holds `config.json` and `model.safetensors` (never a pickle: a
`pytorch_model.bin` is refused with the command that converts it). When it also holds
`model.safetensors.sha256` (one line: the hex digest) the file is checked against it.

Checkpoint layout (what Hugging Face GPT-2 files look like):
- keys: the official `gpt2` files say `h.0.attn.c_attn.weight`; `save_pretrained` writes
  `transformer.h.0.attn.c_attn.weight`. Both load.
- the four projections (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) are Conv1D layers
  stored [in, out]; nn.Linear wants [out, in], so they are transposed.
- `attn.bias` / `attn.masked_bias` are the causal-mask buffers of old checkpoints: ignored.
- `lm_head.weight`, if stored, must equal the token embedding (GPT-2's head is tied).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

from mla_core.atomic import write_atomically, write_text_atomically
from mla_core.errors import UserError, check_device_name
from mla_core.loading.weights_setting import AUTO, AUTO_CHOICE_ENV, DEMO, parse_weights_spec
from mla_core.models.configs import GPT2Config, gpt2_config_from_hf, load_config_json

# torch is imported by the functions that touch tensors, not here: finding and hashing the
# weights needs no torch, and a scene process that reads its data from the cache never loads
# it (its import is about 1.5 s of the 2.5 s a manim process takes to start).
if TYPE_CHECKING:
    import torch

    from mla_core.models.gpt2 import GPT2

WEIGHTS_ENV = "MLA_GPT2_WEIGHTS"
EMBEDDED_DIR = Path(__file__).resolve().parents[2] / "assets" / "models" / "demo-gpt2"
HF_REPO_IDS = ("gpt2", "openai-community/gpt2")  # the same files under the old and new name
DOWNLOAD_REPO_ID = "openai-community/gpt2"
# Set by render.py for its manim processes: what device "" (cuda when available) resolved to,
# so that they need not import torch to ask again.
DEVICE_CHOICE_ENV = "MLA_DEVICE_CHOICE"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SHA256_FILE = "model.safetensors.sha256"

# Stored [in, out] by Hugging Face's Conv1D; nn.Linear holds [out, in].
CONV1D_SUFFIXES = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
# The causal-mask buffers some checkpoints carry (careful: "c_attn.bias" is a real weight).
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")

CONVERT_HINT = (
    "load it with transformers.GPT2LMHeadModel.from_pretrained(DIR) and save it with "
    ".save_pretrained(OUT, safe_serialization=True)"
)


@dataclass(frozen=True)
class WeightsSource:
    """A resolved weights folder and how it was found."""

    kind: str  # "weights-arg", "env", "hf-cache", "download" or "embedded"
    path: Path  # the folder holding config.json and model.safetensors
    description: str  # one human-readable line for captions and manifests
    sha256: str  # of model.safetensors
    repo_id: str = ""  # the Hugging Face repository, for "hf-cache" and "download"

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "description": self.description,
            "sha256": self.sha256,
            "repo_id": self.repo_id,
        }

    @property
    def from_hub(self) -> bool:
        """True for OpenAI's GPT-2 as the Hugging Face hub serves it (cached or downloaded)."""
        return self.kind in ("hf-cache", "download")


# --- where the weights come from --------------------------------------------------------

HUB_TIMEOUT_S = 3.0  # how long the hub may take to answer at all; HF_HUB_ETAG_TIMEOUT overrides
_TRUE_WORDS = ("1", "ON", "YES", "TRUE")  # what huggingface_hub accepts as true


class DownloadFailed(Exception):
    """The hub could not be reached or did not serve the files; str() is one line: why."""


def resolve_weights(
    weights_dir: str | Path | None = None,
    download: bool | None = None,
    *,
    hf_cache_dir: str | Path | None = None,
    embedded_dir: str | Path | None = None,
    flag: str = "--weights",
    report: Callable[[str], None] | None = None,
) -> WeightsSource:
    """Find the GPT-2 weights folder, as the module docstring says.

    `weights_dir`: a folder, "auto" (also None or "") or "demo". `download`: None downloads
    when needed and falls back to the demo model if that fails; True (`--download`) makes a
    failed download an error; False (`--no-download`) never downloads. `hf_cache_dir` /
    `embedded_dir` override where the Hugging Face cache and the embedded model are looked
    for (tests use them; None means the usual places). `flag` is how the user named the
    setting, for error messages ("--weights", or "weights" for video.toml). `report` receives
    the one line that says what "auto" chose (default: printed on stderr).
    """
    report = report or _print_to_stderr
    spec = parse_weights_spec(weights_dir)
    embedded = Path(embedded_dir) if embedded_dir is not None else EMBEDDED_DIR
    if isinstance(spec, Path):
        path = _checked_folder(spec, flag, other_choices=True)
        return _source("weights-arg", path, f"--weights {path}")
    if spec == DEMO:
        return _embedded_source(embedded, f"{flag} {DEMO}")

    inherited = inherited_auto_choice()
    if inherited is not None:  # render.py resolved "auto" already: same answer, no network
        return inherited
    env_value = os.environ.get(WEIGHTS_ENV)
    if env_value:
        path = _checked_folder(Path(env_value), WEIGHTS_ENV)
        return _source("env", path, f"{WEIGHTS_ENV}={path}")

    cached = find_in_hf_cache(hf_cache_dir)
    if cached is not None:
        repo_id, path = cached
        described = f"GPT-2 {repo_id} from the Hugging Face cache ({path})"
        source = _source("hf-cache", path, described, repo_id)
        report(f"weights: {described}")
        return source

    if download is False:
        why_not = "downloads are off (--no-download)"
    elif hub_offline():
        if download:
            raise UserError(
                f"--download: HF_HUB_OFFLINE is set, so {DOWNLOAD_REPO_ID} cannot be downloaded; "
                "unset HF_HUB_OFFLINE or drop --download"
            )
        why_not = "HF_HUB_OFFLINE is set, so no download was tried"
    else:
        try:
            path = download_gpt2(hf_cache_dir)
        except DownloadFailed as err:
            if download:
                raise UserError(
                    f"could not download {DOWNLOAD_REPO_ID} from {hub_endpoint()} ({err}); "
                    f"are you offline? Use --weights DIR or {WEIGHTS_ENV} instead"
                ) from None
            why_not = f"download of {DOWNLOAD_REPO_ID} from {hub_endpoint()} failed ({err})"
        else:
            described = f"GPT-2 {DOWNLOAD_REPO_ID} downloaded from {hub_endpoint()} ({path})"
            source = _source("download", path, described, DOWNLOAD_REPO_ID)
            report(f"weights: downloaded {DOWNLOAD_REPO_ID} into the Hugging Face cache ({path})")
            return source

    source = _embedded_source(embedded, "the embedded model")
    report(
        f"weights: no GPT-2 in the Hugging Face cache; {why_not}; using the embedded demo "
        f"GPT-2 ({_display_path(source.path)})"
    )
    return source


def _embedded_source(embedded: Path, what: str) -> WeightsSource:
    if not (embedded / WEIGHTS_FILE).is_file():
        raise UserError(
            f"no GPT-2 weights found: pass --weights DIR (or set {WEIGHTS_ENV}) to a folder with "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}, go online so that {DOWNLOAD_REPO_ID} can be "
            f"downloaded, or add the embedded model at {_display_path(embedded)}"
        )
    path = _checked_folder(embedded, what)
    return _source(
        "embedded",
        path,
        f"the project's embedded demo GPT-2 ({_display_path(path)}), "
        "trained by this project, not OpenAI's GPT-2",
    )


def auto_choice_json(source: WeightsSource) -> str:
    """What `AUTO_CHOICE_ENV` holds: the resolved source, for processes started later."""
    return json.dumps(source.as_dict(), sort_keys=True)


def inherited_auto_choice() -> WeightsSource | None:
    """The answer to "auto" that render.py handed down (`AUTO_CHOICE_ENV`), if any and if its
    folder still holds the weights; its sha256 is taken as given (render.py computed it)."""
    text = os.environ.get(AUTO_CHOICE_ENV)
    if not text:
        return None
    try:
        data = json.loads(text)
        source = WeightsSource(**{**data, "path": Path(data["path"])})
    except (ValueError, TypeError, KeyError):
        return None
    return source if (source.path / WEIGHTS_FILE).is_file() else None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value, read now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in _TRUE_WORDS


def hub_endpoint() -> str:
    """The hub the download goes to: $HF_ENDPOINT, read now, else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_timeout() -> float:
    """Seconds the hub may take to answer: $HF_HUB_ETAG_TIMEOUT if set, else HUB_TIMEOUT_S."""
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or HUB_TIMEOUT_S)
    except ValueError:
        return HUB_TIMEOUT_S


def find_in_hf_cache(cache_dir: str | Path | None = None) -> tuple[str, Path] | None:
    """A cached `gpt2` snapshot folder with both files, without touching the network."""
    from huggingface_hub import try_to_load_from_cache

    for repo_id in HF_REPO_IDS:
        weights = try_to_load_from_cache(repo_id, WEIGHTS_FILE, cache_dir=cache_dir)
        config = try_to_load_from_cache(repo_id, CONFIG_FILE, cache_dir=cache_dir)
        if isinstance(weights, str) and isinstance(config, str):
            if Path(weights).parent == Path(config).parent:
                return repo_id, Path(weights).parent
    return None


def download_gpt2(cache_dir: str | Path | None = None) -> Path:
    """Download config.json and model.safetensors (never a pickle) of GPT-2 small into the
    Hugging Face cache, with huggingface_hub's progress bar; returns the snapshot folder.

    One quick HEAD request comes first, without retries: a hub that does not answer within
    `hub_timeout()` seconds raises DownloadFailed at once (hf_hub_download on its own would
    retry an unreachable hub for a minute or more). Any failure is a DownloadFailed whose
    message is one line.
    """
    from huggingface_hub import hf_hub_download, hf_hub_url

    endpoint, timeout = hub_endpoint(), hub_timeout()
    try:
        _check_hub_answers(hf_hub_url(DOWNLOAD_REPO_ID, WEIGHTS_FILE, endpoint=endpoint), timeout)
        files = [
            Path(
                hf_hub_download(
                    DOWNLOAD_REPO_ID,
                    name,
                    cache_dir=cache_dir,
                    endpoint=endpoint,
                    etag_timeout=timeout,
                )
            )
            for name in (CONFIG_FILE, WEIGHTS_FILE)
        ]
    except DownloadFailed:
        raise
    except Exception as err:  # offline, DNS, proxy, HTTP, disk: all end the same way
        raise DownloadFailed(_why_download_failed(err, timeout)) from None
    if files[0].parent != files[1].parent:
        raise DownloadFailed("the two files came from different commits; try again")
    return files[1].parent


def _check_hub_answers(url: str, timeout: float) -> None:
    """One HEAD request for `url`, without retries, that must be answered within `timeout`
    seconds all told. It runs in a thread: the name lookup (DNS) is not covered by the HTTP
    client's timeout, and a machine without network may hang in it for much longer."""
    from huggingface_hub import get_hf_file_metadata

    failure: list[BaseException] = []

    def head() -> None:
        try:
            get_hf_file_metadata(url, timeout=timeout)
        except BaseException as err:  # handed to the caller below
            failure.append(err)

    thread = threading.Thread(target=head, name="hub-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():  # left to finish on its own; a daemon thread does not block exit
        raise DownloadFailed(f"no answer within {timeout:g} s")
    if failure:
        raise failure[0]


def _why_download_failed(err: Exception, timeout: float) -> str:
    """One short line for a failed download."""
    import httpx2

    if isinstance(err, httpx2.TimeoutException):
        return f"no answer within {timeout:g} s"
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and not isinstance(err, httpx2.TransportError):
        return f"HTTP {status}"
    lines = str(err).strip().splitlines()
    reason = lines[0] if lines else ""
    return f"{type(err).__name__}: {reason}" if reason else type(err).__name__


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _checked_folder(path: Path, what: str, other_choices: bool = False) -> Path:
    """`path` resolved, if it is a folder with both files; else a one-line UserError.
    `other_choices`: the setting could also have said "auto" or "demo" (say so)."""
    try:
        path.resolve(strict=True)
    except FileNotFoundError:
        also = f'; use "{AUTO}", "{DEMO}" or a folder' if other_choices else ""
        raise UserError(f"{what}: weights folder {str(path)!r} does not exist{also}") from None
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
        raise UserError(f"{what}: {str(path)!r} is a symbolic link that loops") from None
    if not path.is_dir():
        raise UserError(
            f"{what}: {str(path)!r} is not a folder (want {CONFIG_FILE} + {WEIGHTS_FILE})"
        )
    if not (path / WEIGHTS_FILE).is_file():
        if (path / "pytorch_model.bin").is_file():
            raise UserError(
                f"{what}: {str(path)!r} holds pytorch_model.bin, a pickle, which is not loaded "
                f"for safety; convert it to {WEIGHTS_FILE}: {CONVERT_HINT}"
            )
        raise UserError(f"{what}: {str(path)!r} has no {WEIGHTS_FILE}")
    if not (path / CONFIG_FILE).is_file():
        raise UserError(f"{what}: {str(path)!r} has no {CONFIG_FILE}")
    return path.resolve()


def _source(kind: str, path: Path, description: str, repo_id: str = "") -> WeightsSource:
    return WeightsSource(kind, path, description, verified_sha256(path), repo_id)


def verified_sha256(folder: Path) -> str:
    """sha256 of folder/model.safetensors; checked against model.safetensors.sha256 if present."""
    digest = sha256_of_file(folder / WEIGHTS_FILE)
    expected_file = folder / SHA256_FILE
    if expected_file.is_file():
        words = expected_file.read_text(encoding="utf-8").split()
        expected = words[0].lower() if words else ""
        if expected != digest:
            raise UserError(
                f"{folder / WEIGHTS_FILE} has sha256 {digest}, but {SHA256_FILE} says "
                f"{expected or '(empty)'}; the file is corrupt or was replaced"
            )
    return digest


def sha256_of_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            sha.update(chunk)
    return sha.hexdigest()


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_device(device: str | None) -> str:
    """The one device check: "cpu" or "cuda" as asked; None or "" is cuda when available.

    Anything else, or "cuda" on a machine without a CUDA GPU, is a UserError naming the value.
    Every flag and setting that names a device (the commands, train, the benchmarks, the
    video's parameters) goes through here.
    """
    check_device_name(device)
    if device == "cpu":
        return device
    if not device and os.environ.get(DEVICE_CHOICE_ENV) in ("cpu", "cuda"):
        return os.environ[DEVICE_CHOICE_ENV]  # render.py asked torch already
    import torch

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda': no CUDA GPU is available here; use cpu")
    return device


# --- checkpoint <-> model ---------------------------------------------------------------


def read_gpt2_config(folder: str | Path) -> GPT2Config:
    """The GPT2Config of a Hugging Face GPT-2 folder, refusing variants our model does not run."""
    folder = Path(folder)
    data = load_config_json(folder / CONFIG_FILE)
    where = str(folder / CONFIG_FILE)
    model_type = data.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise UserError(f"{where}: model_type {model_type!r} is not a GPT-2 (want 'gpt2')")
    activation = data.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh"):
        raise UserError(f"{where}: activation_function {activation!r}; GPT-2 uses 'gelu_new'")
    if data.get("n_inner") not in (None, 4 * data.get("n_embd", 0)):
        raise UserError(f"{where}: n_inner={data['n_inner']} must be 4 * n_embd (or null)")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if data.get(flag):
            raise UserError(f"{where}: {flag}=true is not supported")
    if data.get("tie_word_embeddings") is False:
        raise UserError(f"{where}: tie_word_embeddings=false; GPT-2's head is tied")
    return gpt2_config_from_hf(data, name=data.get("_name_or_path") or folder.name or "gpt2")


def hf_to_model_state_dict(
    tensors: dict[str, torch.Tensor], config: GPT2Config, where: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename, transpose and check Hugging Face GPT-2 tensors into `GPT2.state_dict()` form."""
    import torch

    renamed: dict[str, torch.Tensor] = {}
    stored_head = None
    for key, tensor in tensors.items():
        name = key.removeprefix("transformer.")
        if name.endswith(IGNORED_SUFFIXES):
            continue
        if name == "lm_head.weight":
            stored_head = tensor
            continue
        if name.endswith(CONV1D_SUFFIXES) and tensor.dim() == 2:
            tensor = tensor.t()
        renamed[name] = tensor.contiguous()

    expected = {k: s for k, s in _model_shapes(config).items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(renamed))
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise UserError(f"{where} lacks {len(missing)} GPT-2 tensor(s): {shown}")
    unexpected = sorted(set(renamed) - set(expected))
    if unexpected:
        shown = ", ".join(unexpected[:3])
        raise UserError(f"{where} has tensor(s) a GPT-2 of this config does not have: {shown}")
    for name, shape in expected.items():
        if renamed[name].shape != shape:
            raise UserError(
                f"{where}: {name} has shape {list(renamed[name].shape)}, expected {list(shape)} "
                f"for n_embd={config.n_embd}, vocab_size={config.vocab_size}, n_ctx={config.n_ctx}"
            )
    if stored_head is not None and not torch.equal(stored_head, renamed["wte.weight"]):
        raise UserError(f"{where}: lm_head.weight differs from wte.weight; GPT-2's head is tied")
    return renamed


def _model_shapes(config: GPT2Config) -> dict[str, torch.Size]:
    import torch

    from mla_core.models.gpt2 import GPT2

    with torch.device("meta"):
        return {k: v.shape for k, v in GPT2(config).state_dict().items()}


def check_weight_values(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Weights must be floating point and finite: an integer tensor or a NaN/Inf would give
    nonsense (nan probabilities) rather than an error. Names the first bad tensor."""
    import torch

    for key, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise UserError(f"{where}: tensor {key!r} has dtype {tensor.dtype}; want floats")
        if not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{where}: tensor {key!r} holds NaN or infinite values")


def load_gpt2_from_dir(
    folder: str | Path, device: str = "cpu", dtype: torch.dtype | None = None
) -> GPT2:
    """A GPT2 in eval mode with the weights of a Hugging Face folder (config + safetensors),
    in `dtype` (default float32)."""
    import torch

    from mla_core.models.gpt2 import GPT2

    folder = _checked_folder(Path(folder), "weights")
    config = read_gpt2_config(folder)
    weights_file = folder / WEIGHTS_FILE
    try:
        with safe_open(str(weights_file), framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as err:
        raise UserError(f"{weights_file} is not a readable safetensors file ({err})") from None
    check_weight_values(tensors, str(weights_file))
    state = hf_to_model_state_dict(tensors, config, where=str(weights_file))

    with torch.device("meta"):  # no random init: every tensor is about to be replaced
        model = GPT2(config)
    model.load_state_dict(state, strict=False, assign=True)  # lm_head.weight is re-tied below
    model.lm_head.weight = model.wte.weight
    return model.to(device=device, dtype=dtype or torch.float32).eval()


def load_gpt2(
    weights_dir: str | Path | None = None,
    download: bool | None = None,
    device: str | None = None,
    **resolve_kwargs: str | Path | None,
) -> tuple[GPT2, WeightsSource]:
    """Resolve the weights (see `resolve_weights`) and load them: (model, source)."""
    source = resolve_weights(weights_dir, download, **resolve_kwargs)
    return load_gpt2_from_dir(source.path, device=check_device(device)), source


def hf_config_dict(config: GPT2Config) -> dict:
    """The config.json a Hugging Face GPT-2 of this shape carries."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.n_ctx,
        "n_ctx": config.n_ctx,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": config.layer_norm_eps,
        "initializer_range": 0.02,
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }


def save_gpt2(model: GPT2, folder: str | Path, write_sha256: bool = True) -> Path:
    """Write `model` as a Hugging Face GPT-2 folder that transformers can load too.

    config.json + model.safetensors with `transformer.`-prefixed keys and Conv1D [in, out]
    projections (no lm_head.weight: tied), plus model.safetensors.sha256 unless told not to.
    Each file is written to a temporary name and renamed into place.
    """
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        tensor = tensor.detach().to(device="cpu", dtype=torch.float32)
        if name.endswith(CONV1D_SUFFIXES):
            tensor = tensor.t()
        tensors["transformer." + name] = tensor.contiguous()

    config_text = json.dumps(hf_config_dict(model.config), indent=2) + "\n"
    write_text_atomically(folder / CONFIG_FILE, config_text)
    write_atomically(
        folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"})
    )
    if write_sha256:
        digest = sha256_of_file(folder / WEIGHTS_FILE)
        line = f"{digest}\n"
        write_text_atomically(folder / SHA256_FILE, line)
    else:
        (folder / SHA256_FILE).unlink(missing_ok=True)  # a stale digest would refuse the new file
    return folder
