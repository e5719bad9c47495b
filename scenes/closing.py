"""Closing: the whole path on one screen, at DeepSeek-V3 size.

One row per idea of the video, revealed in order: what each caches per layer and per token
(a log-scale bar, so a factor of ten is always the same length), ending on MLA's 576 numbers
and the ratio to MHA. Data: `mla_core.scene_data.closing` (all from `analysis.cache_size`).
"""

from __future__ import annotations

from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    GrowFromEdge,
    SurroundingRectangle,
    VGroup,
    Write,
)

from scenes.components import (
    BODY_SIZE,
    CACHE,
    CONTENT_ZONE,
    HIGHLIGHT,
    LABEL_SIZE,
    LATENT,
    MUTED,
    TEXT_COLOR,
    TIMES,
    HBarChart,
    VideoScene,
    caption,
    fit_in,
    fmt_int,
    fmt_ratio,
    say_ratio,
    text,
    title,
)


def step_rows(data) -> list[tuple[str, str, str]]:
    """(name, what is cached per layer, colour) for each step, in story order."""
    steps = {s["step"]: s for s in data["steps"]}
    h, d, g = data["n_heads"], data["head_dim"], data["gqa_groups"]
    d_c, d_r = data["kv_lora_rank"], data["qk_rope_head_dim"]
    return [
        ("MHA", f"2 {TIMES} {h} heads {TIMES} {d} = {fmt_int(steps['mha']['per_layer'])}", CACHE),
        (
            f"share K/V: GQA-{g}",
            f"2 {TIMES} {g} groups {TIMES} {d} = {fmt_int(steps['gqa']['per_layer'])}",
            CACHE,
        ),
        ("cache a latent", f"{fmt_int(steps['latent']['per_layer'])}", LATENT),
        (
            "absorb up-projections",
            f"{fmt_int(steps['absorbed']['per_layer'])}, not "
            f"{fmt_int(data['naive_per_layer'])} expanded",
            LATENT,
        ),
        (
            "+ shared RoPE key",
            f"{fmt_int(d_c)} + {fmt_int(d_r)} = {fmt_int(steps['rope']['per_layer'])}",
            LATENT,
        ),
    ]


class Closing(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        rows = step_rows(data)
        per_token = [s["bytes_per_token"] for s in data["steps"]]
        ratio = data["ratio"]
        self.shown_numbers = {
            "per_layer": [r[1] for r in rows],
            "bytes_per_token": [fmt_int(b) for b in per_token],
            "ratio": fmt_ratio(ratio),
        }

        heading = title("From MHA to MLA")
        chart = HBarChart(
            per_token,
            [r[0] for r in rows],
            colors=[r[2] for r in rows],
            name_colors=[r[2] for r in rows],
            value_labels=[fmt_int(b) for b in per_token],
            scale="log",
            log_floor=1e4,
            length=5.0,
            bar_height=0.5,
            row_gap=0.4,
            label_size=LABEL_SIZE + 2,
        )
        per_layer = VGroup()
        column_x = chart.names.get_left()[0] - 0.6
        for i, (_, cached, _) in enumerate(rows):
            line = text(cached, LABEL_SIZE + 2, TEXT_COLOR)
            line.move_to([column_x, chart.bars[i].get_center()[1], 0], aligned_edge=RIGHT)
            per_layer.add(line)
        layer_header = text("numbers per layer", LABEL_SIZE, MUTED)
        layer_header.next_to(per_layer, UP, buff=0.35).align_to(per_layer, RIGHT)
        token_header = text("bytes per token (log scale)", LABEL_SIZE, MUTED)
        token_header.match_y(layer_header).align_to(chart.bars, LEFT)
        verdict = text(
            f"{fmt_int(per_token[-1])} bytes per token: {fmt_ratio(ratio)} less than MHA",
            BODY_SIZE + 4,
            LATENT,
        )
        table = VGroup(layer_header, token_header, per_layer, chart)
        verdict.next_to(table, DOWN, buff=0.7)
        fit_in(VGroup(table, verdict), CONTENT_ZONE, allow_grow=True)
        source = caption(
            f"DeepSeek-V3 dims ({data['n_layers']} layers, {data['n_heads']} heads), "
            f"{data['dtype_bytes']} bytes per number, computed by mla_core.analysis.cache_size"
        )

        steps = {st["step"]: st for st in data["steps"]}
        n_bytes = {name: fmt_int(st["bytes_per_token"]) for name, st in steps.items()}
        spoken = [
            f"Multi-head attention caches {n_bytes['mha']} bytes per token.",
            f"Sharing keys and values across {data['gqa_groups']} groups cuts that to "
            f"{n_bytes['gqa']}, at a cost in quality.",
            f"Caching one latent of {data['kv_lora_rank']} numbers per layer instead: "
            f"{n_bytes['latent']}.",
            "Absorbing the up-projections means nothing is expanded again: attention reads "
            "the latents as they are.",
            f"A shared position key of {data['qk_rope_head_dim']} numbers keeps RoPE working: "
            f"{n_bytes['rope']} bytes per token.",
        ]
        with self.beat("The whole path, at DeepSeek-V3's size."):
            self.play(Write(heading), run_time=1.5)
            self.play(
                FadeIn(layer_header), FadeIn(token_header), FadeIn(chart.axis),
                FadeIn(chart.ticks), FadeIn(source), run_time=1.0,
            )  # fmt: skip
        for i, line in enumerate(spoken):
            with self.beat(line):
                self.play(
                    FadeIn(chart.names[i], shift=RIGHT * 0.2), FadeIn(per_layer[i]), run_time=0.8
                )
                self.play(GrowFromEdge(chart.bars[i], LEFT), run_time=0.9)
                self.play(FadeIn(chart.value_labels[i], shift=LEFT * 0.2), run_time=0.5)
                self.wait(1.6)
        box = SurroundingRectangle(
            VGroup(chart.names[-1], per_layer[-1]), color=HIGHLIGHT, buff=0.1,
            corner_radius=0.08,
        )  # fmt: skip
        with self.beat(
            f"{say_ratio(ratio)} less than multi-head attention. That is multi-head latent "
            "attention."
        ):
            self.play(FadeIn(box), Write(verdict), run_time=1.8)
            self.wait(3)
