"""The video's parameters: what a viewer could change without editing scene code.

Read from the project file `video.toml` ([video] table) and overridable one by one
(`render.py --set prompt=...`); render.py hands them to each manim process as JSON in the
environment (`PARAMS_ENV`), so every scene of one run sees the same values.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mla_core.errors import UserError, check_device_name

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS_FILE = REPO / "video.toml"
PARAMS_ENV = "MLA_VIDEO_PARAMS"  # JSON of VideoParams, set by render.py for manim processes


@dataclass(frozen=True)
class VideoParams:
    """Everything a viewer could want to change without editing scene code."""

    quality: str = "low"  # render quality: low, medium, high, 4k
    prompt: str = " The American flag is red, white, and"
    weights: str = "auto"  # "auto", "demo" or a GPT-2 folder; see mla_core.loading.weights
    device: str = ""  # "cpu" or "cuda"; "" picks cuda when available
    heads: str = "auto"  # "auto" (the heads mla_core scores as most typical) or "5.1,2.2"
    show_bos: bool = False  # draw the <|endoftext|> BOS token in attention patterns
    top_k: int = 5  # next-token candidates shown
    new_tokens: int = 4  # tokens generated one at a time in the KV cache scene
    latent_rank: int = 0  # MLA scenes: width of the latent c_KV; 0 = a quarter of n_embd
    voice: bool = False  # speak the narration (offline engine, espeak-ng); else subtitles only

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)


PARAM_NAMES = tuple(f.name for f in fields(VideoParams))
# What the frame can hold: bars in NextToken's chart, rows in KVCacheGrowth, tokens in a strip.
MAX_TOP_K = 10
MAX_NEW_TOKENS = 8
MAX_PROMPT_TOKENS = 12
# Parameters that change how a scene is rendered but never its data.
RENDER_ONLY_PARAMS = ("quality", "voice")
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
    check_device_name(params.device)
    if not params.prompt:
        raise UserError("prompt is empty; give some text")
    if not 1 <= params.top_k <= MAX_TOP_K:
        raise UserError(
            f"top_k={params.top_k} is not allowed: use 1..{MAX_TOP_K} (bars the frame can hold)"
        )
    if not 1 <= params.new_tokens <= MAX_NEW_TOKENS:
        raise UserError(
            f"new_tokens={params.new_tokens} is not allowed: use 1..{MAX_NEW_TOKENS} "
            "(rows the KV cache scene can hold)"
        )
    if "\x00" in params.prompt:
        raise UserError("prompt contains a NUL character; give plain text")
    if params.latent_rank < 0:
        raise UserError(
            f"latent_rank={params.latent_rank} must be >= 1, or 0 for a quarter of the model width"
        )
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
