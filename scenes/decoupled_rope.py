"""Beat 9: decoupled RoPE. A rotation between W_UQ and W_UK would break absorption.

First the algebra: with RoPE on the content query and key, the folded matrix becomes
W_UQ^T R_m^T R_n W_UK, different for every pair of positions; live, one head's matrix at two
position pairs and the score of the same two content vectors at both. Then DeepSeek's fix:
q = [q_C ; q_R] per head and ONE RoPE key k_R per token shared by all heads; the content part
is absorbed as before, the RoPE part is a small extra dot product, and naive == absorbed.
Last, what is cached per token and layer: c_KV plus k_R (DeepSeek-V3: 512 + 64), and why
GPT-2's converted form needed none of this (learned positions, no RoPE).
Data: `mla_core.scene_data.decoupled_rope` (the project's small trained DeepSeek-style model;
without it, a seeded untrained one).
"""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Brace,
    FadeIn,
    FadeOut,
    Group,
    LaggedStart,
    Rectangle,
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
    Heatmap,
    VideoScene,
    Zone,
    caption,
    colored_math,
    diverging_scale,
    fit_in,
    fmt_float,
    fmt_int,
    math_tex,
    say_sci,
    sci_tex,
    sci_text,
    text,
    title,
)

NUMBER_SIZE = LABEL_SIZE * 0.85
DIGITS = 4  # scores of the small model: tenths (trained) or hundredths (untrained)

# q_m^T k_n = (R_m W_UQ c_Q)^T (R_n W_UK c_KV) = c_Q^T (W_UQ^T R_m^T R_n W_UK) c_KV
ROTATED_PARTS = [
    (r"q_m^{\top}", QUERY),
    ("k_n", KEY),
    "=",
    "(",
    ("R_m", HIGHLIGHT),
    ("W_{UQ}", QUERY),
    ("c_Q", QUERY),
    r")^{\top}",
    "(",
    ("R_n", HIGHLIGHT),
    ("W_{UK}", KEY),
    ("c_{KV}", LATENT),
    ")",
    "=",
    (r"c_Q^{\top}", QUERY),
    "(",
    (r"W_{UQ}^{\top}", QUERY),
    (r"R_m^{\top} R_n", HIGHLIGHT),
    ("W_{UK}", KEY),
    ")",
    ("c_{KV}", LATENT),
]
ROTATED_FOLD = slice(15, 20)
# per head i: q_i = [q_C ; q_R], k_i = [k_C ; k_R] with one k_R for every head
SPLIT_PARTS = [
    ("q_i", QUERY),
    "=",
    r"\big[",
    ("q_{C,i}", QUERY),
    ";",
    ("q_{R,i}", QUERY),
    r"\big]",
    r"\qquad",
    ("k_i", KEY),
    "=",
    r"\big[",
    ("k_{C,i}", KEY),
    ";",
    ("k_R", KEY),
    r"\big]",
]
SHARED_KEY = 13
SCORE_PARTS = [
    (r"q_i^{\top}", QUERY),
    ("k_i", KEY),
    "=",
    (r"(W_{UK,i}^{\top} q_{C,i})", QUERY),
    r"\cdot",
    ("c_{KV}", LATENT),
    "+",
    ("q_{R,i}", QUERY),
    r"\cdot",
    ("k_R", KEY),
]


def number_row(values: np.ndarray, color: str = TEXT_COLOR) -> VGroup:
    return VGroup(*(text(fmt_float(x, DIGITS), NUMBER_SIZE, color) for x in values))


class DecoupledRope(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        cfg, real = data["config"], data["real_config"]
        fold_a, fold_b = np.asarray(data["fold_a"]), np.asarray(data["fold_b"])
        pairs, pair_scores = data["position_pairs"], data["pair_scores"]
        q_rope = np.asarray(data["q_rope_heads"])  # (H, d_R)
        k_rope = np.asarray(data["k_rope_heads"])  # (H, T, d_R): the same for every head
        head, query = data["head"], data["query_index"]
        n_heads, n_tokens = q_rope.shape[0], k_rope.shape[1]

        heading = title("Decoupled RoPE: position gets its own small key")
        if data["trained"]:
            source = caption(
                f"the project's small DeepSeek-style model ({n_heads} heads, trained here), "
                f"layer {data['layer']}, on the video's prompt"
            )
        else:
            source = caption(
                f"small DeepSeek-style model ({n_heads} heads), randomly initialised "
                f"(seed {data['seed']}), untrained: the rotation maths needs no training"
            )

        # --- 1. a rotation in the middle cannot be folded
        rotated_eq = colored_math(ROTATED_PARTS, size=BODY_SIZE + 2)
        brace = Brace(rotated_eq[ROTATED_FOLD], DOWN, color=MUTED)
        brace_note = text(
            "changes with the positions m and n: nothing to precompute", LABEL_SIZE, HIGHLIGHT
        )
        brace_note.next_to(brace, DOWN, buff=0.1)
        algebra = VGroup(rotated_eq, brace, brace_note)
        fit_in(
            algebra,
            Zone(CONTENT_ZONE.left, CONTENT_ZONE.right, CONTENT_ZONE.top - 1.7, CONTENT_ZONE.top),
        )
        brace_note.align_to(brace, RIGHT)

        fold_scale = diverging_scale(
            float(np.percentile(np.abs(np.concatenate([fold_a.ravel(), fold_b.ravel()])), 98)),
            "folded W_UQ^T R W_UK",
        )
        # the matrices get the height the algebra leaves, less about three lines of text, so
        # that a tall fold (a trained model's 128 x 64) does not shrink the words around it
        room = algebra.get_bottom()[1] - 0.25 - CONTENT_ZONE.bottom - 1.2
        cell = min(0.1, room / fold_a.shape[0])
        panels = Group()
        for (m, n), matrix, score in zip(pairs, (fold_a, fold_b), pair_scores, strict=True):
            heatmap = Heatmap(matrix, fold_scale, cell_size=cell, grid=False)
            label = math_tex(f"m = {m},\\; n = {n}", size=LABEL_SIZE, color=HIGHLIGHT)
            label.next_to(heatmap, UP, buff=0.15)
            score_line = VGroup(
                text("score", LABEL_SIZE, MUTED),
                text(fmt_float(score, DIGITS), LABEL_SIZE, TEXT_COLOR),
            ).arrange(RIGHT, buff=0.15)
            score_line.next_to(heatmap, DOWN, buff=0.2)
            panels.add(Group(label, heatmap, score_line))
        not_equal = math_tex(r"\neq", size=BODY_SIZE + 10, color=HIGHLIGHT)
        pictures = Group(panels[0], not_equal, panels[1]).arrange(RIGHT, buff=0.8)
        shape = f"{fold_a.shape[0]} \u00d7 {fold_a.shape[1]}"
        same_note = VGroup(
            text(
                f"head {head}'s folded matrix ({shape}) at two position pairs;", LABEL_SIZE, MUTED
            ),
            VGroup(
                text("the same", LABEL_SIZE, MUTED),
                math_tex("c_Q", size=LABEL_SIZE, color=QUERY),
                text(f"(token {query}) and", LABEL_SIZE, MUTED),
                math_tex("c_{KV}", size=LABEL_SIZE, color=LATENT),
                text(f"(token {data['key_index']}) score differently", LABEL_SIZE, MUTED),
            ).arrange(RIGHT, buff=0.12),
        ).arrange(DOWN, buff=0.12)
        live = Group(pictures, same_note).arrange(DOWN, buff=0.35)
        fit_in(
            live,
            Zone(
                CONTENT_ZONE.left,
                CONTENT_ZONE.right,
                CONTENT_ZONE.bottom,
                algebra.get_bottom()[1] - 0.25,
            ),
            allow_grow=True,
        )

        with self.beat(
            "DeepSeek also rotates queries and keys by their positions, with RoPE. A rotation "
            "between W_UQ and W_UK changes with the positions: there is no single matrix to fold."
        ):
            self.play(Write(heading), FadeIn(source), run_time=1.2)
            self.play(Write(rotated_eq), run_time=2.5)
            self.play(FadeIn(brace), FadeIn(brace_note, shift=0.1 * UP), run_time=1)
            self.wait(1)
        with self.beat(
            f"At positions {pairs[0][0]} and {pairs[0][1]} the same two vectors score "
            f"{fmt_float(pair_scores[0], DIGITS)}; at {pairs[1][0]} and {pairs[1][1]}, "
            f"{fmt_float(pair_scores[1], DIGITS)}."
        ):
            self.play(FadeIn(panels[0]), run_time=1)
            self.play(FadeIn(not_equal), FadeIn(panels[1]), run_time=1)
            self.play(FadeIn(same_note), run_time=0.8)
            self.wait(2)

        with self.beat(
            "The fix: each head's query gets a small extra part, q_R, and all heads share one "
            f"extra key, k_R, of {real['qk_rope_head_dim']} numbers in DeepSeek-V3, "
            "rotated and cached."
        ):
            # --- 2. DeepSeek's fix: q = [q_C ; q_R], one k_R for every head
            self.play(FadeOut(Group(algebra, live)), run_time=1)
            split_eq = colored_math(SPLIT_PARTS, size=BODY_SIZE)
            score_eq = colored_math(SCORE_PARTS, size=BODY_SIZE)
            equations = VGroup(split_eq, score_eq).arrange(DOWN, buff=0.35)
            fit_in(
                equations,
                Zone(
                    CONTENT_ZONE.left,
                    CONTENT_ZONE.right - 3.5,
                    CONTENT_ZONE.top - 1.5,
                    CONTENT_ZONE.top,
                ),
            )
            shared_box = SurroundingRectangle(split_eq[SHARED_KEY], color=KEY, buff=0.08)
            shared_note = text(f"one for all {n_heads} heads, cached", LABEL_SIZE * 0.9, KEY)
            shared_note.next_to(shared_box, RIGHT, buff=0.25)
            equations_all = VGroup(equations, shared_box, shared_note)
            absorbed_brace = Brace(score_eq[3:6], DOWN, color=MUTED, buff=0.05)
            absorbed_note = text("absorbed, as before", LABEL_SIZE * 0.8, LATENT).next_to(
                absorbed_brace, DOWN, buff=0.05
            )
            rope_brace = Brace(score_eq[7:10], DOWN, color=MUTED, buff=0.05)
            rope_note = text(f"{cfg['qk_rope_head_dim']} numbers", LABEL_SIZE * 0.8, KEY).next_to(
                rope_brace, DOWN, buff=0.05
            )

            rope_scale = diverging_scale(
                float(np.percentile(np.abs(np.concatenate([q_rope.ravel(), k_rope.ravel()])), 98)),
                "RoPE query and key",
            )
            cell = 0.3
            q_map = Heatmap(
                q_rope,
                rope_scale,
                cell_size=cell,
                row_labels=[f"head {h}" for h in range(n_heads)],
                label_color=QUERY,
            )
            q_title = VGroup(
                math_tex("q_R", size=LABEL_SIZE, color=QUERY),
                text(f"of token {query}, per head", LABEL_SIZE * 0.85, MUTED),
            ).arrange(RIGHT, buff=0.12)
            q_title.next_to(q_map.image, UP, buff=0.2)
            k_maps = Group(
                *(
                    Heatmap(k_rope[h], rope_scale, cell_size=cell, grid=False)
                    for h in range(n_heads)
                )
            )
            k_maps.arrange(RIGHT, buff=0.25)
            k_names = VGroup(
                *(
                    text(f"head {h}", LABEL_SIZE * 0.7, QUERY).next_to(k_maps[h], UP, buff=0.1)
                    for h in range(n_heads)
                )
            )
            k_title = VGroup(
                math_tex("k_R", size=LABEL_SIZE, color=KEY),
                text(
                    f"({n_tokens} tokens {TIMES} {k_rope.shape[2]}) as each head reads it: "
                    "identical",
                    LABEL_SIZE * 0.85,
                    MUTED,
                ),
            ).arrange(RIGHT, buff=0.12)
            k_title.next_to(k_names, UP, buff=0.15)
            k_group = Group(k_title, k_names, k_maps)
            maps = Group(Group(q_title, q_map), k_group).arrange(RIGHT, buff=1.0, aligned_edge=UP)
            fit_in(
                maps,
                Zone(
                    CONTENT_ZONE.left,
                    CONTENT_ZONE.right,
                    CONTENT_ZONE.bottom,
                    equations_all.get_bottom()[1] - 0.9,
                ),
                allow_grow=True,
            )

            self.play(Write(split_eq), run_time=1.5)
            self.play(FadeIn(shared_box), FadeIn(shared_note), run_time=1)
            self.play(FadeIn(q_title), FadeIn(q_map), run_time=1)
            self.play(
                FadeIn(k_title),
                LaggedStart(
                    *(FadeIn(Group(n_, m_)) for n_, m_ in zip(k_names, k_maps, strict=True)),
                    lag_ratio=0.3,
                ),
                run_time=1.8,
            )
            self.wait(1)
        with self.beat(
            "The content part still folds as before; the position part is a small dot product "
            "of its own."
        ):
            self.play(Write(score_eq), run_time=1.5)
            self.play(
                FadeIn(absorbed_brace),
                FadeIn(absorbed_note),
                FadeIn(rope_brace),
                FadeIn(rope_note),
                run_time=1,
            )
            self.wait(1)

        # the shown head's last query against every key, both paths
        with self.beat(
            "Added up, the scores are the naive ones: the largest difference is "
            f"{say_sci(data['max_abs_diff'])}."
        ):
            self.play(FadeOut(Group(maps)), run_time=0.8)
            rows = {
                "content": number_row(np.asarray(data["content_row"]), LATENT),
                "rope": number_row(np.asarray(data["rope_row"]), KEY),
                "absorbed": number_row(np.asarray(data["absorbed_row"])),
                "naive": number_row(np.asarray(data["naive_row"])),
            }
            positions = VGroup(*(text(str(t), NUMBER_SIZE, KEY) for t in range(n_tokens)))
            column_w = max(m.width for row in [positions, *rows.values()] for m in row) + 0.35
            for row in [positions, *rows.values()]:
                for j, m in enumerate(row):
                    m.move_to([j * column_w, 0, 0])
            labels = {
                "positions": text("key token", LABEL_SIZE * 0.9, MUTED),
                "content": colored_math(
                    [(r"q_{\mathrm{lat}}", QUERY), r"\cdot", ("c_{KV}", LATENT)], size=LABEL_SIZE
                ),
                "rope": colored_math([("q_R", QUERY), r"\cdot", ("k_R", KEY)], size=LABEL_SIZE),
                "absorbed": text("absorbed: sum", LABEL_SIZE * 0.9, TEXT_COLOR),
                "naive": text("naive: expanded keys", LABEL_SIZE * 0.9, TEXT_COLOR),
            }
            table_rows = [positions, *rows.values()]
            for i, row in enumerate(table_rows):
                row.shift(-i * 0.6 * UP + (0.25 * DOWN if i >= 3 else 0))
            label_x = min(row[0].get_left()[0] for row in table_rows) - 0.35
            for key, row in zip(labels, table_rows, strict=True):
                labels[key].move_to([label_x, row.get_y(), 0], aligned_edge=RIGHT)
            rule = Rectangle(
                width=positions.width + 0.3,
                height=0.02,
                color=MUTED,
                fill_opacity=1,
                stroke_width=0,
            )
            rule.move_to(
                [positions.get_x(), (rows["rope"].get_y() + rows["absorbed"].get_y()) / 2, 0]
            )
            diff_line = VGroup(
                text(
                    f"largest |naive {MINUS} absorbed|, every head and token:",
                    LABEL_SIZE * 0.9,
                    TEXT_COLOR,
                ),
                math_tex(sci_tex(data["max_abs_diff"]), size=LABEL_SIZE * 0.9, color=HIGHLIGHT),
                text(f"({data['scores_dtype']})", LABEL_SIZE * 0.9, MUTED),
            ).arrange(RIGHT, buff=0.15)
            table = VGroup(*labels.values(), *table_rows, rule)
            query_note = VGroup(
                text(f"head {head}, query token {query}; scores", LABEL_SIZE * 0.9, QUERY),
                math_tex(
                    rf"\times\,{fmt_float(data['softmax_scale'], 3)}",
                    size=LABEL_SIZE * 0.9,
                    color=MUTED,
                ),
                text("(softmax scale)", LABEL_SIZE * 0.9, MUTED),
            ).arrange(RIGHT, buff=0.12)
            query_note.next_to(table, UP, buff=0.3).align_to(table, LEFT)
            diff_line.next_to(table, DOWN, buff=0.35)
            live_table = VGroup(query_note, table, diff_line)
            fit_in(
                live_table,
                Zone(
                    CONTENT_ZONE.left,
                    CONTENT_ZONE.right,
                    CONTENT_ZONE.bottom,
                    absorbed_note.get_bottom()[1] - 0.3,
                ),
                allow_grow=True,
            )

            self.play(
                FadeIn(query_note), FadeIn(labels["positions"]), FadeIn(positions), run_time=0.8
            )
            self.play(FadeIn(labels["content"]), FadeIn(rows["content"]), run_time=1)
            self.play(FadeIn(labels["rope"]), FadeIn(rows["rope"]), run_time=1)
            self.play(
                FadeIn(rule), FadeIn(labels["absorbed"]), FadeIn(rows["absorbed"]), run_time=1
            )
            self.play(FadeIn(labels["naive"]), FadeIn(rows["naive"]), run_time=1)
            self.play(FadeIn(diff_line), run_time=0.8)
            self.wait(2)

        with self.beat(
            f"So each token caches {real['kv_lora_rank']} latent numbers plus "
            f"{real['qk_rope_head_dim']} for the shared key: {real['per_token_layer']} per layer "
            "in DeepSeek-V3."
        ):
            # --- 3. what is cached per token and layer
            self.play(
                FadeOut(
                    Group(
                        equations_all,
                        absorbed_brace,
                        absorbed_note,
                        rope_brace,
                        rope_note,
                        live_table,
                    )
                ),
                run_time=1,
            )
            d_c, d_r, total = (
                real["kv_lora_rank"],
                real["qk_rope_head_dim"],
                real["per_token_layer"],
            )
            bar_len = CONTENT_ZONE.width * 0.7
            latent_bar = Rectangle(
                width=bar_len * d_c / total,
                height=0.7,
                fill_color=LATENT,
                fill_opacity=1,
                stroke_width=0,
            )
            rope_bar = Rectangle(
                width=bar_len * d_r / total,
                height=0.7,
                fill_color=KEY,
                fill_opacity=1,
                stroke_width=0,
            )
            bar = VGroup(latent_bar, rope_bar).arrange(RIGHT, buff=0.04)
            latent_label = (
                VGroup(
                    math_tex("c_{KV}", size=LABEL_SIZE, color=LATENT),
                    text(fmt_int(d_c), BODY_SIZE, LATENT),
                )
                .arrange(RIGHT, buff=0.15)
                .next_to(latent_bar, DOWN, buff=0.2)
            )
            rope_label = (
                VGroup(
                    math_tex("k_R", size=LABEL_SIZE, color=KEY),
                    text(fmt_int(d_r), BODY_SIZE, KEY),
                )
                .arrange(RIGHT, buff=0.15)
                .next_to(rope_bar, DOWN, buff=0.2)
                .align_to(rope_bar, RIGHT)
            )
            total_label = text(
                f"= {fmt_int(total)} numbers per token and layer", BODY_SIZE, TEXT_COLOR
            )
            total_label.next_to(bar, RIGHT, buff=0.3)
            bar_title = text(
                f"DeepSeek-V3 caches, per token and layer ({real['n_heads']} heads)",
                BODY_SIZE,
                TEXT_COLOR,
            )
            small_line = text(
                f"this small model: {cfg['kv_lora_rank']} + {cfg['qk_rope_head_dim']} = "
                f"{data['cache_per_token_layer']} (its live cache holds "
                f"{data['live_cache_per_token_layer']} per token and layer)",
                LABEL_SIZE,
                MUTED,
            )
            gpt2_line = VGroup(
                text(
                    "GPT-2 adds learned position embeddings to its input: no rotation sits",
                    LABEL_SIZE,
                    TEXT_COLOR,
                ),
                text(
                    "between its query and key weights, so its MLA form needed no decoupling",
                    LABEL_SIZE,
                    TEXT_COLOR,
                ),
            ).arrange(DOWN, buff=0.12)
            cache_block = VGroup(
                bar_title, VGroup(bar, latent_label, rope_label, total_label), small_line, gpt2_line
            )
            cache_block.arrange(DOWN, buff=0.55)
            fit_in(cache_block, CONTENT_ZONE)

            real_source = caption(
                f"{real['name']}: kv_lora_rank {d_c}, qk_rope_head_dim {d_r} "
                "(deepseek-ai/DeepSeek-V3 inference/configs)"
            )
            self.play(FadeIn(bar_title), FadeOut(source), FadeIn(real_source), run_time=0.8)
            self.play(FadeIn(latent_bar), FadeIn(latent_label), run_time=1)
            self.play(FadeIn(rope_bar), FadeIn(rope_label), run_time=1)
            self.play(FadeIn(total_label), run_time=0.8)
            self.play(FadeIn(small_line), run_time=0.8)
            self.wait(1)
        with self.beat(
            "GPT-2 adds learned position embeddings to its input and never rotates, so its MLA "
            "form needed no decoupling."
        ):
            self.play(FadeIn(gpt2_line), run_time=1.2)
            self.wait(3)

        self.shown_numbers = {
            "model": data["model_name"],
            "head": head,
            "position_pairs": [list(p) for p in pairs],
            "pair_scores": [fmt_float(s, DIGITS) for s in pair_scores],
            "content_row": [m.original_text for m in rows["content"]],
            "rope_row": [m.original_text for m in rows["rope"]],
            "absorbed_row": [m.original_text for m in rows["absorbed"]],
            "naive_row": [m.original_text for m in rows["naive"]],
            "max_abs_diff": sci_text(data["max_abs_diff"]),
            "max_abs_diff_dtype": data["scores_dtype"],
            "softmax_scale": fmt_float(data["softmax_scale"], 3),
            "v3_cache_per_token_layer": [fmt_int(d_c), fmt_int(d_r), fmt_int(total)],
            "small_cache_per_token_layer": data["cache_per_token_layer"],
            "small_live_cache_per_token_layer": data["live_cache_per_token_layer"],
        }
