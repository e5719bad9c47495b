"""The building blocks every scene draws with, defined once.

- the colour language: one colour per role (query, key, value, latent, cache, highlight);
- the type scale: title, body, label and caption sizes, one serif font that matches LaTeX;
- the layout grid: a title zone, a content zone and a caption zone (no magic coordinates);
- number formatting: thousands separators, bytes, ratios, probabilities;
- charts: a horizontal bar chart, a heatmap drawn as one image with a fixed colour scale,
  a colour bar, a token strip and a block for big matrices.

Scenes take their data from `mla_core` and their look from here; nothing in this module
computes model maths.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    MathTex,
    Rectangle,
    RoundedRectangle,
    Scene,
    Text,
    VGroup,
    VMobject,
)
from manim.constants import RESAMPLING_ALGORITHMS

from mla_core.atomic import write_text_atomically
from mla_core.scene_data import MANIFEST_DIR_ENV, SceneData, data_for_scene
from mla_core.scene_data.inputs import SceneInputs, resolve_inputs
from mla_core.scene_data.params import params_from_env

# --- colour language ---------------------------------------------------------------------
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


# --- layout grid -------------------------------------------------------------------------
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


# --- numbers -----------------------------------------------------------------------------

MINUS = "\u2212"  # a real minus sign, as wide as a plus
TIMES = "\u00d7"


def fmt_int(n: int) -> str:
    """3997696 -> '3,997,696'."""
    return f"{int(n):,}".replace("-", MINUS)


def fmt_bytes(n: float, digits: int = 1) -> str:
    """Bytes in decimal (SI) units: 70272 -> '70.3 KB', 399769600000 -> '399.8 GB'."""
    if abs(n) < 1000:
        return f"{fmt_int(n)} bytes"
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.{digits}f} {unit}".replace("-", MINUS)
    raise AssertionError("unreachable")


def fmt_ratio(x: float, digits: int = 1) -> str:
    """56.889 -> '56.9×'."""
    return f"{x:,.{digits}f}{TIMES}"


def fmt_percent(p: float, digits: int = 1) -> str:
    """0.4213 -> '42.1%'."""
    return f"{100 * p:.{digits}f}%"


def fmt_float(x: float, digits: int = 2) -> str:
    """-0.1234 -> '−0.12' (with a true minus sign)."""
    return f"{x:.{digits}f}".replace("-", MINUS)


# --- horizontal bar chart ----------------------------------------------------------------


class HBarChart(VGroup):
    """Horizontal bars, one row per item, top to bottom: a name on the left, a bar, and a
    value label just past the end of the bar (so even a sliver of a bar stays readable).

    scale="linear": bar length proportional to the value (0 at the axis).
    scale="log": bar length proportional to log10(value / log_floor); the axis below is
    marked in decades so the viewer can see it is logarithmic.
    """

    def __init__(
        self,
        values: Sequence[float],
        names: Sequence[str],
        *,
        colors: Sequence[str] | str = CACHE,
        value_labels: Sequence[str] | None = None,
        scale: str = "linear",
        length: float = 8.0,
        bar_height: float = 0.5,
        row_gap: float = 0.35,
        max_value: float | None = None,
        log_floor: float | None = None,
        label_size: float = LABEL_SIZE,
        name_colors: Sequence[str] | str | None = None,
    ) -> None:
        super().__init__()
        if len(values) != len(names):
            raise ValueError(f"{len(values)} values but {len(names)} names")
        if scale not in ("linear", "log"):
            raise ValueError(f"scale={scale!r}; allowed: linear, log")
        if scale == "log" and min(values) <= 0:
            raise ValueError("a log-scale bar chart needs positive values")
        colors = [colors] * len(values) if isinstance(colors, str) else list(colors)
        if name_colors is None:
            name_colors = TEXT_COLOR
        name_colors = (
            [name_colors] * len(values) if isinstance(name_colors, str) else list(name_colors)
        )
        self.values = [float(v) for v in values]
        self.scale_kind = scale
        self.length = length
        if scale == "linear":
            self.max_value = float(max_value if max_value is not None else max(self.values))
        else:
            self.log_floor = float(
                log_floor if log_floor is not None else 10 ** math.floor(math.log10(min(values)))
            )
            top = max_value if max_value is not None else max(self.values)
            self.log_ceiling = 10 ** math.ceil(math.log10(top))

        self.names = VGroup(
            *(text(n, label_size, c) for n, c in zip(names, name_colors, strict=True))
        )
        name_width = max(n.width for n in self.names)
        self.bars = VGroup()
        self.value_labels = VGroup()
        for i, value in enumerate(self.values):
            y = -i * (bar_height + row_gap)
            bar = Rectangle(
                width=max(self.bar_length(value), 1e-3),
                height=bar_height,
                stroke_width=0,
                fill_color=colors[i],
                fill_opacity=1,
            )
            bar.move_to([0, y, 0], aligned_edge=LEFT)
            self.bars.add(bar)
            self.names[i].move_to([-0.25, y, 0], aligned_edge=RIGHT)
            if value_labels is not None:
                label = text(value_labels[i], label_size, TEXT_COLOR)
                label.next_to(bar, RIGHT, buff=0.2)
                self.value_labels.add(label)
        top_y = bar_height / 2 + 0.1
        bottom_y = -(len(values) - 1) * (bar_height + row_gap) - bar_height / 2 - 0.1
        self.axis = Line([0, top_y, 0], [0, bottom_y, 0], color=MUTED, stroke_width=2)
        self.add(self.axis, self.bars, self.names, self.value_labels)
        if scale == "log":
            self.ticks = self._log_ticks(bottom_y, label_size)
            self.add(self.ticks)
        self._name_width = name_width

    def bar_length(self, value: float) -> float:
        """Length in scene units of a bar for `value`."""
        if self.scale_kind == "linear":
            return self.length * value / self.max_value
        span = math.log10(self.log_ceiling / self.log_floor)
        return self.length * math.log10(value / self.log_floor) / span

    def _log_ticks(self, y: float, label_size: float) -> VGroup:
        ticks = VGroup()
        exponent = round(math.log10(self.log_floor))
        while 10**exponent <= self.log_ceiling * 1.0001:
            x = self.bar_length(10**exponent)
            tick = Line([x, y, 0], [x, y - 0.12, 0], color=MUTED, stroke_width=2)
            label = math_tex(f"10^{{{exponent}}}", size=label_size * 0.8, color=MUTED)
            label.next_to(tick, DOWN, buff=0.08)
            ticks.add(tick, label)
            exponent += 1
        ticks.add(Line([0, y, 0], [self.length, y, 0], color=MUTED, stroke_width=2))
        return ticks

    def row(self, i: int) -> VGroup:
        """Name, bar and value label of row `i` (for animating one row at a time)."""
        parts = [self.names[i], self.bars[i]]
        if len(self.value_labels):
            parts.append(self.value_labels[i])
        return VGroup(*parts)


# --- colour scales, heatmaps, colour bars -------------------------------------------------


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


# --- tokens and matrices -------------------------------------------------------------------


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


# --- the scene base class ------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


class VideoScene(Scene):
    """A scene of the video. It reads the video parameters (video.toml, or what render.py
    passed), takes its data from `mla_core.scene_data`, records every number it prints in
    `shown_numbers`, and at the end writes that record (with the data's provenance and the
    project files it ran) for render.py's manifest."""

    def setup(self) -> None:
        self.params = params_from_env()
        self.shown_numbers: dict = {}
        self.provenance: dict = {}

    @property
    def inputs(self) -> SceneInputs:
        """The parameters resolved once (model, weights, device), shared with the data."""
        return resolve_inputs(self.params)

    def scene_data(self) -> SceneData:
        """This scene's data (mla_core/scene_data/<stem>.py), provenance kept."""
        data = data_for_scene(type(self).__name__, self.inputs)
        self.provenance = data.provenance
        return data

    def tear_down(self) -> None:
        folder = os.environ.get(MANIFEST_DIR_ENV)
        if folder:
            write_scene_record(self, Path(folder))


def write_scene_record(scene: VideoScene, folder: Path) -> Path:
    """<folder>/<Scene>.json: parameters, provenance, numbers shown, project files used."""
    record = {
        "scene": type(scene).__name__,
        "params": scene.params.as_dict(),
        "provenance": scene.provenance,
        "shown_numbers": scene.shown_numbers,
        "source_files": project_files_loaded(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['scene']}.json"
    write_text_atomically(path, json.dumps(record, indent=2, ensure_ascii=False))
    return path


def project_files_loaded() -> dict[str, str]:
    """sha256 of every module of this repository the process has imported (relative paths):
    what a render depended on, so render.py can tell when it must re-render."""
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not os.path.isabs(path):  # some extension modules give bare names
            continue
        path = Path(path).resolve()
        if path.suffix != ".py" or REPO not in path.parents or ".venv" in path.parts:
            continue
        if not path.is_file():
            continue
        files[str(path.relative_to(REPO))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(files.items()))
