"""The layout grid: title, content and caption zones, so no scene uses magic coordinates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from manim import (
    LEFT,
    RIGHT,
    Text,
)

from scenes.components.style import CAPTION_SIZE, MUTED, TEXT_COLOR, TITLE_SIZE, text

# Frame: 16:9, 8 units high. Three horizontal zones with a margin all round.

FRAME_HEIGHT = 8.0
FRAME_WIDTH = FRAME_HEIGHT * 16 / 9
MARGIN = 0.45


@dataclass(frozen=True)
class Zone:
    """A rectangle of the frame (in scene units) that a part of every scene lives in."""

    left: float
    right: float
    bottom: float
    top: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.top - self.bottom

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.left + self.right) / 2, (self.bottom + self.top) / 2, 0.0])

    def point(self, x: float, y: float) -> np.ndarray:
        """A point by fractions of the zone: (0, 0) bottom left, (1, 1) top right."""
        return np.array([self.left + x * self.width, self.bottom + y * self.height, 0.0])

    def split_columns(self, n: int, gap: float = 0.4) -> list[Zone]:
        """The zone cut into `n` equal columns with `gap` between them."""
        width = (self.width - gap * (n - 1)) / n
        return [
            Zone(
                self.left + i * (width + gap),
                self.left + i * (width + gap) + width,
                self.bottom,
                self.top,
            )
            for i in range(n)
        ]


_LEFT, _RIGHT = -FRAME_WIDTH / 2 + MARGIN, FRAME_WIDTH / 2 - MARGIN
TITLE_ZONE = Zone(_LEFT, _RIGHT, FRAME_HEIGHT / 2 - MARGIN - 0.8, FRAME_HEIGHT / 2 - MARGIN)
CAPTION_ZONE = Zone(_LEFT, _RIGHT, -FRAME_HEIGHT / 2 + MARGIN, -FRAME_HEIGHT / 2 + MARGIN + 0.5)
CONTENT_ZONE = Zone(_LEFT, _RIGHT, CAPTION_ZONE.top + 0.25, TITLE_ZONE.bottom - 0.25)


def fit_in(mob, zone: Zone, align: str = "center", allow_grow: bool = False):
    """Scale `mob` down (never up unless `allow_grow`) to fit `zone` and move it there.

    align: "center", "left" or "right" (vertical position is always the zone's centre).
    """
    scale = min(zone.width / max(mob.width, 1e-9), zone.height / max(mob.height, 1e-9))
    if scale < 1 or allow_grow:
        mob.scale(scale)
    mob.move_to(zone.center)
    if align == "left":
        mob.align_to(zone.point(0, 0.5), LEFT)
    elif align == "right":
        mob.align_to(zone.point(1, 0.5), RIGHT)
    return mob


def title(s: str, color: str = TEXT_COLOR) -> Text:
    """A scene title in the title zone."""
    return fit_in(text(s, TITLE_SIZE, color), TITLE_ZONE)


# A caption squeezed below this fraction of its size is no longer legible at 480p.
MIN_CAPTION_SCALE = 0.85


def caption(s: str, color: str = MUTED) -> Text:
    """A small muted line in the caption zone (sources, provenance, units).

    Raises ValueError when the line is too long to stay legible: shorten it."""
    line = text(s, CAPTION_SIZE, color)
    if line.width * MIN_CAPTION_SCALE > CAPTION_ZONE.width:
        raise ValueError(f"caption too long to stay legible ({len(s)} characters): {s!r}")
    return fit_in(line, CAPTION_ZONE)
