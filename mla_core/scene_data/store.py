"""Scene data and its disk cache.

`SceneData` is what one scene draws: named NumPy arrays plus JSON-ready `meta`, whose
`provenance` (model and sha256, prompt, token ids, device...) goes into the manifest written
beside every rendered video and still.

`DataCache` keeps results in `.cache/scene_data/`, one .npz per key. The key is a hash of what
was computed (the data kind), the code that computed it (`mla_core.code_version`: the import
closure of the data function's module, so a new dependency can never leave a stale entry) and
everything it was computed from (parameters, the weights' and config's sha256, the device).
Every entry carries its key and a checksum of its contents: a stale, truncated or edited entry
is detected and recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mla_core.atomic import write_atomically

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = REPO / ".cache" / "scene_data"
CACHE_DIR_ENV = "MLA_SCENE_DATA_CACHE"  # where the cache lives; "off" disables it


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

    def __init__(self, root: str | Path | None = None, enabled: bool = True) -> None:
        env = os.environ.get(CACHE_DIR_ENV)
        self.enabled = enabled and not (root is None and env == "off")
        self.root = Path(root) if root is not None else Path(env or DEFAULT_CACHE_DIR)
        self.hits = self.misses = self.rejected = 0

    @staticmethod
    def key(kind: str, code_version: str, inputs: Mapping[str, Any]) -> str:
        """The hash of what is computed, by which code, and from what (JSON-ready inputs)."""
        record = {"kind": kind, "code_version": code_version, "inputs": dict(inputs)}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def path(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key[:20]}.npz"

    def get_or_compute(
        self,
        kind: str,
        code_version: str,
        inputs: Mapping[str, Any],
        compute: Callable[[], SceneData],
    ) -> SceneData:
        if not self.enabled:
            return compute()
        key = self.key(kind, code_version, inputs)
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
