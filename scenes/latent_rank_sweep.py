"""Beat 7b: how small can the latent be? The video's GPT-2 converted to MLA at several ranks.

Three panels share one log-scale x axis, the cache bytes per token of each rank: top-1
agreement with the original model, perplexity of held-out text, and the attention KL from
the original patterns (the sweep of `mla_core.analysis.mla_sweep`). Then one head's pattern
at three ranks beside the original, on the fixed PATTERN_SCALE. Then why rank n_embd is
exact while caching half of MHA: [W_K; W_V] is 2 n_embd x n_embd, so it has at most n_embd
singular values. Data: `mla_core.scene_data.latent_rank_sweep`.
"""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Brace,
    Create,
    FadeIn,
    FadeOut,
    Group,
    VGroup,
    Write,
)

from scenes.components import (
    BODY_SIZE,
    CAPTION_SIZE,
    CONTENT_ZONE,
    HIGHLIGHT,
    LABEL_SIZE,
    LATENT,
    MINUS,
    MUTED,
    PATTERN_SCALE,
    TEXT_COLOR,
    ColorBar,
    Heatmap,
    MatrixHeatmap,
    VideoScene,
    XYPlot,
    caption,
    diverging_scale,
    fit_in,
    fmt_float,
    fmt_int,
    fmt_percent,
    math_tex,
    nice_ticks,
    shape_text,
    text,
    title,
)


def fmt_small(x: float) -> str:
    """A tiny non-negative number: '2.1e-13' style below 0.01, else two decimals."""
    if x < 0.01:
        return f"{x:.1e}".replace("-", MINUS)
    return fmt_float(x, 3)


class LatentRankSweep(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        sweep = data["sweep"]
        ranks = [int(r) for r in data["ranks"]]
        cache = [int(b) for b in data["cache_bytes_per_token"]]
        top1 = [float(x) for x in data["top1_agreement"]]
        perplexity = [float(x) for x in data["perplexity"]]
        kl = [float(x) for x in data["attention_kl"]]
        mha = int(sweep["mha_cache_bytes_per_token"])
        baseline = float(sweep["baseline_perplexity"])
        n_embd, head = int(data["n_embd"]), data["head"]
        dtype_bytes = int(sweep["dtype_bytes"])

        heading = title("How small can the latent be?")
        source = caption(self.inputs.model_caption)

        # --- 1. the sweep: three panels, one log x axis
        x_range = (cache[0] / 1.5, mha * 1.5)
        width, height = 10.0, 0.95
        ppl_top = max(perplexity + [baseline]) * 1.1
        kl_top = max(kl) * 1.15
        panels = [
            XYPlot(
                x_range,
                (0.0, 1.0),
                width=width,
                height=height,
                x_log=True,
                y_ticks=[(0.0, "0%"), (0.5, "50%"), (1.0, "100%")],
                y_label="top-1 agreement with the original model",
            ),
            XYPlot(
                x_range,
                (0.0, ppl_top),
                width=width,
                height=height,
                x_log=True,
                y_ticks=[(t, fmt_int(t)) for t in nice_ticks(0.0, ppl_top, 2)],
                y_label=f"perplexity of {fmt_int(sweep['text']['scored_tokens'])} held-out "
                "tokens (lower is better)",
            ),
            XYPlot(
                x_range,
                (0.0, kl_top),
                width=width,
                height=height,
                x_log=True,
                y_ticks=[(t, fmt_float(t, 2)) for t in nice_ticks(0.0, kl_top, 2)],
                y_label="attention KL from the original patterns (nats)",
                x_ticks=[(b, fmt_int(b)) for b in cache],
            ),
        ]
        VGroup(*panels).arrange(DOWN, buff=0.45)
        for p in panels[1:]:  # line the axes up (tick labels differ in width)
            p.shift((panels[0].axes.get_left()[0] - p.axes.get_left()[0]) * RIGHT)
        bottom = panels[-1]
        rank_labels = VGroup(
            *(
                text(f"r={r}", CAPTION_SIZE, LATENT).next_to(label, DOWN, buff=0.08)
                for r, label in zip(ranks, bottom.x_tick_labels, strict=True)
            )
        )
        x_title = text(
            f"cache bytes per token ({dtype_bytes} bytes a number, log scale); r = latent rank",
            CAPTION_SIZE,
            TEXT_COLOR,
        ).next_to(rank_labels, DOWN, buff=0.15)
        mha_lines = VGroup(*(p.vline(mha) for p in panels))
        mha_label = VGroup(
            text(fmt_int(mha), CAPTION_SIZE, MUTED), text("MHA", CAPTION_SIZE, MUTED)
        )
        mha_label.arrange(DOWN, buff=0.08).next_to(mha_lines[-1], DOWN, buff=0.18)
        references = VGroup(panels[0].hline(1.0), panels[1].hline(baseline), panels[2].hline(0.0))
        notes = VGroup(
            *(
                text(s, CAPTION_SIZE, MUTED).next_to(line.get_end(), RIGHT, buff=0.1)
                for s, line in zip(
                    ("original: 100%", f"original: {fmt_float(baseline, 0)}", "original: 0"),
                    references,
                    strict=True,
                )
            )
        )
        chart = VGroup(*panels, rank_labels, x_title, mha_lines, mha_label, references, notes)
        fit_in(chart, CONTENT_ZONE, allow_grow=True)
        curves = [
            p.plot(cache, ys, LATENT) for p, ys in zip(panels, (top1, perplexity, kl), strict=True)
        ]
        with self.beat(
            f"How small can the latent be? The model is converted at every rank from {ranks[0]} "
            f"to {ranks[-1]}, and each version is tested on held-out text."
        ):
            self.play(Write(heading), FadeIn(source), run_time=1.2)
            self.play(FadeIn(VGroup(*panels, rank_labels, x_title)), run_time=1.2)
            self.play(FadeIn(references), FadeIn(notes), FadeIn(mha_lines), FadeIn(mha_label))
        with self.beat(
            f"At rank {ranks[0]} it still picks the same next token {fmt_percent(top1[0])} of the "
            f"time; at rank {ranks[-1]}, {fmt_percent(top1[-1])}."
        ):
            for curve in curves:
                self.play(Create(curve[0]), FadeIn(curve[1]), run_time=1.2)
                self.wait(0.8)
            self.wait(1.5)
        self.play(FadeOut(Group(chart, *curves)), run_time=0.8)

        with self.beat(
            f"Head {head['layer']}.{head['head']}'s attention at ranks "
            f"{', '.join(str(r) for r in data['pattern_ranks'])}, beside the original."
        ):
            # --- 2. one head's pattern at three ranks
            tokens = data["tokens"]
            patterns = np.asarray(data["patterns"])
            pattern_ranks = [int(r) for r in data["pattern_ranks"]]
            row_of = {r: i for i, r in enumerate(ranks)}
            cell = 2.6 / len(tokens)
            maps, labels = [], []
            for i, pattern in enumerate(patterns):
                maps.append(
                    Heatmap(
                        pattern,
                        PATTERN_SCALE,
                        cell_size=cell,
                        row_labels=tokens if i == 0 else None,
                        label_size=LABEL_SIZE * 0.7,
                    )
                )
                if i == 0:
                    lines = [("original (MHA)", TEXT_COLOR), (f"{fmt_int(mha)} B/token", MUTED)]
                else:
                    r = pattern_ranks[i - 1]
                    j = row_of[r]
                    lines = [
                        (f"rank {r}", LATENT),
                        (f"{fmt_int(cache[j])} B/token", MUTED),
                        (f"top-1 {fmt_percent(top1[j])}", MUTED),
                    ]
                labels.append(
                    VGroup(*(text(s, LABEL_SIZE * 0.8, c) for s, c in lines)).arrange(
                        DOWN, buff=0.08
                    )
                )
            for m, label in zip(maps, labels, strict=True):
                label.next_to(m.image, UP, buff=0.2)
            cells = [Group(m, label) for m, label in zip(maps, labels, strict=True)]
            row = Group(*cells).arrange(RIGHT, buff=0.6, aligned_edge=DOWN)
            bar = ColorBar(PATTERN_SCALE, height=2.2).next_to(row, RIGHT, buff=0.4)
            bar_label = text("attention", CAPTION_SIZE, MUTED).next_to(bar, UP, buff=0.1)
            head_note = text(
                f"head {head['layer']}.{head['head']} on the prompt, each converted model run "
                "end to end; rows: queries, columns: keys",
                LABEL_SIZE * 0.8,
                MUTED,
            )
            figure = Group(row, bar, bar_label)
            head_note.next_to(figure, DOWN, buff=0.5)
            fit_in(Group(figure, head_note), CONTENT_ZONE, allow_grow=True)
            self.play(FadeIn(cells[0]), FadeIn(bar), FadeIn(bar_label), FadeIn(head_note))
            for c in cells[1:]:
                self.play(FadeIn(c, shift=0.2 * LEFT), run_time=1)
                self.wait(0.6)
            self.wait(2)
        self.play(FadeOut(Group(figure, head_note)), run_time=0.8)

        with self.beat(
            f"At rank {n_embd}, the model's width, the conversion is exact while caching half of "
            f"multi-head attention: the stacked key and value weights have {n_embd} columns, so "
            "their rank is at most that, and nothing is cut."
        ):
            # --- 3. why rank n_embd is exact
            w_kv = np.asarray(data["w_kv"])
            s = np.asarray(data["singular_values"])
            n_rows, n_cols = data["w_kv_shape"]
            full = row_of[n_embd]
            w_scale = diverging_scale(float(np.percentile(np.abs(w_kv), 98)), "weight")
            matrix = MatrixHeatmap(w_kv, w_scale, cell=4.2 / n_rows, max_rows=4096, max_cols=4096)
            halves = VGroup(
                math_tex("W_K", size=LABEL_SIZE, color=MUTED).next_to(
                    matrix.heatmap.get_corner(UP + LEFT), LEFT, buff=0.15
                ),
            )
            halves[0].shift(DOWN * matrix.heatmap.height / 4)
            halves.add(
                math_tex("W_V", size=LABEL_SIZE, color=MUTED)
                .next_to(matrix.heatmap.get_corner(DOWN + LEFT), LEFT, buff=0.15)
                .shift(UP * matrix.heatmap.height / 4)
            )
            brace = Brace(matrix.heatmap, DOWN, color=MUTED)
            m_label = VGroup(
                VGroup(
                    math_tex(r"[W_K;\,W_V]", size=LABEL_SIZE * 0.85),
                    text(f"of layer {head['layer']}", LABEL_SIZE * 0.85),
                ).arrange(RIGHT, buff=0.15),
                text(f"{shape_text(n_rows, n_cols)}: rank at most {n_cols}", LABEL_SIZE * 0.85),
            ).arrange(DOWN, buff=0.08)
            m_label.next_to(brace, DOWN, buff=0.1)
            left = Group(matrix, halves, brace, m_label)

            spectrum = XYPlot(
                (1, len(s)),
                (0.0, float(s[0]) * 1.1),
                width=5.5,
                height=2.6,
                y_ticks=[(t, fmt_float(t, 1)) for t in nice_ticks(0.0, float(s[0]) * 1.1, 2)],
                x_ticks=[(1, "1"), (len(s) // 2, str(len(s) // 2)), (len(s), str(len(s)))],
                y_label=f"its {len(s)} singular values, largest first",
            )
            curve = spectrum.plot(list(range(1, len(s) + 1)), s.tolist(), HIGHLIGHT)
            curve[1].set_opacity(0)  # a line, no dots: there are n_embd of them
            end_note = text(f"no singular value {len(s) + 1}: nothing to cut", CAPTION_SIZE, MUTED)
            # top right of the plot: clear of a falling curve, ending at the last singular value
            end_note.move_to(spectrum.to_point(len(s), float(s[0]) * 1.05), aligned_edge=RIGHT)
            facts = VGroup(
                text(f"rank {n_embd}, the model's width: exact", BODY_SIZE, LATENT),
                text(
                    f"top-1 agreement {fmt_percent(top1[full])}, "
                    f"attention KL {fmt_small(kl[full])}",
                    LABEL_SIZE,
                    TEXT_COLOR,
                ),
                text(
                    f"while caching {fmt_int(cache[full])} of {fmt_int(mha)} bytes per token "
                    f"({fmt_percent(cache[full] / mha)} of MHA)",
                    LABEL_SIZE,
                    TEXT_COLOR,
                ),
            ).arrange(DOWN, buff=0.2, aligned_edge=LEFT)
            right = Group(Group(spectrum, curve, end_note), facts).arrange(
                DOWN, buff=0.6, aligned_edge=LEFT
            )
            layout = Group(left, right).arrange(RIGHT, buff=1.0)
            fit_in(layout, CONTENT_ZONE)
            self.play(FadeIn(matrix), FadeIn(halves), run_time=1)
            self.play(FadeIn(brace), FadeIn(m_label), run_time=1)
            self.wait(1)
            self.play(FadeIn(spectrum), run_time=0.8)
            self.play(Create(curve[0]), FadeIn(end_note), run_time=1.5)
            self.wait(1)
            for line in facts:
                self.play(FadeIn(line, shift=0.1 * UP), run_time=0.9)
            self.wait(3)

        self.shown_numbers = {
            "ranks": ranks,
            "cache_bytes_per_token": [fmt_int(b) for b in cache],
            "mha_bytes_per_token": fmt_int(mha),
            "top1_agreement": [fmt_percent(x) for x in top1],
            "perplexity": [fmt_float(x, 1) for x in perplexity],
            "baseline_perplexity": fmt_float(baseline, 0),
            "attention_kl": [fmt_small(x) for x in kl],
            "pattern_ranks": pattern_ranks,
            "w_kv_shape": shape_text(n_rows, n_cols),
            "exact_rank": {
                "rank": n_embd,
                "top1": fmt_percent(top1[full]),
                "kl": fmt_small(kl[full]),
                "fraction_of_mha": fmt_percent(cache[full] / mha),
            },
        }
