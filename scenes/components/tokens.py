"""A strip of tokens, and a block for big matrices (with ellipses where they are cut)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    RoundedRectangle,
    VGroup,
    VMobject,
)

from scenes.components.layout import CONTENT_ZONE
from scenes.components.numbers import TIMES, fmt_float
from scenes.components.style import GRID, LABEL_SIZE, MUTED, TEXT_COLOR, text


class TokenStrip(VGroup):
    """Tokens as a row of boxes, scaled to fit `max_width`. Pass the display strings
    mla_core's tokenizer makes (spaces shown as '␣'), so labels match everywhere."""

    def __init__(
        self,
        tokens: Sequence[str],
        *,
        color: str = TEXT_COLOR,
        size: float = LABEL_SIZE,
        max_width: float = CONTENT_ZONE.width,
        gap: float = 0.08,
    ) -> None:
        super().__init__()
        self.texts = VGroup(*(text(t, size, color) for t in tokens))
        box_height = max(t.height for t in self.texts) + 0.3
        self.boxes = VGroup()
        for t in self.texts:
            box = RoundedRectangle(
                width=t.width + 0.3,
                height=box_height,
                corner_radius=0.08,
                stroke_color=MUTED,
                stroke_width=2,
                fill_color=GRID,
                fill_opacity=0.6,
            )
            t.move_to(box)
            self.boxes.add(box)
        self.cells = VGroup(*(VGroup(b, t) for b, t in zip(self.boxes, self.texts, strict=True)))
        self.cells.arrange(RIGHT, buff=gap)
        self.add(self.cells)
        if self.width > max_width:
            self.scale_to_fit_width(max_width)

    def token(self, i: int) -> VGroup:
        return self.cells[i]


class MatrixBlock(VGroup):
    """A big matrix drawn small: the first rows/columns, ellipses, the last row/column,
    between brackets in the tensor's role colour, with its shape below
    (e.g. a 9 x 64 key matrix shows 3 rows and 4 columns of real entries)."""

    def __init__(
        self,
        values: np.ndarray,
        *,
        color: str = TEXT_COLOR,
        show_rows: int = 4,
        show_cols: int = 4,
        digits: int = 2,
        size: float = LABEL_SIZE * 0.8,
        shape_label: bool = True,
    ) -> None:
        super().__init__()
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1:
            values = values[None, :]
        n_rows, n_cols = values.shape
        rows = _kept_indices(n_rows, show_rows)
        cols = _kept_indices(n_cols, show_cols)
        sample = text(fmt_float(-8.0, digits), size)
        cell_w, cell_h = sample.width + 0.2, sample.height + 0.18
        self.entries = VGroup()
        for r, i in enumerate(rows):
            for c, j in enumerate(cols):
                if i is None and j is None:
                    glyph = "\u22f1"
                elif i is None:
                    glyph = "\u22ee"
                elif j is None:
                    glyph = "\u22ef"
                else:
                    glyph = fmt_float(values[i, j], digits)
                entry = text(glyph, size, TEXT_COLOR if glyph[0] not in "⋮⋯⋱" else MUTED)
                entry.move_to([c * cell_w, -r * cell_h, 0])
                self.entries.add(entry)
        self.entries.move_to([0, 0, 0])
        h = len(rows) * cell_h + 0.1
        w = len(cols) * cell_w
        self.brackets = VGroup(_bracket(h, color, LEFT), _bracket(h, color, RIGHT))
        self.brackets[0].move_to([-w / 2 - 0.05, 0, 0], aligned_edge=RIGHT)
        self.brackets[1].move_to([w / 2 + 0.05, 0, 0], aligned_edge=LEFT)
        self.add(self.brackets, self.entries)
        if shape_label:
            self.shape = text(f"{n_rows} {TIMES} {n_cols}", size * 0.9, MUTED)
            self.shape.next_to(self.brackets, DOWN, buff=0.15)
            self.add(self.shape)


def _kept_indices(n: int, shown: int) -> list[int | None]:
    """Indices drawn for an axis of length n: all if they fit, else the first shown-2,
    None for the ellipsis, and the last."""
    if n <= shown:
        return list(range(n))
    return list(range(shown - 2)) + [None, n - 1]


def _bracket(height: float, color: str, side) -> VMobject:
    arm = 0.12 if side is LEFT else -0.12
    bracket = VMobject(color=color, stroke_width=3)
    bracket.set_points_as_corners(
        [[arm, height / 2, 0], [0, height / 2, 0], [0, -height / 2, 0], [arm, -height / 2, 0]]
    )
    return bracket
