"""The colour language (one colour per role) and the type scale (one serif, as in LaTeX)."""

from __future__ import annotations

from manim import (
    MathTex,
    Text,
)

# Near-black background, warm off-white text, warm grey-brown for secondary text; one
# colour per tensor role, the same in every scene, in text, MathTex and charts.

BACKGROUND = "#111318"
TEXT_COLOR = "#ece6da"
MUTED = "#948979"
GRID = "#2b2e37"  # axes, separators, empty cells

QUERY = "#ffd35a"  # yellow
KEY = "#65c8d0"  # teal
VALUE = "#f0716a"  # red
LATENT = "#b48cf2"  # purple: the compressed c_KV that MLA caches
CACHE = "#7fcf8f"  # green: what is kept in memory between decode steps
HIGHLIGHT = "#ff9f43"  # orange: "look here"


# --- type scale --------------------------------------------------------------------------

FONT = "CMU Serif"  # Computer Modern Unicode (Debian fonts-cmu): the LaTeX font as a system font
TITLE_SIZE = 44
BODY_SIZE = 32
LABEL_SIZE = 26
CAPTION_SIZE = 22
# MathTex at the same font_size comes out smaller than Text in the same face; this factor
# makes an inline formula match the text around it.
MATH_SCALE = 1.3


def text(s: str, size: float = BODY_SIZE, color: str = TEXT_COLOR, **kwargs) -> Text:
    """Text in the project font."""
    return Text(s, font=FONT, font_size=size, color=color, **kwargs)


def math_tex(
    *tex: str,
    size: float = BODY_SIZE,
    color: str = TEXT_COLOR,
    colors: dict[str, str] | None = None,
) -> MathTex:
    """MathTex sized to match `text` at the same size; `colors` maps symbols to role colours,
    e.g. {"q": QUERY, "k": KEY}."""
    return MathTex(*tex, font_size=size * MATH_SCALE, color=color, tex_to_color_map=colors or {})
