"""Beat 5: how many bytes each attention kind caches per token, at DeepSeek-V3 size.

MHA is 57x MLA and 128x MQA, so the bars are linear (the honest picture of "how much
smaller") with each value written just past the end of its bar: a sliver of a bar still
has a legible number. Every number comes from `mla_core.analysis.cache_size`.
"""

from __future__ import annotations

from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    GrowFromEdge,
    LaggedStart,
    SurroundingRectangle,
    VGroup,
    Write,
)

from scenes.components import (
    BODY_SIZE,
    CACHE,
    CONTENT_ZONE,
    LABEL_SIZE,
    LATENT,
    MUTED,
    TEXT_COLOR,
    TIMES,
    HBarChart,
    VideoScene,
    caption,
    fit_in,
    fmt_bytes,
    fmt_int,
    fmt_percent,
    fmt_ratio,
    say_ratio,
    text,
    title,
)


def kind_name(kind: str, report: dict) -> str:
    return {"mha": "MHA", "gqa": f"GQA-{report['gqa_groups']}", "mqa": "MQA", "mla": "MLA"}[kind]


class CacheSizePerToken(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        report, config, kinds = data["report"], data["config"], data["kinds"]
        context = report["context"]
        per_token = [report["bytes_per_token"][k] for k in kinds]
        at_context = [report["cache_bytes"][k] for k in kinds]
        names = [kind_name(k, report) for k in kinds]
        colors = [LATENT if k == "mla" else CACHE for k in kinds]
        mla_ratio = report["ratios"]["mla"]
        # What is on screen, for tests and the provenance manifest.
        self.shown_numbers = {
            "bytes_per_token": dict(zip(names, map(fmt_int, per_token), strict=True)),
            f"cache_at_{context}_tokens": dict(zip(names, map(fmt_bytes, at_context), strict=True)),
            "mla_ratio": fmt_ratio(mla_ratio),
            "mla_reduction": fmt_percent(report["reduction"]["mla"]),
        }

        heading = title("How much does each token cost to remember?")
        chart = HBarChart(
            per_token,
            names,
            colors=colors,
            name_colors=colors,
            value_labels=[fmt_int(v) for v in per_token],
            length=6.0,
            bar_height=0.55,
            row_gap=0.45,
            label_size=LABEL_SIZE + 2,
        )
        bytes_header = text("bytes per token", LABEL_SIZE, MUTED)
        bytes_header.next_to(chart.bars, UP, buff=0.35).align_to(chart.bars, LEFT)
        context_header = text(f"at {fmt_int(context)} tokens", LABEL_SIZE, MUTED)
        context_column = VGroup()
        column_width = max(text(fmt_bytes(b), LABEL_SIZE + 2).width for b in at_context)
        column_x = max(v.get_right()[0] for v in chart.value_labels) + 0.8 + column_width
        for i, nbytes in enumerate(at_context):
            value = text(fmt_bytes(nbytes), LABEL_SIZE + 2, TEXT_COLOR)
            value.move_to([column_x, chart.bars[i].get_center()[1], 0], aligned_edge=RIGHT)
            context_column.add(value)
        context_header.next_to(context_column, UP, buff=0.35).align_to(context_column, RIGHT)
        context_header.match_y(bytes_header)

        verdict = text(
            f"MLA caches {fmt_ratio(mla_ratio)} less than MHA "
            f"({fmt_percent(report['reduction']['mla'])} smaller)",
            BODY_SIZE,
            LATENT,
        )
        table = VGroup(bytes_header, context_header, chart, context_column)
        layout = VGroup(table, verdict)
        verdict.next_to(table, DOWN, buff=0.6)
        fit_in(layout, CONTENT_ZONE)
        source = caption(
            f"DeepSeek-V3: {config['n_layers']} layers, {config['n_heads']} heads {TIMES} "
            f"{config['head_dim']} dims, {report['dtype_bytes']} bytes per number; MLA caches "
            f"{config['kv_lora_rank']} + {config['qk_rope_head_dim']} numbers per layer"
        )

        spoken = {
            "mha": "Multi-head attention caches {} bytes per token.",
            "gqa": f"Grouped-query attention with {report['gqa_groups']} groups: {{}}.",
            "mqa": "Multi-query attention, one key and value for all heads: {}.",
            "mla": "And multi-head latent attention: {}.",
        }
        with self.beat("How much memory does each token cost, at DeepSeek-V3's size?"):
            self.play(Write(heading), run_time=1.5)
            self.play(FadeIn(chart.axis), FadeIn(bytes_header), FadeIn(source), run_time=1)
        for i, kind in enumerate(kinds):
            with self.beat(spoken[kind].format(fmt_int(per_token[i]))):
                self.play(FadeIn(chart.names[i], shift=RIGHT * 0.2), run_time=0.5)
                self.play(GrowFromEdge(chart.bars[i], LEFT), run_time=1.0)
                self.play(FadeIn(chart.value_labels[i], shift=LEFT * 0.2), run_time=0.6)
                self.wait(0.6)
        with self.beat(
            f"For {fmt_int(context)} tokens of context, that is "
            f"{fmt_bytes(at_context[kinds.index('mha')])} against "
            f"{fmt_bytes(at_context[kinds.index('mla')])}."
        ):
            self.play(FadeIn(context_header), run_time=0.8)
            self.play(LaggedStart(*(FadeIn(v) for v in context_column), lag_ratio=0.4), run_time=2)
            self.wait(1)
        mla_row = VGroup(chart.row(3), context_column[3])
        box = SurroundingRectangle(mla_row, color=LATENT, buff=0.15, corner_radius=0.08)
        with self.beat(f"MLA caches {say_ratio(mla_ratio)} less than multi-head attention."):
            self.play(FadeIn(box), Write(verdict), run_time=1.5)
            self.wait(3)
