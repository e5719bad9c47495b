"""A line plot on logarithmic axes: step time against context, with dashed floors.

`LogLogPlot` maps data to the frame with both axes logarithmic (x in powers of two, y in
decades), draws the axes with tick labels in the project font, and makes measured series
(solid line and dots) and reference series (dashed, e.g. roofline floors) in a given colour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from manim import (
    DOWN,
    LEFT,
    DashedVMobject,
    Dot,
    Line,
    VGroup,
    VMobject,
)

from scenes.components.style import LABEL_SIZE, MUTED, text


class LogLogPlot(VGroup):
    """Axes for x in [x_min, x_max] (log base 2) and y in [y_min, y_max] (log base 10).

    x_ticks: the x values to mark, labelled by `x_label(x)`; y ticks at every decade in the
    range, labelled by `y_label(y)`. The y range is widened to whole decades.
    """

    def __init__(
        self,
        x_ticks: Sequence[float],
        y_range: tuple[float, float],
        *,
        width: float = 8.0,
        height: float = 5.0,
        x_label: Callable[[float], str] = str,
        y_label: Callable[[float], str] = str,
        x_title: str = "",
        y_title: str = "",
        label_size: float = LABEL_SIZE,
    ) -> None:
        super().__init__()
        if min(y_range) <= 0 or min(x_ticks) <= 0:
            raise ValueError("a log-log plot needs positive values")
        self.plot_width, self.plot_height = width, height
        self.x_min, self.x_max = min(x_ticks), max(x_ticks)
        self.decade_min = math.floor(math.log10(y_range[0]))
        self.decade_max = math.ceil(math.log10(y_range[1]))
        if self.decade_max == self.decade_min:
            self.decade_max += 1
        origin = np.array([0.0, 0.0, 0.0])
        self.x_axis = Line(origin, [width, 0, 0], color=MUTED, stroke_width=2)
        self.y_axis = Line(origin, [0, height, 0], color=MUTED, stroke_width=2)
        self.x_ticks = VGroup()
        for x in x_ticks:
            p = self.point(x, 10.0**self.decade_min)
            tick = Line(p, p + DOWN * 0.12, color=MUTED, stroke_width=2)
            label = text(x_label(x), label_size, MUTED).next_to(tick, DOWN, buff=0.08)
            self.x_ticks.add(VGroup(tick, label))
        self.y_ticks = VGroup()
        for exponent in range(self.decade_min, self.decade_max + 1):
            p = self.point(self.x_min, 10.0**exponent)
            tick = Line(p, p + LEFT * 0.12, color=MUTED, stroke_width=2)
            label = text(y_label(10.0**exponent), label_size, MUTED).next_to(tick, LEFT, buff=0.1)
            self.y_ticks.add(VGroup(tick, label))
        self.axes = VGroup(self.x_axis, self.y_axis, self.x_ticks, self.y_ticks)
        if x_title:
            title = text(x_title, label_size, MUTED).next_to(self.x_ticks, DOWN, buff=0.2)
            title.set_x(width / 2)
            self.axes.add(title)
        if y_title:
            title = text(y_title, label_size, MUTED).next_to(self.y_ticks, LEFT, buff=0.2)
            title.rotate(math.pi / 2).set_y(height / 2)
            self.axes.add(title)
        self.add(self.axes)

    def point(self, x: float, y: float) -> np.ndarray:
        """Where (x, y) lies, in the plot's own coordinates (moves with the plot)."""
        fx = math.log2(x / self.x_min) / math.log2(self.x_max / self.x_min)
        fy = (math.log10(y) - self.decade_min) / (self.decade_max - self.decade_min)
        origin = self.x_axis.get_start()
        return origin + np.array([fx * self.plot_width_now, fy * self.plot_height_now, 0.0])

    @property
    def plot_width_now(self) -> float:
        return self.x_axis.get_length() if len(self.submobjects) else self.plot_width

    @property
    def plot_height_now(self) -> float:
        return self.y_axis.get_length() if len(self.submobjects) else self.plot_height

    def series(self, xs: Sequence[float], ys: Sequence[float], color: str) -> VGroup:
        """A measured series: a solid line through dots."""
        points = [self.point(x, y) for x, y in zip(xs, ys, strict=True)]
        line = VMobject(color=color, stroke_width=4).set_points_as_corners(points)
        dots = VGroup(*(Dot(p, radius=0.06, color=color) for p in points))
        return VGroup(line, dots)

    def dashed(self, xs: Sequence[float], ys: Sequence[float], color: str) -> VMobject:
        """A reference series (a floor, a prediction): a dashed line."""
        points = [self.point(x, y) for x, y in zip(xs, ys, strict=True)]
        line = VMobject(color=color, stroke_width=3).set_points_as_corners(points)
        return DashedVMobject(line, num_dashes=8 * len(points), dashed_ratio=0.55)
