"""A small x-y line plot: linear or log-10 x axis, linear y axis from a fixed range, tick
labels as text (no LaTeX), points joined by a line, reference lines."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from manim import (
    DOWN,
    LEFT,
    UP,
    DashedLine,
    Dot,
    Line,
    VGroup,
    VMobject,
)

from scenes.components.style import CAPTION_SIZE, GRID, MUTED, TEXT_COLOR, text


def nice_ticks(low: float, high: float, n: int = 3) -> list[float]:
    """At least n round tick values (1, 2 or 5 times a power of ten apart) in [low, high]."""
    if not high > low:
        raise ValueError(f"tick range [{low}, {high}] is empty")
    raw = (high - low) / max(n, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = max(m * power for m in (1, 2, 5) if m * power <= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


class XYPlot(VGroup):
    """Axes of `width` x `height` scene units for x in x_range and y in y_range (x_range in
    data units even when `x_log`: the axis is then log10). `plot` adds a line through
    points; `hline` / `vline` add dashed reference lines."""

    def __init__(
        self,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        *,
        width: float,
        height: float,
        x_log: bool = False,
        y_ticks: Sequence[tuple[float, str]] = (),
        x_ticks: Sequence[tuple[float, str]] = (),
        y_label: str = "",
        label_size: float = CAPTION_SIZE,
    ) -> None:
        super().__init__()
        self.x_range, self.y_range, self.x_log = x_range, y_range, x_log
        self.plot_width, self.plot_height = width, height
        self.axes = VGroup(
            Line([0, 0, 0], [width, 0, 0], color=MUTED, stroke_width=2),
            Line([0, 0, 0], [0, height, 0], color=MUTED, stroke_width=2),
        )
        self.add(self.axes)
        self.y_tick_labels = VGroup()
        for value, label in y_ticks:
            y = self.to_point(x_range[0], value)[1]
            self.add(Line([0, y, 0], [width, y, 0], color=GRID, stroke_width=1))
            self.y_tick_labels.add(
                text(label, label_size, MUTED).next_to([0, y, 0], LEFT, buff=0.12)
            )
        self.x_tick_labels = VGroup()
        for value, label in x_ticks:
            x = self.to_point(value, y_range[0])[0]
            self.add(Line([x, 0, 0], [x, -0.1, 0], color=MUTED, stroke_width=2))
            self.x_tick_labels.add(
                text(label, label_size, MUTED).next_to([x, -0.1, 0], DOWN, buff=0.08)
            )
        self.add(self.y_tick_labels, self.x_tick_labels)
        self.y_label = text(y_label, label_size, TEXT_COLOR)
        if y_label:
            self.y_label.next_to(self.axes, UP, buff=0.12).align_to(self.axes, LEFT)
            self.add(self.y_label)

    def _fraction(self, value: float, low: float, high: float, log: bool) -> float:
        if log:
            return (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return (value - low) / (high - low)

    def to_point(self, x: float, y: float) -> np.ndarray:
        """Scene point of data (x, y), relative to where the plot is now."""
        fx = self._fraction(x, *self.x_range, self.x_log)
        fy = self._fraction(y, *self.y_range, False)
        origin = self.axes[0].get_start()
        return origin + np.array([fx * self.plot_width, fy * self.plot_height, 0.0]) * (
            self.axes[0].get_length() / self.plot_width
        )

    def plot(self, xs: Sequence[float], ys: Sequence[float], color: str) -> VGroup:
        """A line through the points, with a dot on each (not added to the plot)."""
        points = [self.to_point(x, y) for x, y in zip(xs, ys, strict=True)]
        line = VMobject(color=color, stroke_width=3)
        line.set_points_as_corners(points)
        dots = VGroup(*(Dot(p, radius=0.06, color=color) for p in points))
        return VGroup(line, dots)

    def hline(self, y: float, color: str = MUTED) -> DashedLine:
        left, right = self.to_point(self.x_range[0], y), self.to_point(self.x_range[1], y)
        return DashedLine(left, right, color=color, stroke_width=2, dash_length=0.08)

    def vline(self, x: float, color: str = MUTED) -> DashedLine:
        bottom, top = self.to_point(x, self.y_range[0]), self.to_point(x, self.y_range[1])
        return DashedLine(bottom, top, color=color, stroke_width=2, dash_length=0.08)
