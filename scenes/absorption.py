"""Beat 8: absorption. W_UK folds into the query, W_UV into the output projection.

First the algebra: q . k = (W_UQ c_Q) . (W_UK c_KV) = c_Q^T (W_UQ^T W_UK) c_KV, and the value
side o = W_O W_UV sum_t p_t c_KV,t. Then one real head of the GPT-2 converted to MLA scores
every key of the last query both ways (naive: expand the key, then q . k; absorbed: fold W_UK
into the query, score the cached latent), and the largest difference over all scores. Last,
what it buys: attention reads the cached latents (T x r) as they are, and nothing per head is
expanded (the naive path would build H keys and H values of width D per cached token).
Data: `mla_core.scene_data.absorption`.
"""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Brace,
    Cross,
    FadeIn,
    FadeOut,
    Group,
    LaggedStart,
    SurroundingRectangle,
    VGroup,
    Write,
)

from scenes.components import (
    BODY_SIZE,
    CONTENT_ZONE,
    HIGHLIGHT,
    KEY,
    LABEL_SIZE,
    LATENT,
    MINUS,
    MUTED,
    QUERY,
    TEXT_COLOR,
    TIMES,
    VALUE,
    Heatmap,
    VideoScene,
    Zone,
    caption,
    colored_math,
    diverging_scale,
    fit_in,
    fmt_float,
    fmt_int,
    fmt_ratio,
    math_tex,
    say_ratio,
    say_sci,
    say_token,
    sci_tex,
    sci_text,
    text,
    title,
)

NUMBER_SIZE = LABEL_SIZE * 0.85

# q . k = (W_UQ c_Q)^T (W_UK c_KV) = c_Q^T (W_UQ^T W_UK) c_KV; pieces 13..16 are the folded factor
SCORE_PARTS = [
    (r"q^{\top}", QUERY),
    ("k", KEY),
    "=",
    "(",
    ("W_{UQ}", QUERY),
    ("c_Q", QUERY),
    r")^{\top}",
    "(",
    ("W_{UK}", KEY),
    ("c_{KV}", LATENT),
    ")",
    "=",
    (r"c_Q^{\top}", QUERY),
    "(",
    (r"W_{UQ}^{\top}", QUERY),
    ("W_{UK}", KEY),
    ")",
    ("c_{KV}", LATENT),
]
FOLDED_QUERY = slice(13, 17)
# o = W_O W_UV sum_t p_t c_KV,t : W_UV meets W_O, never the cache
OUTPUT_PARTS = [
    ("o", VALUE),
    "=",
    ("W_O", TEXT_COLOR),
    ("W_{UV}", VALUE),
    r"\sum_t",
    ("p_t", HIGHLIGHT),
    ("c_{KV,t}", LATENT),
]
FOLDED_OUTPUT = slice(2, 4)


class Absorption(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        tokens, head = data["tokens"], data["head"]
        r = int(data["focus_row"])
        naive = np.asarray(data["dots_naive"])[r]
        absorbed = np.asarray(data["dots_absorbed"])[r]
        bias = float(np.asarray(data["bias_part"])[r])
        c_kv, keys, values = (np.asarray(data[n]) for n in ("c_kv", "keys", "values"))
        rank, n_heads, head_dim = data["rank"], data["n_heads"], data["head_dim"]
        sizes = data["sizes"]
        n_tokens = len(tokens)

        heading = title("Absorption: attention straight from the cached latents")
        source = caption(self.inputs.model_caption)

        # --- the algebra ------------------------------------------------------------------
        score_eq = colored_math(SCORE_PARTS, size=BODY_SIZE + 4)
        output_eq = colored_math(OUTPUT_PARTS, size=BODY_SIZE + 4)
        fold_q = Brace(score_eq[FOLDED_QUERY], DOWN, color=MUTED)
        fold_q_note = text("one matrix: folds into the query side", LABEL_SIZE, QUERY)
        fold_q_note.next_to(fold_q, DOWN, buff=0.12)
        fold_o = Brace(output_eq[FOLDED_OUTPUT], DOWN, color=MUTED)
        fold_o_note = text("one matrix: folds into the output projection", LABEL_SIZE, VALUE)
        fold_o_note.next_to(fold_o, DOWN, buff=0.12)
        score_block = VGroup(score_eq, fold_q, fold_q_note)
        output_block = VGroup(output_eq, fold_o, fold_o_note)
        algebra = VGroup(score_block, output_block).arrange(DOWN, buff=0.7)
        fit_in(algebra, CONTENT_ZONE)

        with self.beat(
            "A query meets a key in a dot product. In MLA the key is W_UK times the cached latent, "
            "so the product regroups: W_UK folds into the query side, one matrix with W_UQ."
        ):
            self.play(Write(heading), FadeIn(source), run_time=1.2)
            self.play(Write(score_eq), run_time=2.5)
            self.wait(1)
            self.play(FadeIn(fold_q), FadeIn(fold_q_note, shift=0.1 * UP), run_time=1)
            self.wait(1.5)
        with self.beat("The values do the same: W_UV folds into the output projection."):
            self.play(Write(output_eq), run_time=1.5)
            self.play(FadeIn(fold_o), FadeIn(fold_o_note, shift=0.1 * UP), run_time=1)
            self.wait(2)

        with self.beat(
            f"In layer {head['layer']}, head {head['head']} of our model converted to MLA, "
            f"the query {say_token(tokens[r])} scores every key both ways, and the rows agree: "
            "the largest "
            f"difference is {say_sci(data['max_abs_diff'])}, in {data['exact_dtype']}."
        ):
            # --- one head, both ways, the live numbers -----------------------------------------
            top_zone = Zone(
                CONTENT_ZONE.left, CONTENT_ZONE.right, CONTENT_ZONE.top - 0.9, CONTENT_ZONE.top
            )
            self.play(
                FadeOut(output_block),
                FadeOut(fold_q),
                FadeOut(fold_q_note),
                score_eq.animate.scale(
                    min(top_zone.height / score_eq.height, top_zone.width / score_eq.width, 0.8)
                ).move_to(top_zone.center),
                run_time=1.2,
            )

            token_row = VGroup(*(text(t, NUMBER_SIZE, KEY) for t in tokens))
            naive_row = VGroup(*(text(fmt_float(x, 3), NUMBER_SIZE, TEXT_COLOR) for x in naive))
            absorbed_row = VGroup(
                *(text(fmt_float(x, 3), NUMBER_SIZE, TEXT_COLOR) for x in absorbed)
            )
            column_w = max(m.width for m in [*token_row, *naive_row, *absorbed_row]) + 0.3
            for row in (token_row, naive_row, absorbed_row):
                for j, m in enumerate(row):
                    m.move_to([j * column_w, 0, 0])
            naive_row.next_to(token_row, DOWN, buff=0.45).align_to(token_row, LEFT)
            absorbed_row.next_to(naive_row, DOWN, buff=0.75).align_to(token_row, LEFT)
            for row in (naive_row, absorbed_row):  # numbers centred under their key
                for m, key in zip(row, token_row, strict=True):
                    m.set_x(key.get_x())
            naive_label = VGroup(
                text("naive", LABEL_SIZE, MUTED),
                colored_math(
                    [("q", QUERY), r"\cdot", ("k_t", KEY)],
                    size=LABEL_SIZE,
                ),
            ).arrange(DOWN, buff=0.08)
            absorbed_label = VGroup(
                text("absorbed", LABEL_SIZE, MUTED),
                colored_math(
                    [
                        ("q_{\\mathrm{lat}}", QUERY),
                        r"\cdot",
                        ("c_{KV,t}", LATENT),
                        "+",
                        ("q", QUERY),
                        r"\cdot",
                        ("b_K", KEY),
                    ],
                    size=LABEL_SIZE,
                ),
            ).arrange(DOWN, buff=0.08)
            labels_x = token_row.get_left()[0] - 0.5
            naive_label.move_to([labels_x, naive_row.get_y(), 0], aligned_edge=RIGHT)
            absorbed_label.move_to([labels_x, absorbed_row.get_y(), 0], aligned_edge=RIGHT)
            key_label = text("key", LABEL_SIZE, MUTED)
            key_label.move_to([labels_x, token_row.get_y(), 0], aligned_edge=RIGHT)
            q_latent_def = colored_math(
                [
                    ("q_{\\mathrm{lat}}", QUERY),
                    "=",
                    ("W_{UK}^{\\top}", KEY),
                    ("q", QUERY),
                    r"\quad",
                    ("q", QUERY),
                    r"\cdot",
                    ("b_K", KEY),
                    "=",
                    fmt_float(bias, 3).replace("\u2212", "-"),
                ],
                size=LABEL_SIZE,
            )
            q_latent_def.next_to(absorbed_row, DOWN, buff=0.4).align_to(token_row, LEFT)
            query_note = text(
                f"layer {head['layer']}, head {head['head']} of the GPT-2 converted to MLA "
                f"(r = {rank}): the query {tokens[r]} against every key",
                LABEL_SIZE,
                QUERY,
            )
            diff_line = VGroup(
                text(
                    f"largest |naive {MINUS} absorbed| over all {n_tokens * n_tokens} scores:",
                    LABEL_SIZE,
                    TEXT_COLOR,
                ),
                math_tex(sci_tex(data["max_abs_diff"]), size=LABEL_SIZE, color=HIGHLIGHT),
                text(f"({data['exact_dtype']})", LABEL_SIZE, MUTED),
            ).arrange(RIGHT, buff=0.18)
            run_line = VGroup(
                text(f"as the model runs ({data['run_dtype']}):", LABEL_SIZE * 0.85, MUTED),
                math_tex(sci_tex(data["run_max_abs_diff"]), size=LABEL_SIZE * 0.85, color=MUTED),
            ).arrange(RIGHT, buff=0.15)
            table = VGroup(
                key_label,
                token_row,
                naive_label,
                naive_row,
                absorbed_label,
                absorbed_row,
                q_latent_def,
            )
            query_note.next_to(table, UP, buff=0.35).align_to(table, LEFT)
            diff_block = VGroup(diff_line, run_line).arrange(DOWN, buff=0.15)
            diff_block.next_to(table, DOWN, buff=0.45)
            live = VGroup(query_note, table, diff_block)
            fit_in(
                live,
                Zone(
                    CONTENT_ZONE.left,
                    CONTENT_ZONE.right,
                    CONTENT_ZONE.bottom,
                    top_zone.bottom - 0.2,
                ),
            )

            self.play(FadeIn(query_note), FadeIn(key_label), FadeIn(token_row), run_time=1)
            self.play(
                FadeIn(naive_label),
                LaggedStart(*(FadeIn(m) for m in naive_row), lag_ratio=0.15),
                run_time=1.8,
            )
            self.wait(0.8)
            self.play(FadeIn(absorbed_label), FadeIn(q_latent_def), run_time=1)
            self.play(LaggedStart(*(FadeIn(m) for m in absorbed_row), lag_ratio=0.15), run_time=1.8)
            self.wait(0.8)
            self.play(FadeIn(diff_line), run_time=1)
            self.play(FadeIn(run_line), run_time=0.8)
            self.wait(2.5)

        # --- what it buys: the cache is read as it is, nothing is expanded -------------------
        with self.beat(
            "So attention reads the cached latents as they are. The naive path would expand each "
            f"cached token into {fmt_int(sizes['expanded'])} numbers of keys and values, "
            f"{say_ratio(sizes['expanded'] / sizes['latent'])} the cache; absorbed, none is built."
        ):
            self.play(FadeOut(live), FadeOut(score_eq), run_time=1)
            everything_shown = np.concatenate([c_kv.ravel(), keys.ravel(), values.ravel()])
            scale = diverging_scale(
                float(np.percentile(np.abs(everything_shown), 98)), "latents, keys and values"
            )
            ratio = sizes["expanded"] / sizes["latent"]
            # one row per tensor, left-aligned, one cell size for all: widths compare honestly
            row_labels = [
                VGroup(
                    VGroup(
                        text("cache", LABEL_SIZE, LATENT),
                        math_tex("c_{KV}", size=LABEL_SIZE, color=LATENT),
                    ).arrange(RIGHT, buff=0.12),
                    text(f"{n_tokens} tokens {TIMES} {rank}", LABEL_SIZE * 0.85, MUTED),
                ),
                VGroup(
                    text("keys", LABEL_SIZE, KEY),
                    text(
                        f"{n_heads} heads {TIMES} {head_dim} = {fmt_int(sizes['keys'])}",
                        LABEL_SIZE * 0.85,
                        MUTED,
                    ),
                ),
                VGroup(
                    text("values", LABEL_SIZE, VALUE),
                    text(
                        f"{n_heads} heads {TIMES} {head_dim} = {fmt_int(sizes['values'])}",
                        LABEL_SIZE * 0.85,
                        MUTED,
                    ),
                ),
            ]
            for label in row_labels:
                label.arrange(DOWN, buff=0.08, aligned_edge=RIGHT)
            label_w = max(label.width for label in row_labels) + 0.35
            header = text("the naive path would expand every cached token into", LABEL_SIZE, MUTED)
            verdict = text(
                f"absorbed: none of these {fmt_int(sizes['expanded'])} numbers is built "
                f"({fmt_ratio(ratio)} the cache), in any layer",
                LABEL_SIZE,
                LATENT,
            )
            cache_note = text("attention reads the cache as it is", LABEL_SIZE, LATENT)
            widest = max(keys.shape[1], values.shape[1], rank)
            text_h = 2 * header.height + verdict.height + 1.6
            cell = min(
                (CONTENT_ZONE.width - label_w - 0.2) / widest,
                (CONTENT_ZONE.height - text_h) / (3 * n_tokens * 1.9),
            )
            maps = [Heatmap(m, scale, cell_size=cell, grid=False) for m in (c_kv, keys, values)]
            gap = max(n_tokens * cell * 0.9, row_labels[0].height + 0.2)
            left = CONTENT_ZONE.left + label_w
            y = 0.0
            for i, (label, heatmap) in enumerate(zip(row_labels, maps, strict=True)):
                if i == 1:  # room for the header above the expanded keys and values
                    y -= header.height + 0.4
                heatmap.move_to([left, y, 0], aligned_edge=LEFT + UP)
                label.move_to([left - 0.35, heatmap.get_y(), 0], aligned_edge=RIGHT)
                y -= heatmap.height + gap
            cache_box = SurroundingRectangle(maps[0], color=LATENT, buff=0.06)
            cache_note.next_to(cache_box, RIGHT, buff=0.4)
            header.next_to(maps[1], UP, buff=gap / 2).align_to(maps[1], LEFT)
            picture = Group(*row_labels, *maps, cache_box, cache_note, header)
            verdict.next_to(picture, DOWN, buff=0.45).align_to(maps[0], LEFT)
            layout = Group(picture, verdict)
            layout.shift(CONTENT_ZONE.center[1] * UP - layout.get_center()[1] * UP)
            if layout.width > CONTENT_ZONE.width or layout.height > CONTENT_ZONE.height:
                fit_in(layout, CONTENT_ZONE)
            expanded = Group(maps[1], maps[2])
            cross = Cross(expanded, stroke_color=MUTED, stroke_width=4)

            self.play(FadeIn(row_labels[0]), FadeIn(maps[0]), run_time=1.2)
            self.play(FadeIn(cache_box), FadeIn(cache_note), run_time=1)
            self.wait(1.2)
            self.play(FadeIn(header), run_time=0.8)
            self.play(FadeIn(row_labels[1]), FadeIn(maps[1]), run_time=1)
            self.play(FadeIn(row_labels[2]), FadeIn(maps[2]), run_time=1)
            self.wait(1.2)
            self.play(FadeIn(cross), expanded.animate.fade(0.65), run_time=1)
            self.play(FadeIn(verdict), run_time=1)
            self.wait(3)

        self.shown_numbers = {
            "head": f"{head['layer']}.{head['head']}",
            "rank": rank,
            "query": tokens[r],
            "keys": list(tokens),
            "naive_row": [m.original_text for m in naive_row],
            "absorbed_row": [m.original_text for m in absorbed_row],
            "bias_part": fmt_float(bias, 3),
            "max_abs_diff": sci_text(data["max_abs_diff"]),
            "max_abs_diff_dtype": data["exact_dtype"],
            "run_max_abs_diff": sci_text(data["run_max_abs_diff"]),
            "run_dtype": data["run_dtype"],
            "latent_per_token": rank,
            "keys_per_token": fmt_int(sizes["keys"]),
            "values_per_token": fmt_int(sizes["values"]),
            "expanded_per_token": fmt_int(sizes["expanded"]),
            "expanded_over_cache": fmt_ratio(ratio),
        }
