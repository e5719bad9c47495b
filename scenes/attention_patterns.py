"""Beat 3a: what real attention heads look at.

A gallery of real heads' attention patterns on the prompt (the heads mla_core scores as
most typical of their kind, unless video.toml names others), all on ONE fixed 0..1 colour
scale, then the first head enlarged and read: a row is a token looking back, a column a
token being looked at. Data: `mla_core.scene_data.attention_patterns`.
"""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    ORIGIN,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    Group,
    LaggedStart,
    Transform,
    VGroup,
    Write,
)

from scenes.components import (
    BODY_SIZE,
    CAPTION_SIZE,
    CONTENT_ZONE,
    HIGHLIGHT,
    KEY,
    LABEL_SIZE,
    MUTED,
    PATTERN_SCALE,
    QUERY,
    TEXT_COLOR,
    ColorBar,
    Heatmap,
    VideoScene,
    Zone,
    caption,
    fit_in,
    fmt_float,
    say_token,
    text,
    title,
)


def role_lines(head: dict) -> list[str]:
    """What the head is, as far as its score allows: ["previous-token head", "score 0.62"]
    only when the score passes mla_core's stated threshold, else ["previous-token", "highest
    score: 0.09"] (the best head of that kind, not an instance of it)."""
    score = fmt_float(head["score"])
    if head["has_role"]:
        return [f"{head['kind_label']} head", f"score {score}"]
    return [head["kind_label"], f"highest score: {score}"]


def head_label(head: dict, size: float, aligned_edge=ORIGIN, one_line: bool = False) -> VGroup:
    """'layer 1 · head 2' above what it is (when mla_core picked it by a score)."""
    lines = [text(f"layer {head['layer']} \u00b7 head {head['head']}", size, TEXT_COLOR)]
    if head["kind"]:
        role = role_lines(head)
        role = [f"{role[0]}, {role[1]}"] if one_line else role
        lines += [text(line, size * 0.9, MUTED) for line in role]
    return VGroup(*lines).arrange(DOWN, buff=0.1, aligned_edge=aligned_edge)


class AttentionPatterns(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        tokens, heads = data["tokens"], data["heads"]
        patterns = np.asarray(data["patterns"])  # [N, T, T]
        n_tokens = len(tokens)

        # --- the gallery ---------------------------------------------------------------
        cell = 2.4 / n_tokens
        maps = [
            Heatmap(
                pattern,
                PATTERN_SCALE,
                cell_size=cell,
                row_labels=tokens if i == 0 else None,
                col_labels=tokens,
                label_size=LABEL_SIZE * 0.7,
            )
            for i, pattern in enumerate(patterns)
        ]
        names = VGroup(*(head_label(h, LABEL_SIZE * 0.8) for h in heads))
        # one column per head, as wide as the wider of its map and its label
        columns = Group(
            *(
                Group(m, name.next_to(m.image, DOWN, buff=0.25))
                for m, name in zip(maps, names, strict=True)
            )
        ).arrange(RIGHT, buff=0.45, aligned_edge=UP)
        gallery_maps = Group(*maps)
        bar = ColorBar(PATTERN_SCALE, height=maps[-1].image.height, label_size=CAPTION_SIZE)
        bar.next_to(maps[-1].image, RIGHT, buff=0.35)
        bar_title = text("attention", CAPTION_SIZE, MUTED).next_to(bar, DOWN, buff=0.2)
        gallery = Group(gallery_maps, names, bar, bar_title)
        threshold = next((h["role_threshold"] for h in heads if h["kind"]), None)
        if threshold is not None:
            rule = text(
                f"a head is named by its role only when its score is at least "
                f"{fmt_float(threshold)}",
                LABEL_SIZE * 0.8,
                MUTED,
            )
            gallery.add(rule.next_to(columns, DOWN, buff=0.45))
        fit_in(gallery, CONTENT_ZONE, allow_grow=True)

        heading = title("Where real attention heads look")
        source = caption(self.inputs.model_caption)
        with self.beat(
            "Attention heads decide which earlier tokens each token looks at. Here are "
            f"{len(heads)} heads of this model reading our prompt."
        ):
            self.play(Write(heading), run_time=1.2)
            self.play(FadeIn(source), run_time=0.6)
            for heatmap, name in zip(maps, names, strict=True):
                self.play(FadeIn(heatmap), FadeIn(name), run_time=0.9)
            self.play(
                FadeIn(bar), FadeIn(bar_title), *(FadeIn(m) for m in gallery[4:]), run_time=0.8
            )
            self.wait(2.5)

        # --- one head enlarged ------------------------------------------------------------
        focus = 0
        small = maps[focus]
        left, right = CONTENT_ZONE.split_columns(2, gap=0.6)
        big = Heatmap(
            patterns[focus],
            PATTERN_SCALE,
            cell_size=0.5,
            row_labels=tokens,
            col_labels=tokens,
            label_size=LABEL_SIZE * 0.85,
        )
        fit_in(big, Zone(left.left, left.right + 0.8, left.bottom, left.top), align="right")
        big_bar = ColorBar(PATTERN_SCALE, height=big.image.height, label_size=CAPTION_SIZE)
        big_bar.next_to(big.image, RIGHT, buff=0.3)

        with self.beat(
            f"Let's enlarge layer {heads[focus]['layer']}, head {heads[focus]['head']}."
        ):
            others = [m for i, m in enumerate(maps) if i != focus]
            self.play(
                *(FadeOut(m) for m in others),
                FadeOut(names),
                FadeOut(bar_title),
                *(FadeOut(m) for m in gallery[4:]),
                FadeOut(small.col_labels),
                FadeOut(small.row_labels) if len(small.row_labels) else FadeIn(VGroup()),
                run_time=0.8,
            )
            self.play(
                Transform(small.image, big.image),
                Transform(small.grid, big.grid),
                Transform(bar, big_bar),
                run_time=1.5,
            )
            self.remove(small, bar)
            self.add(big, big_bar)
            self.play(FadeIn(big.row_labels), FadeIn(big.col_labels), run_time=0.8)

        # --- reading it ---------------------------------------------------------------------
        row = n_tokens - 1  # the last token: it may look at every token before it
        col = int(np.argmax(patterns[focus][row]))
        weight = float(patterns[focus][row, col])
        head = heads[focus]
        notes = VGroup(
            head_label(head, BODY_SIZE, aligned_edge=LEFT, one_line=True),
            text("each row: a token looking back", LABEL_SIZE + 2, QUERY),
            text("each column: a token it looks at", LABEL_SIZE + 2, KEY),
            text("each row adds up to 1", LABEL_SIZE + 2, TEXT_COLOR),
        ).arrange(DOWN, buff=0.35, aligned_edge=LEFT)
        reading = VGroup(
            text(f"{tokens[row]} \u2192 {tokens[col]}", BODY_SIZE, HIGHLIGHT),
            text(f"{fmt_float(weight)} of its attention", LABEL_SIZE + 2, HIGHLIGHT),
        ).arrange(DOWN, buff=0.15, aligned_edge=LEFT)
        panel = VGroup(notes, reading).arrange(DOWN, buff=0.6, aligned_edge=LEFT)
        panel_zone = Zone(big_bar.get_right()[0] + 0.9, right.right, right.bottom, right.top)
        fit_in(panel, panel_zone, align="left")
        self.shown_numbers = {
            "tokens": list(tokens),
            "heads": [f"{h['layer']}.{h['head']}" for h in heads],
            "gallery_labels": [", ".join(role_lines(h)) if h["kind"] else "" for h in heads],
            "role_threshold": fmt_float(threshold) if threshold is not None else None,
            "enlarged_head": f"{head['layer']}.{head['head']}",
            "enlarged_head_score": fmt_float(head["score"]) if head["kind"] else None,
            "read_cell": {"row": row, "col": col, "weight": fmt_float(weight)},
        }

        with self.beat(
            "Each row is a token looking back, each column a token it may look at, and every row "
            "adds up to one."
        ):
            self.play(FadeIn(notes[0]), run_time=0.8)
            row_box = big.highlight_row(row, QUERY)
            col_box = big.highlight_col(col, KEY)
            self.play(FadeIn(notes[1]), FadeIn(row_box), run_time=1)
            self.wait(1.2)
            self.play(FadeIn(notes[2]), FadeIn(col_box), run_time=1)
            self.wait(1.2)
            self.play(FadeIn(notes[3]), run_time=0.8)
            self.wait(1)
        with self.beat(
            f"The last token, {say_token(tokens[row])}, gives {fmt_float(weight)} of its attention "
            f"to {say_token(tokens[col])}."
        ):
            cell_box = big.highlight_cell(row, col, HIGHLIGHT)
            self.play(
                FadeOut(row_box), FadeOut(col_box), FadeIn(cell_box), FadeIn(reading), run_time=1.2
            )
            self.wait(1)
        self.play(
            LaggedStart(
                *(FadeIn(big.highlight_cell(i, i - 1, HIGHLIGHT)) for i in range(1, n_tokens)),
                lag_ratio=0.15,
            )
            # where a previous-token head looks, drawn only when this one clearly does
            if head["kind"] == "previous_token" and head["has_role"]
            else FadeIn(VGroup()),
            run_time=1.5,
        )
        self.wait(3)
