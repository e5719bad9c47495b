"""Beat 11: is MLA also faster to decode? One attention decode step against context.

Measured step times (solid) of MHA, GQA-8, MQA and absorbed MLA at DeepSeek-V3 widths, each
with its roofline floor (dashed): max(bytes / bandwidth, FLOPs / matmul rate) of the machine
that ran them. Beside the plot, what one more token of context costs each variant in bytes and
FLOPs and which ceiling bounds it: MHA streams its big cache (memory-bound), absorbed MLA reads
57x fewer bytes but does about 4x the arithmetic (compute-heavy). The machine, dtype, date and
whether the numbers come from a benchmark JSON or a quick run are on screen.
Data: `mla_core.scene_data.decode_speed`.
"""

from __future__ import annotations

from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Create,
    DashedLine,
    FadeIn,
    Line,
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
    LogLogPlot,
    VideoScene,
    Zone,
    caption,
    fit_in,
    fmt_int,
    fmt_ratio,
    say_ratio,
    text,
    title,
)

COLORS = {"mha": CACHE, "gqa": TEXT_COLOR, "mqa": MUTED, "mla_absorbed": LATENT}


def fmt_seconds(seconds: float) -> str:
    """A decade of the time axis: 1e-4 -> '0.1 ms', 0.01 -> '10 ms', 1 -> '1 s'."""
    if seconds >= 1:
        return f"{seconds:g} s"
    if seconds >= 1e-4:
        return f"{seconds * 1e3:g} ms"
    return f"{seconds * 1e6:g} \u00b5s"


def fmt_tokens(tokens: int) -> str:
    return f"{tokens // 1024}k" if tokens % 1024 == 0 else fmt_int(tokens)


def fmt_rate(value: float, unit: str) -> str:
    """33.8e9 -> '33.8 GB/s'; 3.75e11 -> '375 GFLOP/s'."""
    if value >= 1e12:
        return f"{value / 1e12:.1f} T{unit}/s"
    return f"{value / 1e9:.3g} G{unit}/s"


class DecodeSpeed(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        variants, labels = data["variants"], data["labels"]
        contexts = [int(t) for t in data["contexts"]]
        median_s, floor_s = data["median_s"], data["floor_s"]
        per_token, bounds = data["per_token"], data["bound"]
        prov = data.provenance
        last = len(contexts) - 1
        mha = variants.index("mha")

        # --- the plot -------------------------------------------------------------------------
        zone = CONTENT_ZONE
        header_zone = Zone(zone.left, zone.right, zone.top - 0.75, zone.top)
        split = zone.left + 0.55 * zone.width
        plot_zone = Zone(zone.left, split, zone.bottom, header_zone.bottom - 0.2)
        side_zone = Zone(split + 0.5, zone.right, zone.bottom, header_zone.bottom - 0.2)
        y_low = min(float(floor_s.min()), float(median_s.min()))
        y_high = max(float(floor_s.max()), float(median_s.max()))
        plot = LogLogPlot(
            contexts,
            (y_low, y_high),
            width=7.0,
            height=4.6,
            x_label=fmt_tokens,
            y_label=fmt_seconds,
            x_title="context (tokens in the cache)",
            y_title="one decode step",
        )
        threads = ""
        if prov.get("device") == "cpu" and prov.get("threads"):
            n = prov["threads"]
            threads = f", {n} thread{'s' if n > 1 else ''}"
            threads += " (CPU time)" if prov.get("clock") == "thread" else ""
        machine = text(
            f"{prov.get('device_name')}{threads} \u00b7 {data['dtype']} \u00b7 "
            f"batch {data['batch']}",
            LABEL_SIZE,
            TEXT_COLOR,
        )
        ceilings = text(
            f"floor = max(bytes \u00f7 {fmt_rate(data['bandwidth'], 'B')}, "
            f"FLOPs \u00f7 {fmt_rate(data['matmul_rate'], 'FLOP')}), both measured",
            LABEL_SIZE,
            MUTED,
        )
        header = VGroup(machine, ceilings).arrange(DOWN, aligned_edge=LEFT, buff=0.1)
        fit_in(header, header_zone, align="left")
        fit_in(plot, plot_zone, align="left", allow_grow=True)
        measured = [plot.series(contexts, median_s[i], COLORS[v]) for i, v in enumerate(variants)]
        floors = [plot.dashed(contexts, floor_s[i], COLORS[v]) for i, v in enumerate(variants)]

        # --- the legend: what one more token costs, and what bounds the step -------------------
        legend = VGroup()
        for i, v in enumerate(variants):
            cost = per_token[v]
            name = text(labels[i], BODY_SIZE, COLORS[v])
            costs = text(
                f"{fmt_int(cost['bytes'])} bytes, {fmt_int(cost['flops'])} FLOPs",
                LABEL_SIZE,
                TEXT_COLOR,
            )
            bound = text(
                f"{bounds[i][last]}-bound at {fmt_tokens(contexts[last])}", LABEL_SIZE, COLORS[v]
            )
            entry = VGroup(name, costs, bound)
            costs.next_to(name, DOWN, buff=0.1, aligned_edge=LEFT)
            bound.next_to(name, RIGHT, buff=0.3).align_to(name, DOWN)
            legend.add(entry)
        legend.arrange(DOWN, aligned_edge=LEFT, buff=0.28)
        per_token_header = text("per token of context", LABEL_SIZE, MUTED)
        key = VGroup(
            Line(LEFT * 0.25, RIGHT * 0.25, color=MUTED, stroke_width=4),
            text("measured", LABEL_SIZE, MUTED),
            DashedLine(LEFT * 0.25, RIGHT * 0.25, color=MUTED, stroke_width=3, dash_length=0.08),
            text("roofline floor", LABEL_SIZE, MUTED),
        ).arrange(RIGHT, buff=0.15)
        key[2].shift(RIGHT * 0.25)
        key[3].shift(RIGHT * 0.25)
        mla = variants.index("mla_absorbed") if "mla_absorbed" in variants else None
        verdict = VGroup()
        if mla is not None:
            byte_ratio = per_token["mha"]["bytes"] / per_token["mla_absorbed"]["bytes"]
            flop_ratio = per_token["mla_absorbed"]["flops"] / per_token["mha"]["flops"]
            speedup = median_s[mha][last] / median_s[mla][last]
            predicted = floor_s[mha][last] / floor_s[mla][last]
            verdict = VGroup(
                text(
                    f"MLA: {fmt_ratio(byte_ratio)} fewer bytes, "
                    f"{fmt_ratio(flop_ratio, 2)} the FLOPs",
                    LABEL_SIZE,
                    HIGHLIGHT,
                ),
                text(
                    f"speed-up over MHA at {fmt_tokens(contexts[last])}: "
                    f"{fmt_ratio(speedup)} (roofline {fmt_ratio(predicted)})",
                    LABEL_SIZE,
                    HIGHLIGHT,
                ),
            ).arrange(DOWN, aligned_edge=LEFT, buff=0.1)
            self.shown_numbers_extra = {
                "mla_byte_ratio": fmt_ratio(byte_ratio),
                "mla_flop_ratio": fmt_ratio(flop_ratio, 2),
                "mla_speedup_measured": fmt_ratio(speedup),
                "mla_speedup_roofline": fmt_ratio(predicted),
            }
        side = VGroup(key, per_token_header, legend, verdict).arrange(
            DOWN, aligned_edge=LEFT, buff=0.4
        )
        fit_in(side, side_zone, align="left")

        when = "benchmark JSON" if prov.get("source") == "json" else "quick run"
        source = caption(
            f"one attention layer at DeepSeek-V3 widths; mla_core bench decode, {when}, "
            f"{prov.get('measured_utc')}"
        )
        self.shown_numbers = {
            "machine": machine.original_text,
            "ceilings": ceilings.original_text,
            "per_token": {labels[i]: legend[i][1].original_text for i in range(len(variants))},
            "bound": {labels[i]: legend[i][2].original_text for i in range(len(variants))},
            **getattr(self, "shown_numbers_extra", {}),
        }

        # --- beats ------------------------------------------------------------------------------
        with self.beat(
            "How fast is one decode step? One attention layer at DeepSeek-V3's widths, timed "
            "on this machine, against the floor its memory bandwidth and arithmetic allow."
        ):
            self.play(Write(title("Decode speed: bytes or FLOPs?")), run_time=1.5)
            self.play(
                FadeIn(header),
                FadeIn(plot.axes),
                FadeIn(source),
                FadeIn(key),
                FadeIn(per_token_header),
                run_time=1.2,
            )
            self.wait(1)
        for i, v in enumerate(variants):
            with self.beat(
                f"{labels[i]} reads {fmt_int(per_token[v]['bytes'])} bytes and does "
                f"{fmt_int(per_token[v]['flops'])} FLOPs per token of context: at "
                f"{fmt_tokens(contexts[last])} tokens it is {bounds[i][last]}-bound."
            ):
                self.play(FadeIn(legend[i][0]), Create(measured[i]), run_time=1.4)
                self.play(Create(floors[i]), FadeIn(legend[i][1:]), run_time=1.2)
                self.wait(1.5)
        if len(verdict):
            with self.beat(
                f"So MLA reads {say_ratio(byte_ratio)} fewer bytes but does "
                f"{say_ratio(flop_ratio, 2)} the arithmetic; here its step is "
                f"{say_ratio(speedup)} as fast as MHA's, where the roofline predicts "
                f"{say_ratio(predicted)}."
            ):
                self.play(FadeIn(verdict[0], shift=UP * 0.1), run_time=1.0)
                self.wait(1.5)
                self.play(FadeIn(verdict[1], shift=UP * 0.1), run_time=1.0)
        self.wait(3)
