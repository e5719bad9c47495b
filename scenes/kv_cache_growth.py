"""Beats 4-5: generating token by token, the KV cache grows.

The prompt's keys and values (of one head, each row a colour strip of its numbers) are
computed once. Then each new token needs only ITS query, key and value: the new k and v
rows join the cache, the old rows are reused as they are, and the query is used once and
dropped. A counter shows the live cache's bytes for the whole model after every step, and
at the end the same cache at DeepSeek-V3 size with multi-head attention. Data:
`mla_core.scene_data.kv_cache_growth` (the counter is the live KVCache's size).
"""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    Group,
    Indicate,
    LaggedStart,
    ReplacementTransform,
    SurroundingRectangle,
    VGroup,
    Write,
)

from scenes.components import (
    BODY_SIZE,
    CACHE,
    CONTENT_ZONE,
    HIGHLIGHT,
    KEY,
    LABEL_SIZE,
    MUTED,
    PATTERN_SCALE,
    QUERY,
    TEXT_COLOR,
    TIMES,
    VALUE,
    Heatmap,
    VideoScene,
    Zone,
    caption,
    diverging_scale,
    fit_in,
    fmt_bytes,
    fmt_int,
    math_tex,
    text,
    title,
)

STRIP_WIDTH = 1.9  # a cached vector drawn as a colour strip of its numbers


def vector_strip(values: np.ndarray, scale, height: float) -> Heatmap:
    strip = Heatmap(values[None, :], scale, cell_size=STRIP_WIDTH / len(values), grid=False)
    return strip.stretch_to_fit_height(height)


def bytes_line(n_bytes: int) -> str:
    return f"{fmt_int(n_bytes)} bytes"


class KVCacheGrowth(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        prompt_tokens, fed_tokens = data["prompt_tokens"], data["fed_tokens"]
        head = data["head"]
        prefill_k, prefill_v = np.asarray(data["prefill_k"]), np.asarray(data["prefill_v"])
        step_q, step_k, step_v = (np.asarray(data[n]) for n in ("step_q", "step_k", "step_v"))
        patterns = np.asarray(data["step_patterns"])
        cache_bytes = [int(b) for b in data["cache_bytes"]]
        n_cached = [int(n) for n in data["n_cached"]]
        n_prompt, n_steps = len(prompt_tokens), len(fed_tokens)
        per_token = int(data["bytes_per_token"])
        n_layers, n_heads, head_dim = data["n_layers"], data["n_heads"], data["head_dim"]
        element_bytes = data["element_bytes"]

        heading = title("Generating: the KV cache grows one row per token")
        source = caption(self.inputs.model_caption)
        values_scale = diverging_scale(
            float(np.percentile(np.abs(np.concatenate([data["cache_k"], data["cache_v"]])), 98))
        )

        # --- layout: one line per token, columns q | K cache | attention | V cache ----
        n_rows = n_prompt + n_steps
        top = CONTENT_ZONE.top - 0.75
        row_h = min(0.36, (top - CONTENT_ZONE.bottom - 0.1) / n_rows)
        strip_h = row_h * 0.72
        x_label = CONTENT_ZONE.left + 1.5  # right edge of the token labels
        x_q = x_label + 0.35 + STRIP_WIDTH / 2
        x_k = x_q + STRIP_WIDTH + 0.45
        x_attn = x_k + STRIP_WIDTH / 2 + 0.35
        x_v = x_attn + 0.35 + STRIP_WIDTH / 2

        def row_y(i: int) -> float:
            return top - (i + 0.5) * row_h

        def token_label(token: str, i: int, color: str = TEXT_COLOR):
            label = text(token, LABEL_SIZE * 0.8, color)
            return label.move_to([x_label, row_y(i), 0], aligned_edge=RIGHT)

        def strip_at(values: np.ndarray, x: float, i: int) -> Heatmap:
            return vector_strip(values, values_scale, strip_h).move_to([x, row_y(i), 0])

        def attention_column(weights: np.ndarray) -> Heatmap:
            cells = Heatmap(weights[:, None], PATTERN_SCALE, cell_size=row_h, grid=True)
            return cells.stretch_to_fit_width(0.3).move_to(
                [x_attn, top - len(weights) * row_h / 2, 0]
            )

        headers = VGroup(
            math_tex("q", color=QUERY).move_to([x_q, top + 0.35, 0]),
            text("K cache", LABEL_SIZE, KEY).move_to([x_k, top + 0.35, 0]),
            text("V cache", LABEL_SIZE, VALUE).move_to([x_v, top + 0.35, 0]),
        )
        attention_header = text("attention", LABEL_SIZE * 0.7, MUTED).rotate(np.pi / 2)
        attention_header.move_to([x_attn, top + 0.1, 0], aligned_edge=DOWN)
        labels = VGroup(*(token_label(t, i) for i, t in enumerate(prompt_tokens)))
        k_rows = Group(*(strip_at(prefill_k[i], x_k, i) for i in range(n_prompt)))
        v_rows = Group(*(strip_at(prefill_v[i], x_v, i) for i in range(n_prompt)))

        # --- the counter ---------------------------------------------------------------
        panel = Zone(x_v + STRIP_WIDTH / 2 + 0.7, CONTENT_ZONE.right, CONTENT_ZONE.bottom, top)
        counter_title = VGroup(
            text("the whole KV cache", LABEL_SIZE, MUTED),
            text(f"{n_layers} layers {TIMES} {n_heads} heads", LABEL_SIZE, MUTED),
        ).arrange(DOWN, buff=0.1, aligned_edge=LEFT)

        def counter(step: int) -> VGroup:
            tokens = text(f"{n_cached[step]} tokens", BODY_SIZE, TEXT_COLOR)
            total = text(bytes_line(cache_bytes[step]), BODY_SIZE + 6, CACHE)
            return VGroup(tokens, total).arrange(DOWN, buff=0.2, aligned_edge=LEFT)

        formula = VGroup(
            text(f"{fmt_int(per_token)} bytes per token", LABEL_SIZE * 0.8, MUTED),
            text(f"= 2 (k, v) {TIMES} {n_layers} layers", LABEL_SIZE * 0.8, MUTED),
            text(f"{TIMES} {n_heads} heads {TIMES} {head_dim} numbers", LABEL_SIZE * 0.8, MUTED),
            text(f"{TIMES} {element_bytes} bytes ({data['cache_dtype']})", LABEL_SIZE * 0.8, MUTED),
        ).arrange(DOWN, buff=0.12, aligned_edge=LEFT)
        counters = [counter(s) for s in range(n_steps + 1)]
        panel_group = VGroup(counter_title, counters[0], formula).arrange(
            DOWN, buff=0.45, aligned_edge=LEFT
        )
        fit_in(panel_group, panel, align="left")
        for c in counters[1:]:
            c.scale(counters[0][0].height / c[0].height).move_to(counters[0], aligned_edge=LEFT)
        shown_counters = [c[1].original_text for c in counters]

        # --- the prompt: every key and value computed once --------------------------------
        with self.beat(
            f"Reading the prompt, every layer computes a key and a value for each of its "
            f"{n_prompt} tokens, in every head."
        ):
            self.play(Write(heading), FadeIn(source), run_time=1.2)
            self.play(FadeIn(labels), FadeIn(headers[1:]), run_time=1)
            self.play(
                LaggedStart(*(FadeIn(r) for r in [*k_rows, *v_rows]), lag_ratio=0.03),
                run_time=1.5,
            )
            self.play(FadeIn(counter_title), FadeIn(counters[0]), FadeIn(formula), run_time=1)
            self.wait(1.5)

        # --- one token at a time ---------------------------------------------------------
        shown_counter = counters[0]
        new_label = q_strip = attention = reused_note = None
        with self.beat(
            "Then the model generates one token at a time. Each new token computes its own query, "
            "key and value, and reuses the keys and values of every token before it."
        ):
            for s in range(n_steps):
                i = n_prompt + s
                slow = s == 0
                label = token_label(fed_tokens[s], i, HIGHLIGHT)
                q_row = strip_at(step_q[s], x_q, i)
                k_row, v_row = strip_at(step_k[s], x_k, i), strip_at(step_v[s], x_v, i)
                fade_old = [FadeOut(q_strip)] if q_strip is not None else []
                if new_label is not None:
                    fade_old.append(new_label.animate.set_color(TEXT_COLOR))
                self.play(FadeIn(label, shift=0.2 * UP), *fade_old, run_time=0.8 if slow else 0.5)
                if slow:
                    self.play(FadeIn(headers[0]), run_time=0.4)
                self.play(
                    FadeIn(q_row, shift=0.15 * RIGHT),
                    FadeIn(k_row, shift=0.15 * RIGHT),
                    FadeIn(v_row, shift=0.15 * RIGHT),
                    run_time=1.0 if slow else 0.6,
                )
                box_k = SurroundingRectangle(Group(*k_rows), color=CACHE, buff=0.05)
                box_v = SurroundingRectangle(Group(*v_rows), color=CACHE, buff=0.05)
                if slow:
                    reused_note = text("reused, not recomputed", LABEL_SIZE * 0.85, CACHE)
                    reused_note.move_to([(x_k + x_v) / 2, row_y(i + 1) - 0.05, 0])
                    computed_note = text("computed now", LABEL_SIZE * 0.85, HIGHLIGHT)
                    computed_note.move_to([x_q, row_y(i + 1) - 0.05, 0])
                    self.play(FadeIn(box_k), FadeIn(box_v), FadeIn(computed_note), run_time=0.8)
                    self.play(FadeIn(reused_note), run_time=0.6)
                    self.wait(1.5)
                    self.play(FadeOut(reused_note), FadeOut(computed_note), run_time=0.5)
                else:
                    self.play(FadeIn(box_k), FadeIn(box_v), run_time=0.4)
                labels.add(label)
                k_rows.add(k_row)
                v_rows.add(v_row)
                weights = attention_column(patterns[s, : n_cached[s + 1]])
                attention_anims = [FadeIn(weights)]
                if slow:
                    attention_anims.append(FadeIn(attention_header))
                if attention is not None:
                    attention_anims.append(FadeOut(attention))
                self.play(
                    *attention_anims,
                    FadeOut(box_k),
                    FadeOut(box_v),
                    ReplacementTransform(shown_counter, counters[s + 1]),
                    run_time=0.9 if slow else 0.6,
                )
                shown_counter, attention = counters[s + 1], weights
                new_label, q_strip = label, q_row
                self.wait(1.0 if slow else 0.4)
        with self.beat(
            f"Kept in memory, they are the KV cache: {bytes_line(cache_bytes[-1])} for "
            f"{n_cached[-1]} tokens in this small model."
        ):
            self.play(Indicate(shown_counter[1], color=CACHE, scale_factor=1.1), run_time=1)
            self.wait(1)

        # --- the same cache at DeepSeek-V3 size ---------------------------------------------
        ds_per_token = int(data["deepseek_bytes_per_token"])
        context = int(data["context"])
        ds_total = int(data["deepseek_bytes_at_context"])
        ours = text(
            f"this model, {n_cached[-1]} tokens: {bytes_line(cache_bytes[-1])}", LABEL_SIZE, MUTED
        )
        big = VGroup(
            ours,
            text("DeepSeek-V3 with multi-head attention", BODY_SIZE, TEXT_COLOR),
            text(
                f"{bytes_line(ds_per_token)} per token (\u2248 {fmt_bytes(ds_per_token)})",
                BODY_SIZE,
                CACHE,
            ),
            text(
                f"2 (k, v) {TIMES} {data['deepseek_n_layers']} layers {TIMES} "
                f"{data['deepseek_n_heads']} heads {TIMES} {data['deepseek_head_dim']} numbers "
                f"{TIMES} {data['deepseek_dtype_bytes']} bytes",
                LABEL_SIZE,
                MUTED,
            ),
            text(f"{fmt_int(context)} tokens: {fmt_bytes(ds_total)}", BODY_SIZE + 14, CACHE),
        ).arrange(DOWN, buff=0.4)
        fit_in(big, CONTENT_ZONE)
        with self.beat(
            f"At DeepSeek-V3's size, multi-head attention would cache {bytes_line(ds_per_token)} "
            f"for every token: {fmt_bytes(ds_total)} for {fmt_int(context)} tokens of context."
        ):
            caches = Group(labels, headers, attention_header, k_rows, v_rows, attention, q_strip)
            self.play(
                FadeOut(caches),
                FadeOut(VGroup(counter_title, formula)),
                ReplacementTransform(shown_counter, ours),
                run_time=1.2,
            )
            self.play(FadeIn(big[1]), run_time=0.8)
            self.play(FadeIn(big[2]), FadeIn(big[3]), run_time=1.2)
            self.wait(1.2)
            self.play(FadeIn(big[4], scale=0.9), run_time=1.2)
            self.wait(3)

        self.shown_numbers = {
            "head": f"{head['layer']}.{head['head']}",
            "prompt_tokens": list(prompt_tokens),
            "fed_tokens": list(fed_tokens),
            "cache_counter": shown_counters,
            "bytes_per_token": fmt_int(per_token),
            "deepseek_bytes_per_token": fmt_int(ds_per_token),
            "deepseek_at_context": fmt_bytes(ds_total),
        }
