"""Weight matrices as heatmaps at their true aspect ratio, cut with an ellipsis when too big,
labelled with their true shape; vectors as strips whose cells line up with a matrix's."""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Group,
)

from scenes.components.heatmaps import ColorScale, Heatmap
from scenes.components.numbers import TIMES, fmt_int
from scenes.components.style import LABEL_SIZE, MUTED, text

ELLIPSIS_ROWS, ELLIPSIS_COLS = "\u22ee", "\u22ef"


def shown_part(values: np.ndarray, max_rows: int, max_cols: int) -> np.ndarray:
    """The top-left max_rows x max_cols of a matrix (all of it when it fits)."""
    return np.asarray(values)[:max_rows, :max_cols]


def shape_text(n_rows: int, n_cols: int) -> str:
    """'48 × 192'."""
    return f"{fmt_int(n_rows)} {TIMES} {fmt_int(n_cols)}"


class MatrixHeatmap(Group):
    """A matrix as one image of square cells (`cell` scene units each). When it has more
    than max_rows / max_cols, only the top-left part is drawn and an ellipsis marks each
    cut side, so the aspect ratio drawn is never a lie. `n_rows` / `n_cols` are the true
    shape (for the label), `cut_rows` / `cut_cols` whether a side was cut."""

    def __init__(
        self,
        values: np.ndarray,
        color_scale: ColorScale,
        *,
        cell: float,
        max_rows: int = 256,
        max_cols: int = 256,
        ellipsis_size: float = LABEL_SIZE,
    ) -> None:
        super().__init__()
        values = np.asarray(values)
        self.n_rows, self.n_cols = values.shape
        part = shown_part(values, max_rows, max_cols)
        self.cut_rows, self.cut_cols = part.shape[0] < self.n_rows, part.shape[1] < self.n_cols
        self.heatmap = Heatmap(part, color_scale, cell_size=cell, grid=False)
        self.add(self.heatmap)
        if self.cut_cols:
            dots = text(ELLIPSIS_COLS, ellipsis_size, MUTED)
            self.add(dots.next_to(self.heatmap, RIGHT, buff=0.08))
        if self.cut_rows:
            dots = text(ELLIPSIS_ROWS, ellipsis_size, MUTED)
            self.add(dots.next_to(self.heatmap, DOWN, buff=0.08))

    @property
    def shape_label(self) -> str:
        return shape_text(self.n_rows, self.n_cols)


def vector_strip(
    values: np.ndarray,
    color_scale: ColorScale,
    *,
    cell: float,
    thickness: float,
    vertical: bool = False,
    max_len: int = 256,
) -> MatrixHeatmap:
    """A vector as a strip: `cell` units per entry along it (so it lines up with a matrix
    drawn at the same cell size), `thickness` across (a vector has no second axis to keep
    in proportion)."""
    values = np.asarray(values).reshape(-1)
    grid = values[:, None] if vertical else values[None, :]
    strip = MatrixHeatmap(
        grid,
        color_scale,
        cell=cell,
        max_rows=max_len if vertical else 1,
        max_cols=1 if vertical else max_len,
    )
    image = strip.heatmap
    if vertical:
        image.stretch_to_fit_width(thickness, about_edge=LEFT)
    else:
        image.stretch_to_fit_height(thickness, about_edge=UP)
    # keep the ellipsis beside the stretched strip
    if len(strip.submobjects) > 1:
        side = DOWN if vertical else RIGHT
        strip.submobjects[1].next_to(image, side, buff=0.08)
    return strip
