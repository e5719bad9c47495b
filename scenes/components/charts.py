"""A horizontal bar chart with linear or log scale, labels and values."""

from __future__ import annotations

import math
from collections.abc import Sequence

from manim import (
    DOWN,
    LEFT,
    RIGHT,
    Line,
    Rectangle,
    VGroup,
)

from scenes.components.style import CACHE, LABEL_SIZE, MUTED, TEXT_COLOR, math_tex, text


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
