"""Beat 1: the two headline numbers.

The cache ratio is computed by `mla_core.analysis.cache_size` from the DeepSeek-V3 config; the
throughput factor cannot be computed here, so it is quoted from the paper through
`mla_core.analysis.paper_figures` (with its source on screen).
"""

from __future__ import annotations

from manim import DOWN, RIGHT, UP, FadeIn, LaggedStart, VGroup, Write

from mla_core.analysis.paper_figures import GENERATION_THROUGHPUT_SPEEDUP
from scenes.components import (
    BODY_SIZE,
    CONTENT_ZONE,
    HIGHLIGHT,
    LABEL_SIZE,
    LATENT,
    MUTED,
    TEXT_COLOR,
    VideoScene,
    caption,
    fit_in,
    fmt_int,
    fmt_ratio,
    say_ratio,
    text,
    title,
)

HEADLINE_SIZE = 110


def _stat(big: str, color: str, line: str, detail: str) -> VGroup:
    number = text(big, HEADLINE_SIZE, color)
    what = text(line, BODY_SIZE, TEXT_COLOR)
    where = text(detail, LABEL_SIZE, MUTED)
    return VGroup(number, what, where).arrange(DOWN, buff=0.3)


class Hook(VideoScene):
    def construct(self) -> None:
        numbers = self.scene_data().meta
        speedup = GENERATION_THROUGHPUT_SPEEDUP
        cache_stat = _stat(
            fmt_ratio(numbers["cache_ratio"]),
            LATENT,
            "smaller KV cache with MLA",
            f"DeepSeek-V3: {fmt_int(numbers['mha_bytes_per_token'])} \u2192 "
            f"{fmt_int(numbers['mla_bytes_per_token'])} bytes per token",
        )
        speed_stat = _stat(
            fmt_ratio(numbers["throughput_speedup"], 2),
            HIGHLIGHT,
            "higher generation throughput",
            f"DeepSeek-V2 vs DeepSeek 67B ({speedup.arxiv})",
        )
        self.shown_numbers = {
            "cache_ratio": cache_stat[0].original_text,
            "mha_bytes_per_token": fmt_int(numbers["mha_bytes_per_token"]),
            "mla_bytes_per_token": fmt_int(numbers["mla_bytes_per_token"]),
            "throughput_speedup": speed_stat[0].original_text,
        }
        stats = VGroup(cache_stat, speed_stat).arrange(RIGHT, buff=1.2, aligned_edge=UP)
        for left_part, right_part in zip(cache_stat, speed_stat, strict=True):
            right_part.match_y(left_part)  # number, line and source on shared baselines
        fit_in(stats, CONTENT_ZONE)
        heading = title("DeepSeek's Multi-head Latent Attention")
        source = caption(
            f"cache computed by mla_core (DeepSeek-V3, bf16) \u00b7 throughput: "
            f"{speedup.paper}, {speedup.where}"
        )

        with self.beat("This is Multi-head Latent Attention, the attention of DeepSeek's models."):
            self.play(Write(heading), run_time=1.5)
            self.wait(0.5)
        with self.beat(
            f"It lets DeepSeek-V3 keep a key-value cache {say_ratio(numbers['cache_ratio'])} "
            f"smaller than multi-head attention would: {fmt_int(numbers['mla_bytes_per_token'])} "
            f"bytes per token instead of {fmt_int(numbers['mha_bytes_per_token'])}."
        ):
            self.play(FadeIn(cache_stat[0], scale=0.8), run_time=1.2)
            self.play(LaggedStart(FadeIn(cache_stat[1]), FadeIn(cache_stat[2]), lag_ratio=0.5))
            self.wait(1.5)
        with self.beat(
            f"And the DeepSeek-V2 paper reports {say_ratio(numbers['throughput_speedup'], 2)} "
            "the generation throughput of DeepSeek 67B. How can a cache shrink that much?"
        ):
            self.play(FadeIn(speed_stat[0], scale=0.8), run_time=1.2)
            self.play(
                LaggedStart(FadeIn(speed_stat[1]), FadeIn(speed_stat[2]), lag_ratio=0.5),
                FadeIn(source),
            )
            self.wait(3)
