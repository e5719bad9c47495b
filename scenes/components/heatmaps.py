"""Colour scales with one fixed range, heatmaps drawn as one image, colour bars."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Group,
    ImageMobject,
    Line,
    ManimColor,
    Rectangle,
    VGroup,
)
from manim.constants import RESAMPLING_ALGORITHMS

from scenes.components.numbers import fmt_float
from scenes.components.style import (
    BACKGROUND,
    CAPTION_SIZE,
    HIGHLIGHT,
    LABEL_SIZE,
    MUTED,
    TEXT_COLOR,
    text,
)


def _hex_to_rgb(color: str) -> np.ndarray:
    return np.array(ManimColor(color).to_rgb(), dtype=np.float64)


@dataclass(frozen=True)
class ColorScale:
    """A FIXED map from values to colours: piecewise linear through `colors` from vmin to
    vmax, values outside clipped. Every heatmap of one quantity uses the same scale, so a
    colour means the same number in every frame (never per-image normalisation)."""

    vmin: float
    vmax: float
    colors: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if not self.vmax > self.vmin:
            raise ValueError(f"colour scale {self.name!r}: vmax must exceed vmin")
        if len(self.colors) < 2:
            raise ValueError(f"colour scale {self.name!r}: needs at least two colours")

    def rgb(self, values: np.ndarray) -> np.ndarray:
        """Float RGB in 0..1, shape values.shape + (3,)."""
        values = np.asarray(values, dtype=np.float64)
        t = np.clip((values - self.vmin) / (self.vmax - self.vmin), 0.0, 1.0)
        stops = np.stack([_hex_to_rgb(c) for c in self.colors])  # (n_stops, 3)
        position = t * (len(stops) - 1)
        lower = np.minimum(position.astype(int), len(stops) - 2)
        frac = (position - lower)[..., None]
        return stops[lower] * (1 - frac) + stops[lower + 1] * frac

    def rgba_uint8(self, values: np.ndarray) -> np.ndarray:
        """uint8 RGBA pixels, shape values.shape + (4,), for an ImageMobject."""
        rgb = np.round(self.rgb(values) * 255).astype(np.uint8)
        alpha = np.full(rgb.shape[:-1] + (1,), 255, dtype=np.uint8)
        return np.concatenate([rgb, alpha], axis=-1)

    def color_of(self, value: float) -> ManimColor:
        return ManimColor.from_rgb(tuple(self.rgb(np.array(value)).tolist()))


# Attention patterns (probabilities): dark for 0, bright warm for 1.
PATTERN_SCALE = ColorScale(
    0.0, 1.0, ("#16181f", "#3d3a6b", "#b0607a", "#f2a65a", "#fff1c1"), name="attention probability"
)


def diverging_scale(limit: float, name: str = "signed value") -> ColorScale:
    """Signed values on ONE symmetric range [-limit, limit]: blue below zero, near-black at
    zero, orange above. Pick `limit` once per scene (e.g. a high percentile of |values| over
    everything the scene shows)."""
    if not limit > 0:
        raise ValueError(f"diverging scale {name!r}: limit={limit} must be > 0")
    return ColorScale(
        -limit, limit, ("#7aa7ff", "#2f3f66", "#16181f", "#6b4326", "#ffb061"), name=name
    )


class Heatmap(Group):
    """A 2-D array as ONE image (nearest-neighbour, crisp square cells), with optional grid
    lines and row/column labels. Cell (i, j) is row i from the top, column j from the left."""

    def __init__(
        self,
        values: np.ndarray,
        color_scale: ColorScale,
        *,
        cell_size: float = 0.35,
        row_labels: Sequence[str] | None = None,
        col_labels: Sequence[str] | None = None,
        grid: bool = True,
        label_size: float = LABEL_SIZE * 0.8,
        label_color: str = TEXT_COLOR,
    ) -> None:
        super().__init__()
        values = np.asarray(values)
        if values.ndim != 2:
            raise ValueError(f"a heatmap needs a 2-D array, got shape {values.shape}")
        self.values = values
        self.color_scale = color_scale
        self.n_rows, self.n_cols = values.shape
        self.cell_size = cell_size
        self.image = ImageMobject(color_scale.rgba_uint8(values))
        self.image.set_resampling_algorithm(RESAMPLING_ALGORITHMS["nearest"])
        self.image.stretch_to_fit_width(self.n_cols * cell_size)
        self.image.stretch_to_fit_height(self.n_rows * cell_size)
        self.image.move_to([0, 0, 0])
        self.add(self.image)
        self.grid = VGroup()
        if grid:
            line_width = 1.5 if self.n_rows * self.n_cols <= 1024 else 0.6
            for i in range(self.n_rows + 1):
                y = self._top - i * cell_size
                self.grid.add(Line([self._left, y, 0], [self._right, y, 0]))
            for j in range(self.n_cols + 1):
                x = self._left + j * cell_size
                self.grid.add(Line([x, self._top, 0], [x, self._bottom, 0]))
            self.grid.set_stroke(BACKGROUND, width=line_width)
            self.add(self.grid)
        self.row_labels = VGroup()
        self.col_labels = VGroup()
        if row_labels is not None:
            for i, label in enumerate(row_labels):
                t = text(label, label_size, label_color)
                t.move_to(self.cell_center(i, 0)).align_to(
                    np.array([self._left - 0.15, 0, 0]), RIGHT
                )
                self.row_labels.add(t)
            self.add(self.row_labels)
        if col_labels is not None:
            for j, label in enumerate(col_labels):
                t = text(label, label_size, label_color).rotate(math.pi / 2)
                t.move_to(self.cell_center(0, j)).align_to(np.array([0, self._top + 0.15, 0]), DOWN)
                self.col_labels.add(t)
            self.add(self.col_labels)

    # the image's extent (the group's extent includes the labels)
    @property
    def _left(self) -> float:
        return self.image.get_left()[0]

    @property
    def _right(self) -> float:
        return self.image.get_right()[0]

    @property
    def _top(self) -> float:
        return self.image.get_top()[1]

    @property
    def _bottom(self) -> float:
        return self.image.get_bottom()[1]

    def cell_center(self, i: int, j: int) -> np.ndarray:
        size = self.image.height / self.n_rows
        return np.array([self._left + (j + 0.5) * size, self._top - (i + 0.5) * size, 0.0])

    def _outline(self, i0: int, j0: int, rows: int, cols: int, color: str) -> Rectangle:
        size = self.image.height / self.n_rows
        box = Rectangle(width=cols * size, height=rows * size, color=color, stroke_width=4)
        corner = np.array([self._left + j0 * size, self._top - i0 * size, 0.0])
        return box.move_to(corner, aligned_edge=UP + LEFT)

    def highlight_cell(self, i: int, j: int, color: str = HIGHLIGHT) -> Rectangle:
        return self._outline(i, j, 1, 1, color)

    def highlight_row(self, i: int, color: str = HIGHLIGHT) -> Rectangle:
        return self._outline(i, 0, 1, self.n_cols, color)

    def highlight_col(self, j: int, color: str = HIGHLIGHT) -> Rectangle:
        return self._outline(0, j, self.n_rows, 1, color)


class ColorBar(Group):
    """A small vertical gradient of a colour scale with its end values labelled."""

    def __init__(
        self,
        color_scale: ColorScale,
        *,
        height: float = 2.5,
        width: float = 0.22,
        digits: int = 1,
        label_size: float = CAPTION_SIZE,
    ) -> None:
        super().__init__()
        ramp = np.linspace(color_scale.vmax, color_scale.vmin, 128)[:, None]
        self.image = ImageMobject(color_scale.rgba_uint8(ramp))
        self.image.set_resampling_algorithm(RESAMPLING_ALGORITHMS["nearest"])
        self.image.stretch_to_fit_height(height).stretch_to_fit_width(width)
        top = text(fmt_float(color_scale.vmax, digits), label_size, MUTED)
        bottom = text(fmt_float(color_scale.vmin, digits), label_size, MUTED)
        top.next_to(self.image, RIGHT, buff=0.1).align_to(self.image, UP)
        bottom.next_to(self.image, RIGHT, buff=0.1).align_to(self.image, DOWN)
        self.add(self.image, top, bottom)
