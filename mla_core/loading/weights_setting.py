"""The `weights` setting's words, free of torch so that render.py reads them instantly.

`--weights` and video.toml's `weights =` say "auto" (also "" in old configs), "demo", or a
folder; `mla_core.loading.weights.resolve_weights` says what each one means.
"""

from __future__ import annotations

from pathlib import Path

AUTO, DEMO = "auto", "demo"
# Set by render.py: what weights = "auto" resolved to, as JSON (WeightsSource.as_dict()), so
# that its manim processes use the same weights and never go to the network themselves.
AUTO_CHOICE_ENV = "MLA_GPT2_AUTO_CHOICE"


def parse_weights_spec(value: str | Path | None) -> str | Path:
    """None, "" or "auto" -> AUTO; "demo" -> DEMO; any other text, and any Path, -> a Path
    (a folder named auto is "./auto")."""
    if isinstance(value, Path):
        return value
    if value is None or value.strip() in ("", AUTO):
        return AUTO
    if value.strip() == DEMO:
        return DEMO
    return Path(value)
