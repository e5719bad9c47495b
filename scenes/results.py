"""Beat 10: what MLA buys, in three cache numbers and one ablation.

First page, one row per source, each saying how it was obtained: DeepSeek-V3's cache per token
(computed), the technical notes' V2-style example (computed, with the notes' mistyped
denominator shown beside the correct one), and the DeepSeek-V2 paper's deployed figures
(measured by DeepSeek against DeepSeek 67B, with KV quantisation). Second page: the paper's
Table 9, MHA against MLA in two MoE models: MLA scores as well or better with a fraction of
the cache. Third page: the same comparison trained on this machine, MHA, GQA, MQA and MLA on
the same text, steps and seed (`python -m mla_core ablation`): cache bytes per token against
validation loss, whatever the runs measured. Data: `mla_core.scene_data.results`.
"""

from __future__ import annotations

from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    GrowFromEdge,
    Indicate,
    LaggedStart,
    ReplacementTransform,
    Text,
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
    MINUS,
    MUTED,
    TEXT_COLOR,
    TIMES,
    HBarChart,
    VideoScene,
    caption,
    fit_in,
    fmt_bytes,
    fmt_float,
    fmt_int,
    fmt_percent,
    fmt_ratio,
    say_ratio,
    text,
    title,
)

ARROW = "\u2192"
NUMBER_SIZE = 40  # the headline number of each row
LOSS_DIGITS = 3  # the trained models' losses differ in the second decimal


def _row(name: str, how: str, middle: VGroup, number: str, color: str) -> VGroup:
    """One source: its name and how the numbers were obtained, the numbers, the headline."""
    label = VGroup(text(name, BODY_SIZE, TEXT_COLOR), text(how, LABEL_SIZE, MUTED))
    label.arrange(DOWN, aligned_edge=LEFT, buff=0.12)
    return VGroup(label, middle, text(number, NUMBER_SIZE, color))


def _lines(*lines: tuple[str, float, str]) -> VGroup:
    return VGroup(*(text(s, size, color) for s, size, color in lines)).arrange(
        DOWN, aligned_edge=LEFT, buff=0.12
    )


def _kilo(elements: float) -> str:
    """Elements per token as the paper prints them: 110.6K."""
    return f"{elements / 1e3:.1f}K"


class Results(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        v3, notes, paper, ablation = data["v3"], data["notes"], data["paper"], data["ablation"]
        reduction, throughput = paper["kv_cache_reduction"], paper["throughput_speedup"]

        shown = {
            "v3_mha_bytes": fmt_int(v3["mha_bytes_per_token"]),
            "v3_mla_bytes": fmt_int(v3["mla_bytes_per_token"]),
            "v3_ratio": fmt_ratio(v3["ratio"]),
            "notes_mha_bytes": fmt_int(notes["mha_bytes_per_token"]),
            "notes_mla_bytes": fmt_int(notes["mla_bytes_per_token"]),
            "notes_reduction": fmt_percent(notes["reduction"], 2),
            "notes_printed_denominator": fmt_int(notes["printed_denominator"]),
            "notes_printed_reduction": fmt_percent(notes["reduction_with_printed_denominator"]),
            "paper_kv_reduction": f"{reduction['value']:.1f}%",
            "paper_throughput": fmt_ratio(throughput["value"], 2),
        }

        # --- page 1: three sources, one row each --------------------------------------------
        heading = title("What MLA saves")
        rows = VGroup(
            _row(
                "DeepSeek-V3",
                f"{v3['n_layers']} layers, {v3['n_heads']} heads {TIMES} {v3['head_dim']}: "
                "computed",
                _lines(
                    (
                        f"{shown['v3_mha_bytes']} {ARROW} {shown['v3_mla_bytes']}",
                        BODY_SIZE,
                        TEXT_COLOR,
                    ),
                    ("bytes per token, MHA " + ARROW + " MLA", LABEL_SIZE, MUTED),
                ),
                f"{shown['v3_ratio']} smaller",
                LATENT,
            ),
            _row(
                "The notes' V2-style example",
                f"{notes['n_layers']} layers, {notes['n_heads']} heads {TIMES} "
                f"{notes['head_dim']}: computed",
                _lines(
                    (
                        f"{shown['notes_mha_bytes']} {ARROW} {shown['notes_mla_bytes']}",
                        BODY_SIZE,
                        TEXT_COLOR,
                    ),
                    (
                        f"({shown['notes_mha_bytes']} {MINUS} {shown['notes_mla_bytes']}) / "
                        f"{shown['notes_mha_bytes']} = {shown['notes_reduction']}",
                        LABEL_SIZE,
                        MUTED,
                    ),
                ),
                f"{shown['notes_reduction']} less",
                LATENT,
            ),
            _row(
                "DeepSeek-V2 vs DeepSeek 67B",
                "measured in deployment, KV cache quantised",
                _lines(
                    (f"{shown['paper_kv_reduction']} less KV cache", BODY_SIZE, TEXT_COLOR),
                    ("reported by DeepSeek", LABEL_SIZE, MUTED),
                ),
                f"{shown['paper_throughput']} throughput",
                HIGHLIGHT,
            ),
        )
        correction = text(
            f"the notes divide by {shown['notes_printed_denominator']}: "
            f"{shown['notes_printed_reduction']}",
            LABEL_SIZE,
            HIGHLIGHT,
        )
        label_w = max(r[0].width for r in rows)
        middle_w = max(max(r[1].width for r in rows), correction.width)
        for row in rows:
            row[0].move_to([0, 0, 0], aligned_edge=LEFT)
            row[1].move_to([label_w + 0.8, 0, 0], aligned_edge=LEFT)
            row[2].move_to([label_w + middle_w + 1.4, 0, 0], aligned_edge=LEFT)
        notes_middle = rows[1][1]
        correction.next_to(notes_middle, DOWN, buff=0.12).align_to(notes_middle, LEFT)
        # the correction sits in row 2's block (its space kept) but appears on its own beat
        page1 = VGroup(rows[0], VGroup(rows[1], correction), rows[2])
        page1.arrange(DOWN, buff=1.0, aligned_edge=LEFT)
        fit_in(page1, CONTENT_ZONE, allow_grow=True)
        source1 = caption(
            f"computed by mla_core, bf16 \u00b7 {shown['paper_kv_reduction']}, "
            f"{shown['paper_throughput']}: {reduction['citation']}"
        )

        with self.beat("So what does MLA save?"):
            self.play(Write(heading), run_time=1.5)
            self.play(FadeIn(source1), run_time=0.8)
        spoken = (
            f"For DeepSeek-V3, {shown['v3_mha_bytes']} bytes per token become "
            f"{shown['v3_mla_bytes']}: {say_ratio(v3['ratio'])} less.",
            f"The technical notes' smaller example caches {shown['notes_mla_bytes']} bytes "
            f"instead of {shown['notes_mha_bytes']}: {shown['notes_reduction']} less.",
        )
        for row, line in zip(rows[:2], spoken, strict=True):
            with self.beat(line):
                self.play(FadeIn(row[0], shift=RIGHT * 0.2), run_time=0.8)
                self.play(FadeIn(row[1]), run_time=1.0)
                self.play(FadeIn(row[2], scale=0.9), run_time=0.8)
                self.wait(1.5)
        with self.beat(
            f"The notes print {shown['notes_printed_reduction']}, because they divide by "
            f"{shown['notes_printed_denominator']} instead of {shown['notes_mha_bytes']}."
        ):
            self.play(FadeIn(correction, shift=UP * 0.1), run_time=1.0)
            self.wait(2.5)
        row = rows[2]
        with self.beat(
            f"In deployment, with a quantised cache, the DeepSeek-V2 paper measured "
            f"{shown['paper_kv_reduction']} less KV cache than DeepSeek 67B, and "
            f"{say_ratio(throughput['value'], 2)} its generation throughput."
        ):
            self.play(FadeIn(row[0], shift=RIGHT * 0.2), run_time=0.8)
            self.play(FadeIn(row[1]), run_time=1.0)
            self.play(FadeIn(row[2], scale=0.9), run_time=0.8)
            self.wait(2.5)

        # --- page 2: Table 9, MHA against MLA ------------------------------------------------
        table_rows = ablation["rows"]
        models = list(dict.fromkeys(r["model"] for r in table_rows))
        biggest = max(r["kv_elements_per_token"] for r in table_rows)
        groups, verdicts = VGroup(), VGroup()
        savings: list[tuple[str, float, float]] = []  # (model, MMLU gain, share of MHA's cache)
        for model in models:
            mha = next(r for r in table_rows if r["model"] == model and r["attention"] == "MHA")
            mla = next(r for r in table_rows if r["model"] == model and r["attention"] == "MLA")
            pair = [mha, mla]
            chart = HBarChart(
                [r["kv_elements_per_token"] for r in pair],
                [r["attention"] for r in pair],
                colors=[CACHE, LATENT],
                name_colors=[CACHE, LATENT],
                value_labels=[_kilo(r["kv_elements_per_token"]) for r in pair],
                max_value=biggest,
                length=6.0,
                bar_height=0.55,
                row_gap=0.3,
                label_size=LABEL_SIZE + 2,
            )
            name = text(model, BODY_SIZE, TEXT_COLOR)
            name.next_to(chart, UP, buff=0.25).align_to(chart.names, LEFT)
            scores = VGroup(*(text(f"{r['mmlu']:.1f}", LABEL_SIZE + 2, TEXT_COLOR) for r in pair))
            groups.add(VGroup(name, chart, scores))
            share = mla["kv_elements_per_token"] / mha["kv_elements_per_token"]
            gain = mla["mmlu"] - mha["mmlu"]
            savings.append((model, gain, share))
            verdicts.add(
                text(
                    f"MLA: {'+' if gain >= 0 else MINUS}{abs(gain):.1f} MMLU "
                    f"with {fmt_percent(share, 0)} of the cache",
                    LABEL_SIZE,
                    LATENT,
                )
            )
        groups.arrange(DOWN, buff=0.8, aligned_edge=LEFT)
        score_x = max(g[1].get_right()[0] for g in groups) + 1.4
        for group, verdict in zip(groups, verdicts, strict=True):
            chart, scores = group[1], group[2]
            for score, bar in zip(scores, chart.bars, strict=True):
                score.move_to([score_x, bar.get_center()[1], 0], aligned_edge=RIGHT)
            verdict.next_to(scores, RIGHT, buff=0.6)
        kv_header = text("KV cache per token (numbers)", LABEL_SIZE, MUTED)
        kv_header.next_to(groups, UP, buff=0.3).align_to(groups[0][1].bars, LEFT)
        mmlu_header = text("MMLU", LABEL_SIZE, MUTED)
        mmlu_header.match_y(kv_header).align_to(groups[0][2], RIGHT)
        page2 = VGroup(kv_header, mmlu_header, groups, verdicts)
        fit_in(page2, CONTENT_ZONE)
        heading2 = title("In DeepSeek's ablation, MLA beats MHA")
        source2 = caption(f"{ablation['citation']}; MoE models, 5-shot MMLU (%)")
        shown["ablation"] = {
            f"{r['model']} {r['attention']}": {
                "mmlu": f"{r['mmlu']:.1f}",
                "kv_per_token": _kilo(r["kv_elements_per_token"]),
            }
            for r in table_rows
        }
        shown["ablation_verdicts"] = [v.original_text for v in verdicts]
        self.shown_numbers = shown

        small, large = savings[0], savings[-1]
        verdict = "higher than" if all(gain > 0 for _, gain, _ in savings) else "close to"
        with self.beat(
            f"And in the paper's ablation, MLA scored {verdict} multi-head attention on MMLU, "
            f"with {fmt_percent(small[2], 0)} of its cache in the {small[0]} and "
            f"{fmt_percent(large[2], 0)} in the {large[0]}."
        ):
            self.play(
                FadeOut(page1),
                FadeOut(source1),
                ReplacementTransform(heading, heading2),
                run_time=1.2,
            )
            self.play(FadeIn(kv_header), FadeIn(mmlu_header), FadeIn(source2), run_time=0.8)
            for group in groups:
                name, chart, scores = group
                self.play(FadeIn(name), FadeIn(chart.axis), FadeIn(chart.names), run_time=0.8)
                self.play(
                    LaggedStart(*(GrowFromEdge(b, LEFT) for b in chart.bars), lag_ratio=0.5),
                    run_time=1.4,
                )
                self.play(FadeIn(chart.value_labels), FadeIn(scores), run_time=0.8)
                self.wait(1.0)
            self.play(LaggedStart(*(Write(v) for v in verdicts), lag_ratio=0.6), run_time=2.0)
            self.play(*(Indicate(g[2][1], color=LATENT) for g in groups), run_time=1.2)
            self.wait(3)

        # --- page 3: the same comparison, trained on this machine ---------------------------
        trained = data["trained"]
        page3, source3, trained_shown = _trained_page(trained)
        shown["trained"] = trained_shown
        self.shown_numbers = shown
        heading3 = title("Trained here: four kinds of attention")
        shape = trained["shape"]
        with self.beat(
            f"We trained four small models on this machine, {fmt_int(shape['steps'])} steps "
            "each on the same text, in the same order: only the attention differs."
        ):
            self.play(
                FadeOut(page2),
                FadeOut(source2),
                ReplacementTransform(heading2, heading3),
                run_time=1.2,
            )
            header, chart, losses, verdict = page3
            self.play(FadeIn(header), FadeIn(source3), run_time=0.8)
            self.play(FadeIn(chart.axis), FadeIn(chart.names), run_time=0.8)
            self.play(
                LaggedStart(*(GrowFromEdge(b, LEFT) for b in chart.bars), lag_ratio=0.3),
                run_time=1.6,
            )
            self.play(FadeIn(chart.value_labels), run_time=0.8)
        with self.beat(_trained_verdict_line(trained)):
            self.play(LaggedStart(*(FadeIn(v) for v in losses), lag_ratio=0.3), run_time=1.6)
            self.play(Write(verdict), run_time=1.5)
            self.play(Indicate(losses[-1], color=LATENT), run_time=1.2)
            self.wait(3)


def _trained_page(trained: dict) -> tuple[VGroup, Text, dict]:
    """Page 3: one bar per kind (cache bytes per token, all layers), its validation loss to the
    right, and one line comparing MLA with multi-head attention. Also the caption and the
    numbers as shown."""
    runs = trained["runs"]
    chart = HBarChart(
        [r["cache_bytes_per_token"] for r in runs],
        [r["label"] for r in runs],
        colors=[LATENT if r["kind"] == "mla" else CACHE for r in runs],
        name_colors=[LATENT if r["kind"] == "mla" else CACHE for r in runs],
        value_labels=[fmt_bytes(r["cache_bytes_per_token"]) for r in runs],
        length=6.0,
        bar_height=0.55,
        row_gap=0.35,
        label_size=LABEL_SIZE + 2,
    )
    loss_x = chart.get_right()[0] + 2.2
    losses = VGroup()
    for run, bar in zip(runs, chart.bars, strict=True):
        color = LATENT if run["kind"] == "mla" else TEXT_COLOR
        value = text(fmt_float(run["val_loss"], LOSS_DIGITS), LABEL_SIZE + 2, color)
        losses.add(value.move_to([loss_x, bar.get_center()[1], 0], aligned_edge=RIGHT))
    bytes_header = text("KV cache per token, all layers (bf16)", LABEL_SIZE, MUTED)
    bytes_header.next_to(chart, UP, buff=0.3).align_to(chart.bars, LEFT)
    loss_header = text("validation loss", LABEL_SIZE, MUTED)
    loss_header.match_y(bytes_header).align_to(losses, RIGHT)
    against = trained["mla_against"]["mha"]
    sign = "+" if against["loss_difference"] >= 0 else MINUS
    verdict = text(
        f"MLA against MHA: loss {sign}{fmt_float(abs(against['loss_difference']), LOSS_DIGITS)} "
        f"with {fmt_percent(against['cache_share'], 0)} of the cache",
        LABEL_SIZE + 2,
        LATENT,
    )
    verdict.next_to(VGroup(chart, losses), DOWN, buff=0.6)
    page = VGroup(VGroup(bytes_header, loss_header), chart, losses, verdict)
    fit_in(page, CONTENT_ZONE)
    shape, data = trained["shape"], trained["data"]
    source = caption(
        f"python -m mla_core ablation: {shape['n_layer']} layers, {shape['n_head']} heads "
        f"{TIMES} {shape['head_dim']}, seed {trained['seed']}; "
        f"{fmt_int(data['validation_tokens'])} held-out tokens"
    )
    shown = {
        r["label"]: {
            "cache_bytes_per_token": fmt_bytes(r["cache_bytes_per_token"]),
            "val_loss": fmt_float(r["val_loss"], LOSS_DIGITS),
        }
        for r in runs
    }
    shown["verdict"] = verdict.original_text
    return page, source, shown


def _trained_verdict_line(trained: dict) -> str:
    """What the runs measured, said plainly: MLA's loss beside MHA's and how far apart all four
    are (one seed each, so a spread this small is not a ranking)."""
    by_kind = {r["kind"]: r for r in trained["runs"]}
    mla, mha = by_kind["mla"], by_kind["mha"]
    losses = [r["val_loss"] for r in trained["runs"]]
    against = trained["mla_against"]["mha"]
    return (
        f"MLA's validation loss is {fmt_float(mla['val_loss'], LOSS_DIGITS)}, multi-head "
        f"attention's {fmt_float(mha['val_loss'], LOSS_DIGITS)}: all four lie within "
        f"{fmt_float(max(losses) - min(losses), LOSS_DIGITS)} of each other, too close to rank "
        f"with one run each, and MLA keeps {fmt_percent(against['cache_share'], 0)} of the "
        "multi-head cache."
    )
