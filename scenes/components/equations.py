"""Equations whose symbols wear their tensor's colour, and tiny numbers in scientific notation."""

from __future__ import annotations

import math
from collections.abc import Sequence

from manim import MathTex

from scenes.components.numbers import MINUS
from scenes.components.style import BODY_SIZE, TEXT_COLOR, math_tex


def colored_math(
    parts: Sequence[tuple[str, str] | str], size: float = BODY_SIZE, color: str = TEXT_COLOR
) -> MathTex:
    """One MathTex from pieces, each either plain TeX or (TeX, colour): e.g.
    [("q", QUERY), r"\\cdot", ("k", KEY)]. Piece i is submobject i, so a scene can point at
    it (a brace under a factor, a box round a term)."""
    texs = [p if isinstance(p, str) else p[0] for p in parts]
    equation = math_tex(*texs, size=size, color=color)
    for piece, part in zip(equation, parts, strict=True):
        if not isinstance(part, str):
            piece.set_color(part[1])
    return equation


def sci_parts(x: float, digits: int = 1) -> tuple[str, int]:
    """x as (mantissa, exponent): 5.68e-14 -> ('5.7', -14); 0 -> ('0', 0)."""
    if x == 0 or not math.isfinite(x):
        return ("0" if x == 0 else str(x)), 0
    exponent = math.floor(math.log10(abs(x)))
    mantissa = round(x / 10**exponent, digits)
    if abs(mantissa) >= 10:  # 9.96 rounded up to 10.0
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.{digits}f}", exponent


def sci_tex(x: float, digits: int = 1) -> str:
    """TeX for x in scientific notation: 5.68e-14 -> '5.7 \\times 10^{-14}'."""
    mantissa, exponent = sci_parts(x, digits)
    return rf"{mantissa} \times 10^{{{exponent}}}"


def sci_text(x: float, digits: int = 1) -> str:
    """The same as plain text for shown_numbers: '5.7e−14'."""
    mantissa, exponent = sci_parts(x, digits)
    return f"{mantissa}e{exponent}".replace("-", MINUS)
