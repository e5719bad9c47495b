"""Beat 7: MLA caches one latent per token; each head's key and value are re-expanded from it.

One token's hidden state h goes through the real W_DKV of the video's GPT-2 converted to MLA
(at the video's latent rank) to c_KV, the only thing cached; W_UK and W_UV of one head turn
c_KV into that head's key and value. Every matrix is drawn at its true aspect ratio (cut
with an ellipsis when too wide) and labelled with its shape; then DeepSeek-V3's shapes from
its config. Then a few tokens are decoded with the latent cache: one c_KV row per token per
layer, beside the outline of what multi-head attention would cache, with live byte counters.
Data: `mla_core.scene_data.latent_kv`.
"""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Arrow,
    FadeIn,
    FadeOut,
    Group,
    Indicate,
    Rectangle,
    ReplacementTransform,
    VGroup,
    Write,
)

from scenes.components import (
    BODY_SIZE,
    CACHE,
    CONTENT_ZONE,
    GRID,
    HIGHLIGHT,
    KEY,
    LABEL_SIZE,
    LATENT,
    MUTED,
    TEXT_COLOR,
    TIMES,
    VALUE,
    MatrixHeatmap,
    VideoScene,
    Zone,
    caption,
    diverging_scale,
    fit_in,
    fmt_int,
    fmt_ratio,
    math_tex,
    say_token,
    shape_text,
    text,
    title,
    vector_strip,
)

MAX_CELLS = 256  # at most this many rows / columns of a matrix drawn; an ellipsis marks the rest
STRIP = 0.24  # thickness of a vector strip (scene units)
GAP = 0.55  # between a matrix and the next block


def scale_for(*arrays: np.ndarray):
    """One fixed diverging scale for a quantity: the 98th percentile of |values|."""
    values = np.concatenate([np.abs(np.asarray(a)).reshape(-1) for a in arrays])
    return diverging_scale(float(np.percentile(values, 98)))


class LatentKV(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        tokens, token = data["tokens"], int(data["token"])
        head = data["head"]
        rank, n_embd = data["rank"], data["n_embd"]
        n_layer, n_head = data["n_layer"], data["n_head"]
        ds = data["deepseek"]
        x, c_kv = np.asarray(data["x"]), np.asarray(data["c_kv"])
        k, v = np.asarray(data["k"]), np.asarray(data["v"])
        w_dkv, w_uk, w_uv = (np.asarray(data[n]) for n in ("w_dkv", "w_uk", "w_uv"))

        heading = title("MLA caches one small latent per token")
        source = caption(self.inputs.model_caption)
        weight_scale = scale_for(w_dkv, w_uk, w_uv)
        hidden_scale = scale_for(x)
        latent_scale = scale_for(c_kv, data["cache_rows"])
        kv_scale = scale_for(k, v)

        # --- the diagram, built at a cell size that fills the width ----------------------
        cols = min(n_embd, MAX_CELLS) + 2 * min(rank, MAX_CELLS)
        fixed = 3 * STRIP + 4.5 * GAP + 1.4  # strips, gaps, the k and v names
        cell = (CONTENT_ZONE.width - fixed) / cols

        def strip(values, vertical: bool, color_scale):
            return vector_strip(
                values,
                color_scale,
                cell=cell,
                thickness=STRIP,
                vertical=vertical,
                max_len=MAX_CELLS,
            )

        def matrix(values):
            return MatrixHeatmap(
                values, weight_scale, cell=cell, max_cols=MAX_CELLS, max_rows=MAX_CELLS
            )

        size = LABEL_SIZE * 0.85

        def name(tex: str, color: str):
            return math_tex(tex, size=size, color=color)

        def named(tex: str, shape: str, color: str) -> VGroup:
            """A matrix's name in maths and its true shape: 'W_DKV  48 x 192'."""
            return VGroup(name(tex, color), text(shape, size, color)).arrange(RIGHT, buff=0.15)

        def below(mob, *lines) -> VGroup:
            group = VGroup(*(text(s, size, c) if isinstance(s, str) else s for s, c in lines))
            group.arrange(DOWN, buff=0.1, aligned_edge=LEFT)
            return group.next_to(mob, DOWN, buff=0.2).align_to(mob, LEFT)

        m_dkv = matrix(w_dkv)
        h_row = strip(x[token], False, hidden_scale)
        h_row.next_to(m_dkv.heatmap, UP, buff=0.15).align_to(m_dkv.heatmap, LEFT)
        c_col = strip(c_kv[token], True, latent_scale)
        c_col.next_to(m_dkv, RIGHT, buff=GAP).align_to(m_dkv.heatmap, UP)
        m_uk, m_uv = matrix(w_uk), matrix(w_uv)
        m_uk.next_to(c_col, RIGHT, buff=GAP * 2.2).align_to(m_dkv.heatmap, UP)
        k_col = strip(k[token], True, kv_scale).next_to(m_uk, RIGHT, buff=0.15)
        k_col.align_to(m_uk, UP)
        k_label = name("k", KEY).next_to(k_col, RIGHT, buff=0.1)
        m_uv.next_to(k_label, RIGHT, buff=GAP).align_to(m_uk, UP)
        v_col = strip(v[token], True, kv_scale).next_to(m_uv, RIGHT, buff=0.15)
        v_col.align_to(m_uv, UP)
        v_label = name("v", VALUE).next_to(v_col, RIGHT, buff=0.1)
        c_row_k = strip(c_kv[token], False, latent_scale)
        c_row_k.next_to(m_uk.heatmap, UP, buff=0.15).align_to(m_uk.heatmap, LEFT)
        c_row_v = strip(c_kv[token], False, latent_scale)
        c_row_v.next_to(m_uv.heatmap, UP, buff=0.15).align_to(m_uv.heatmap, LEFT)

        token_name = tokens[token]
        h_label = VGroup(
            name("h", TEXT_COLOR), text(f"token {token_name}, {fmt_int(n_embd)} numbers", size)
        ).arrange(RIGHT, buff=0.2)
        h_label.next_to(h_row, UP, buff=0.15).align_to(h_row, LEFT)
        dkv_label = below(m_dkv, (named("W_{DKV}", m_dkv.shape_label, TEXT_COLOR), None))
        c_label = below(
            c_col,
            (name("c_{KV}", LATENT), None),
            (f"{fmt_int(rank)} numbers", LATENT),
            ("cached", CACHE),
        )
        c_label.align_to(c_col, RIGHT)  # leftwards, clear of W_UK's labels
        cached = c_label[2]
        uk_label = below(m_uk, (name("W_{UK}", KEY), None), (m_uk.shape_label, KEY))
        uv_label = below(m_uv, (name("W_{UV}", VALUE), None), (m_uv.shape_label, VALUE))
        per_head = text(
            f"head {head['layer']}.{head['head']} shown: all {n_head} heads read the same "
            "cached latent",
            size,
            MUTED,
        )
        per_head.next_to(Group(c_row_k, c_row_v), UP, buff=0.2).align_to(c_row_k, LEFT)
        # level with the middle of whichever of c_KV and W_UK is shorter (their tops align)
        arrow_y = c_col.get_top()[1] - min(c_col.height, m_uk.heatmap.height) / 2
        arrow = Arrow(
            np.array([c_col.get_right()[0] + 0.05, arrow_y, 0.0]),
            np.array([m_uk.heatmap.get_left()[0] - 0.05, arrow_y, 0.0]),
            buff=0.0,
            color=LATENT,
            stroke_width=3,
            max_tip_length_to_length_ratio=0.3,
        )
        equations = math_tex(
            r"c_{KV} = W_{DKV}\,h",
            r"\qquad k = W_{UK}\,c_{KV} + b_K",
            r"\qquad v = W_{UV}\,c_{KV} + b_V",
            size=LABEL_SIZE,
            color=TEXT_COLOR,
        )
        # DeepSeek-V3's shapes, from its config, under each GPT-2 shape
        v3 = ds
        v3_dkv = below(
            dkv_label, (f"V3: {shape_text(v3['kv_lora_rank'], v3['hidden_size'])}", MUTED)
        )
        v3_c = below(c_label, (f"V3: {fmt_int(v3['kv_lora_rank'])}", MUTED))
        v3_uk = below(
            uk_label,
            (f"V3: {v3['n_heads']} heads {TIMES}", MUTED),
            (shape_text(v3["qk_nope_head_dim"], v3["kv_lora_rank"]), MUTED),
        )
        v3_uv = below(
            uv_label,
            (f"V3: {v3['n_heads']} heads {TIMES}", MUTED),
            (shape_text(v3["v_head_dim"], v3["kv_lora_rank"]), MUTED),
        )
        re_expanded = v3["n_heads"] * (v3["qk_nope_head_dim"] + v3["v_head_dim"])
        v3_line = VGroup(
            text(
                f"DeepSeek-V3: h of {fmt_int(v3['hidden_size'])} numbers \u2192 one cached "
                f"latent of {fmt_int(v3['kv_lora_rank'])}",
                LABEL_SIZE,
                TEXT_COLOR,
            ),
            text(
                f"\u2192 {v3['n_heads']} heads {TIMES} ({v3['qk_nope_head_dim']} key + "
                f"{v3['v_head_dim']} value) = {fmt_int(re_expanded)} numbers per layer",
                LABEL_SIZE,
                TEXT_COLOR,
            ),
        ).arrange(DOWN, buff=0.12)
        diagram = Group(
            h_row, h_label, m_dkv, dkv_label, c_col, c_label, cached, arrow, m_uk, m_uv, k_col,
            v_col, c_row_k, c_row_v, uk_label, uv_label, k_label, v_label, per_head,
            v3_dkv, v3_c, v3_uk, v3_uv,
        )  # fmt: skip
        equations.next_to(diagram, DOWN, buff=0.45)
        v3_line.next_to(equations, DOWN, buff=0.35)
        whole = Group(diagram, equations, v3_line)
        fit_in(whole, CONTENT_ZONE)

        with self.beat(
            f"Follow the last token, {say_token(tokens[token])}. One matrix, W_DKV, takes its "
            f"{n_embd} numbers down to a latent c_KV of {rank}: that latent is all the layer "
            "caches."
        ):
            # --- 1. one token down to its latent -----------------------------------------
            self.play(Write(heading), FadeIn(source), run_time=1.2)
            self.play(FadeIn(h_row), FadeIn(h_label), run_time=1)
            self.play(FadeIn(m_dkv), FadeIn(dkv_label), run_time=1.2)
            self.play(FadeIn(c_col, target_position=m_dkv), FadeIn(c_label[:2]), run_time=1.5)
            self.play(FadeIn(cached, shift=0.1 * UP), Write(equations[0]), run_time=1)
            self.wait(1.5)
        with self.beat(
            "Each head gets its key from the latent through W_UK, and its value through W_UV: "
            f"all {n_head} heads read the same cached latent."
        ):
            # --- 2. each head's key and value from the latent ------------------------------
            self.play(FadeIn(arrow), FadeIn(per_head), run_time=0.8)
            self.play(
                FadeIn(c_row_k, target_position=c_col),
                FadeIn(c_row_v, target_position=c_col),
                FadeIn(m_uk),
                FadeIn(m_uv),
                FadeIn(uk_label),
                FadeIn(uv_label),
                run_time=1.5,
            )
            self.play(
                FadeIn(k_col, target_position=m_uk),
                FadeIn(v_col, target_position=m_uv),
                FadeIn(k_label),
                FadeIn(v_label),
                Write(equations[1:]),
                run_time=1.5,
            )
            self.wait(2)
        with self.beat(
            f"In DeepSeek-V3, {fmt_int(ds['hidden_size'])} numbers go down to "
            f"{ds['kv_lora_rank']}, and {ds['n_heads']} heads take keys and values of "
            f"{ds['qk_nope_head_dim']} numbers each from that one latent."
        ):
            # --- 3. the same shapes in DeepSeek-V3 ---------------------------------------------
            self.play(FadeIn(v3_dkv), FadeIn(v3_c), FadeIn(v3_uk), FadeIn(v3_uv), run_time=1.2)
            self.play(FadeIn(v3_line, shift=0.1 * UP), run_time=1)
            self.wait(2.5)
        decoding = title("Decoding: each token adds one latent row per layer")
        self.play(FadeOut(whole), ReplacementTransform(heading, decoding), run_time=1)

        # --- 4. decoding with the latent cache -----------------------------------------
        self.decode(data, latent_scale, n_layer, rank, n_embd)

        self.shown_numbers.update(
            {
                "head": f"{head['layer']}.{head['head']}",
                "token": token_name,
                "shapes": {
                    "h": n_embd,
                    "W_DKV": m_dkv.shape_label,
                    "c_KV": rank,
                    "W_UK": m_uk.shape_label,
                    "W_UV": m_uv.shape_label,
                },
                "deepseek_v3": {
                    "W_DKV": shape_text(v3["kv_lora_rank"], v3["hidden_size"]),
                    "W_UK": shape_text(v3["qk_nope_head_dim"], v3["kv_lora_rank"]),
                    "W_UV": shape_text(v3["v_head_dim"], v3["kv_lora_rank"]),
                    "heads": v3["n_heads"],
                    "re_expanded": fmt_int(re_expanded),
                },
            }
        )

    def decode(self, data, latent_scale, n_layer: int, rank: int, n_embd: int) -> None:
        tokens, fed = list(data["tokens"]), list(data["fed_tokens"])
        rows = np.asarray(data["cache_rows"])
        n_cached = [int(n) for n in data["n_cached"]]
        latent_bytes = [int(b) for b in data["cache_bytes"]]
        mha_bytes = [int(b) for b in data["mha_cache_bytes"]]
        head = data["head"]
        element_bytes = data["element_bytes"]
        labels_all = tokens + fed
        n_rows = len(labels_all)

        # rows of the shown layer's cache: a c_KV strip, beside the outline of MHA's k and v
        # (widths to scale: rank numbers against 2 x n_embd)
        top = CONTENT_ZONE.top - 0.9
        row_h = min(0.36, (top - CONTENT_ZONE.bottom - 0.4) / n_rows)
        mha_w = 6.0
        latent_w = mha_w * rank / (2 * n_embd)
        x_label = CONTENT_ZONE.left + 1.6
        x_latent = x_label + 0.3
        x_mha = x_latent + latent_w + 0.5

        def y(i: int) -> float:
            return top - (i + 0.5) * row_h

        def label(i: int, color: str = TEXT_COLOR):
            t = text(labels_all[i], LABEL_SIZE * 0.75, color)
            return t.move_to([x_label, y(i), 0], aligned_edge=RIGHT)

        def latent_row(i: int):
            s = vector_strip(rows[i], latent_scale, cell=1.0, thickness=1.0, max_len=10**6)
            s.stretch_to_fit_width(latent_w).stretch_to_fit_height(row_h * 0.75)
            return s.move_to([x_latent, y(i), 0], aligned_edge=LEFT)

        def mha_row(i: int) -> VGroup:
            halves = VGroup(
                *(
                    Rectangle(width=mha_w / 2 - 0.04, height=row_h * 0.75, stroke_width=1.5)
                    .set_stroke(color, opacity=0.7)
                    .set_fill(GRID, opacity=0.5)
                    for color in (KEY, VALUE)
                )
            ).arrange(RIGHT, buff=0.08)
            return halves.move_to([x_mha, y(i), 0], aligned_edge=LEFT)

        header_latent = VGroup(
            math_tex("c_{KV}", size=LABEL_SIZE * 0.8, color=LATENT),
            text(f"{rank}", LABEL_SIZE * 0.7, LATENT),
        ).arrange(DOWN, buff=0.05)
        header_latent.move_to([x_latent + latent_w / 2, top + 0.4, 0])
        header_mha = text(
            f"what MHA would cache: k and v, 2 {TIMES} {fmt_int(n_embd)} numbers",
            LABEL_SIZE * 0.75,
            MUTED,
        ).move_to([x_mha + mha_w / 2, top + 0.3, 0])
        layer_note = text(
            f"layer {head['layer']}; every one of the {n_layer} layers caches its own row",
            LABEL_SIZE * 0.75,
            MUTED,
        )
        n_prompt = n_cached[0]
        labels = VGroup(*(label(i) for i in range(n_prompt)))
        latents = Group(*(latent_row(i) for i in range(n_prompt)))
        ghosts = VGroup(*(mha_row(i) for i in range(n_prompt)))
        layer_note.move_to([x_mha + mha_w / 2, y(n_rows - 1) - row_h, 0])

        # counters, right of the cache
        panel = Zone(x_mha + mha_w + 0.6, CONTENT_ZONE.right, CONTENT_ZONE.bottom, top + 0.5)

        def counter(step: int) -> VGroup:
            return VGroup(
                text(f"{n_cached[step]} tokens, all {n_layer} layers", BODY_SIZE, TEXT_COLOR),
                text("latent cache", LABEL_SIZE, LATENT),
                text(f"{fmt_int(latent_bytes[step])} bytes", BODY_SIZE + 4, LATENT),
                text("MHA cache, same model", LABEL_SIZE, MUTED),
                text(f"{fmt_int(mha_bytes[step])} bytes", BODY_SIZE + 4, MUTED),
            ).arrange(DOWN, buff=0.15, aligned_edge=LEFT)

        per_token = data["bytes_per_token"]
        small = LABEL_SIZE * 0.75
        formula = VGroup(
            text(f"per token: {n_layer} layers, {element_bytes} bytes a number", small, MUTED),
            text(
                f"latent {rank} {TIMES} {n_layer} {TIMES} {element_bytes} = "
                f"{fmt_int(per_token['mla'])}",
                small,
                LATENT,
            ),
            text(
                f"MHA 2 {TIMES} {n_embd} {TIMES} {n_layer} {TIMES} {element_bytes} = "
                f"{fmt_int(per_token['mha'])}",
                LABEL_SIZE * 0.75,
                MUTED,
            ),
        ).arrange(DOWN, buff=0.1, aligned_edge=LEFT)  # fmt: skip
        ratio = text(f"{fmt_ratio(per_token['mha'] / per_token['mla'])} less", BODY_SIZE, LATENT)
        counters = [counter(s) for s in range(len(n_cached))]
        panel_group = VGroup(counters[0], formula, ratio).arrange(DOWN, buff=0.4, aligned_edge=LEFT)
        fit_in(panel_group, panel, align="left")
        for c in counters[1:]:
            c.match_height(counters[0]).move_to(counters[0], aligned_edge=UL_CORNER)

        with self.beat(
            f"Now generate. Each new token adds one row of {rank} numbers per layer to the cache, "
            f"where multi-head attention would add {2 * n_embd}."
        ):
            self.play(FadeIn(header_latent), FadeIn(header_mha), FadeIn(labels), run_time=1)
            self.play(FadeIn(latents), FadeIn(ghosts), FadeIn(layer_note), run_time=1.2)
            self.play(FadeIn(counters[0]), FadeIn(formula), run_time=1)
            self.wait(1.5)
        shown = counters[0]
        previous = None
        with self.beat(
            f"After {len(n_cached) - 1} new tokens the latent cache holds "
            f"{fmt_int(latent_bytes[-1])} bytes, against {fmt_int(mha_bytes[-1])} for multi-head "
            "attention in the same model."
        ):
            for s in range(1, len(n_cached)):
                i = n_cached[s] - 1
                new_label = label(i, HIGHLIGHT)
                fade = [previous.animate.set_color(TEXT_COLOR)] if previous is not None else []
                self.play(
                    FadeIn(new_label, shift=0.15 * UP),
                    FadeIn(latent_row(i), shift=0.15 * RIGHT),
                    FadeIn(mha_row(i), shift=0.15 * RIGHT),
                    ReplacementTransform(shown, counters[s]),
                    *fade,
                    run_time=0.9 if s == 1 else 0.6,
                )
                shown, previous = counters[s], new_label
                self.wait(0.8 if s == 1 else 0.4)
        self.play(FadeIn(ratio), Indicate(shown[2], color=LATENT, scale_factor=1.08), run_time=1.2)
        self.wait(3)
        self.shown_numbers.update(
            {
                "cached_tokens": [labels_all[i] for i in range(n_cached[-1])],
                "latent_cache_bytes": [fmt_int(b) for b in latent_bytes],
                "mha_cache_bytes": [fmt_int(b) for b in mha_bytes],
                "bytes_per_token": {k: fmt_int(b) for k, b in per_token.items()},
                "ratio": fmt_ratio(per_token["mha"] / per_token["mla"]),
            }
        )


UL_CORNER = UP + LEFT
