"""Render qualities: manim's presets by name."""

from __future__ import annotations

from dataclasses import dataclass

from mla_core.errors import UserError


@dataclass(frozen=True)
class Quality:
    name: str
    flag: str  # manim's -q flag
    width: int
    height: int
    fps: int

    @property
    def folder(self) -> str:
        """The folder manim writes this quality's videos to, e.g. '480p15'."""
        return f"{self.height}p{self.fps}"


# The same resolutions and frame rates as manim's own quality presets (a test checks).
QUALITIES = {
    q.name: q
    for q in (
        Quality("low", "l", 854, 480, 15),
        Quality("medium", "m", 1280, 720, 30),
        Quality("high", "h", 1920, 1080, 60),
        Quality("4k", "k", 3840, 2160, 60),
    )
}


def resolve_quality(name: str) -> Quality:
    if name not in QUALITIES:
        raise UserError(f"unknown quality {name!r}; allowed: {', '.join(QUALITIES)}")
    return QUALITIES[name]
