"""Scene data: the arrays and numbers each scene draws, computed by mla_core and cached.

Three parts, top to bottom:

1. Video parameters (`VideoParams`): the prompt, the weights, the heads shown... read from
   the project file `video.toml` and overridable one by one (`render.py --set prompt=...`),
   so no scene hard-codes them.
2. The disk cache (`DataCache`): results live in `.cache/scene_data/`, keyed by a hash of
   (what was computed, the weights' sha256, the prompt and other parameters, the code
   version). The code version is a hash of the mla_core sources the data depends on, so
   editing the model code makes old entries stale. Every entry carries its key and a
   checksum of its contents: a stale, truncated or edited entry is detected and recomputed.
3. The data functions, one per scene (`SCENE_DATA`), each returning a `SceneData`: named
   NumPy arrays plus JSON-ready `meta`, whose `provenance` (model and sha256, prompt, token
   ids, device...) goes into the manifest written beside every rendered video and still.

Nothing here imports Manim: `render.py data SCENE` prints a scene's data without rendering.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from mla_core.atomic import write_atomically
from mla_core.errors import UserError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS_FILE = REPO / "video.toml"
DEFAULT_CACHE_DIR = REPO / ".cache" / "scene_data"
CACHE_DIR_ENV = "MLA_SCENE_DATA_CACHE"  # where the cache lives; "off" disables it
PARAMS_ENV = "MLA_VIDEO_PARAMS"  # JSON of VideoParams, set by render.py for manim processes
MANIFEST_DIR_ENV = "MLA_MANIFEST_DIR"  # set by render.py: where a scene records what it showed


# --- 1. video parameters ------------------------------------------------------------------


@dataclass(frozen=True)
class VideoParams:
    """Everything a viewer could want to change without editing scene code."""

    quality: str = "low"  # render quality: low, medium, high, 4k
    prompt: str = " The American flag is red, white, and"
    weights: str = ""  # GPT-2 folder; "" resolves as mla_core.loading.weights does
    device: str = ""  # "cpu" or "cuda"; "" picks cuda when available
    heads: str = "auto"  # "auto" (the heads mla_core scores as most typical) or "5.1,2.2"
    show_bos: bool = False  # draw the <|endoftext|> BOS token in attention patterns
    top_k: int = 5  # next-token candidates shown
    new_tokens: int = 4  # tokens generated one at a time in the KV cache scene

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)


PARAM_NAMES = tuple(f.name for f in fields(VideoParams))
_QUALITIES = ("low", "medium", "high", "4k")


def load_params(
    path: str | Path | None = None, overrides: Mapping[str, str] | None = None
) -> VideoParams:
    """VideoParams from a TOML file's [video] table (default video.toml; a missing default
    file means the defaults), then `overrides` ("name" -> "text value") on top."""
    values: dict[str, Any] = {}
    file = Path(path) if path is not None else DEFAULT_PARAMS_FILE
    if file.is_file():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{file} is not valid TOML ({err})") from None
        table = data.get("video", {})
        if not isinstance(table, dict):
            raise UserError(f"{file}: [video] must be a table of parameters")
        for name, value in table.items():
            values[_check_name(name, str(file))] = value
    elif path is not None:
        raise UserError(f"parameter file {str(file)!r} does not exist")
    for name, text in (overrides or {}).items():
        _check_name(name, "--set")
        values[name] = _parse_value(name, text)
    params = VideoParams(**{n: _typed(n, v) for n, v in values.items()})
    return validate_params(params)


def parse_overrides(assignments: list[str] | None) -> dict[str, str]:
    """["prompt= The cat", "top_k=3"] -> {"prompt": " The cat", "top_k": "3"}."""
    overrides = {}
    for item in assignments or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise UserError(
                f"--set {item!r} must look like NAME=VALUE; names: {', '.join(PARAM_NAMES)}"
            )
        overrides[_check_name(name.strip(), "--set")] = value
    return overrides


def params_from_env() -> VideoParams:
    """The parameters render.py passed to this process, else video.toml's."""
    text = os.environ.get(PARAMS_ENV)
    if not text:
        return load_params()
    data = json.loads(text)
    return validate_params(VideoParams(**{n: _typed(n, data[n]) for n in data if n in PARAM_NAMES}))


def validate_params(params: VideoParams) -> VideoParams:
    if params.quality not in _QUALITIES:
        raise UserError(f"quality {params.quality!r} is not allowed; use {', '.join(_QUALITIES)}")
    if params.device not in ("", "cpu", "cuda"):
        raise UserError(f'device {params.device!r} is not allowed; use cpu, cuda or "" (auto)')
    if not params.prompt:
        raise UserError("prompt is empty; give some text")
    if params.top_k < 1:
        raise UserError(f"top_k={params.top_k} must be >= 1")
    if params.new_tokens < 1:
        raise UserError(f"new_tokens={params.new_tokens} must be >= 1")
    parse_heads(params.heads)
    return params


def parse_heads(spec: str) -> list[tuple[int, int]] | None:
    """'auto' -> None (let mla_core choose); '5.1, 2.2' -> [(5, 1), (2, 2)]."""
    if spec.strip() == "auto":
        return None
    heads = []
    for part in spec.split(","):
        layer, dot, head = part.strip().partition(".")
        if not (dot and layer.isdigit() and head.isdigit()):
            raise UserError(
                f'heads {spec!r}: {part.strip()!r} is not LAYER.HEAD; use e.g. "5.1,2.2" or "auto"'
            )
        heads.append((int(layer), int(head)))
    return heads


def _check_name(name: str, where: str) -> str:
    if name not in PARAM_NAMES:
        raise UserError(f"{where}: unknown parameter {name!r}; allowed: {', '.join(PARAM_NAMES)}")
    return name


def _parse_value(name: str, text: str) -> Any:
    kind = type(getattr(VideoParams(), name))
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise UserError(f"--set {name}={text!r}: want true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise UserError(f"--set {name}={text!r}: want a whole number") from None
    return text


def _typed(name: str, value: Any) -> Any:
    kind = type(getattr(VideoParams(), name))
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise UserError(f"parameter {name}={value!r} must be a {kind.__name__}")
    return value


# --- 2. the disk cache ----------------------------------------------------------------------


def code_version() -> str:
    """The hash of the code behind scene data (this package's import closure)."""
    from mla_core.code_version import code_version as version_of

    return version_of("mla_core.scene_data")


@dataclass
class SceneData:
    """What one scene draws: named arrays plus JSON-ready meta (numbers, tokens, provenance)."""

    kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        if name in self.arrays:
            return self.arrays[name]
        return self.meta[name]

    @property
    def provenance(self) -> dict[str, Any]:
        return self.meta.get("provenance", {})

    def checksum(self) -> str:
        """sha256 over every array (name, dtype, shape, bytes) and the meta JSON."""
        sha = hashlib.sha256(self.kind.encode())
        for name in sorted(self.arrays):
            array = np.ascontiguousarray(self.arrays[name])
            sha.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
            sha.update(array.tobytes())
        sha.update(json.dumps(self.meta, sort_keys=True).encode())
        return sha.hexdigest()


class DataCache:
    """SceneData on disk, one .npz per key, written atomically; see the module docstring.

    `hits`, `misses` and `rejected` (entries found stale or corrupt and recomputed) count
    what happened, for tests and logs.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        env = os.environ.get(CACHE_DIR_ENV)
        self.enabled = not (root is None and env == "off")
        self.root = Path(root) if root is not None else Path(env or DEFAULT_CACHE_DIR)
        self.hits = self.misses = self.rejected = 0

    @staticmethod
    def key(kind: str, inputs: Mapping[str, Any]) -> str:
        """The hash of what is computed and from what (inputs must be JSON-ready)."""
        record = {"kind": kind, "code_version": code_version(), "inputs": dict(inputs)}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def path(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key[:20]}.npz"

    def get_or_compute(
        self, kind: str, inputs: Mapping[str, Any], compute: Callable[[], SceneData]
    ) -> SceneData:
        if not self.enabled:
            return compute()
        key = self.key(kind, inputs)
        path = self.path(kind, key)
        if path.exists():
            data = self._read(path, kind, key)
            if data is not None:
                self.hits += 1
                return data
            self.rejected += 1
        self.misses += 1
        data = compute()
        self._write(path, key, data)
        return data

    def _read(self, path: Path, kind: str, key: str) -> SceneData | None:
        """The entry, or None when it is unreadable, for another key, or fails its checksum."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                header = json.loads(str(npz["__header__"]))
                arrays = {n: npz[n] for n in npz.files if n != "__header__"}
        except Exception:  # truncated zip, bad JSON, missing header: all mean "recompute"
            return None
        if header.get("key") != key or header.get("kind") != kind:
            return None
        data = SceneData(kind, arrays, header.get("meta", {}))
        return data if data.checksum() == header.get("checksum") else None

    def _write(self, path: Path, key: str, data: SceneData) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"key": key, "kind": data.kind, "meta": data.meta, "checksum": data.checksum()}
        buffer = io.BytesIO()
        np.savez(buffer, __header__=np.array(json.dumps(header)), **data.arrays)
        write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


# --- 3. the data functions ------------------------------------------------------------------


@cache
def _weights_source(weights: str):
    from mla_core.loading.weights import resolve_weights

    return resolve_weights(weights or None)


@cache
def _model(weights: str, device: str):
    from mla_core.loading.weights import load_gpt2_from_dir

    return load_gpt2_from_dir(_weights_source(weights).path, device=device)


def resolved_device(params: VideoParams) -> str:
    from mla_core.loading.weights import check_device

    return check_device(params.device or None)


def model_provenance(params: VideoParams) -> dict[str, Any]:
    """Which model the GPT-2 scenes use: its description, sha256 and folder."""
    source = _weights_source(params.weights)
    return {
        "model": source.description,
        "model_kind": source.kind,
        "model_sha256": source.sha256,
        "device": resolved_device(params),
    }


def model_caption(params: VideoParams) -> str:
    """One short line for a scene's caption: which model drew the picture."""
    source = _weights_source(params.weights)
    if source.kind == "embedded":
        return "demo model trained by this project; run with --set weights=DIR for GPT-2 small"
    return f"model: {source.path.name}, sha256 {source.sha256[:12]}"


def headline_numbers(params: VideoParams, data_cache: DataCache | None = None) -> SceneData:
    """Hook: DeepSeek-V3 bytes per token with MHA and MLA, and the cited throughput factor."""
    from mla_core.analysis.cache_size import bytes_per_token, dims_from_config
    from mla_core.analysis.paper_figures import GENERATION_THROUGHPUT_SPEEDUP as speedup
    from mla_core.models.configs import DEEPSEEK_V3

    dims = dims_from_config(DEEPSEEK_V3)
    mha, mla = bytes_per_token(dims, "mha", 2), bytes_per_token(dims, "mla", 2)
    return SceneData(
        "headline_numbers",
        meta={
            "mha_bytes_per_token": mha,
            "mla_bytes_per_token": mla,
            "cache_ratio": mha / mla,
            "throughput_speedup": speedup.value,
            "provenance": {
                "config": DEEPSEEK_V3.name,
                "dtype_bytes": 2,
                "computed_by": "mla_core.analysis.cache_size",
                "throughput_source": speedup.citation,
            },
        },
    )


def cache_size_per_token(
    params: VideoParams,
    data_cache: DataCache | None = None,
    config_name: str = "deepseek-v3",
    dtype_bytes: int = 2,
    gqa_groups: int = 8,
    context: int = 100_000,
) -> SceneData:
    """CacheSizePerToken: the cache_size report for DeepSeek-V3 (MHA, GQA, MQA, MLA)."""
    from mla_core.analysis.cache_size import cache_report, dims_from_config
    from mla_core.models.configs import builtin_config

    config = builtin_config(config_name)
    report = cache_report(dims_from_config(config), dtype_bytes, context, gqa_groups)
    kinds = ["mha", "gqa", "mqa", "mla"]
    return SceneData(
        "cache_size_per_token",
        arrays={
            "bytes_per_token": np.array([report["bytes_per_token"][k] for k in kinds], np.int64),
            "cache_bytes": np.array([report["cache_bytes"][k] for k in kinds], np.int64),
        },
        meta={
            "kinds": kinds,
            "report": report,
            "config": {
                "n_layers": config.n_layers,
                "n_heads": config.n_heads,
                "head_dim": config.v_head_dim,
                "kv_lora_rank": config.kv_lora_rank,
                "qk_rope_head_dim": config.qk_rope_head_dim,
            },
            "provenance": {
                "config": config_name,
                "dtype_bytes": dtype_bytes,
                "computed_by": "mla_core.analysis.cache_size",
            },
        },
    )


SCENE_DATA: dict[str, Callable[..., SceneData]] = {
    "Hook": headline_numbers,
    "CacheSizePerToken": cache_size_per_token,
}


def data_for_scene(
    name: str, params: VideoParams, data_cache: DataCache | None = None
) -> SceneData:
    _add_gpt2_scenes()
    if name not in SCENE_DATA:
        raise UserError(f"no scene data for {name!r}; scenes with data: {', '.join(SCENE_DATA)}")
    return SCENE_DATA[name](params, data_cache)


def _add_gpt2_scenes() -> None:
    """The GPT-2 scenes' data functions live in mla_core.scene_data.gpt2_scenes, which imports
    this module: hence registered here, late."""
    from mla_core.scene_data.gpt2_scenes import GPT2_SCENE_DATA

    SCENE_DATA.update(GPT2_SCENE_DATA)


def summarize(data: SceneData, max_values: int = 64) -> dict[str, Any]:
    """A JSON-ready view of scene data: small arrays in full, big ones as shape and range."""
    arrays = {}
    for name, array in data.arrays.items():
        entry: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
        if array.size <= max_values:
            entry["values"] = array.tolist()
        elif np.issubdtype(array.dtype, np.number):
            finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
            entry["min"], entry["max"] = float(finite.min()), float(finite.max())
        arrays[name] = entry
    return {"kind": data.kind, "arrays": arrays, "meta": data.meta}
