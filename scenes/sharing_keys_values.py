"""Beat 6: MQA and GQA shrink the KV cache by sharing keys and values between heads.

Left: one layer's real keys and values of the prompt, one block per head (tokens as rows,
head_dim numbers as columns, one fixed colour scale). Sharing merges the blocks of a group
of heads into one block, the group mean (GQA), then all of them into one (MQA); a brace
shows which query heads read the shared block. Right: what each variant costs, measured
on held-out text against the model itself, then the DeepSeek-V2 paper's ablation (Table 8).
Data: `mla_core.scene_data.sharing_keys_values` (`mla_core.analysis.kv_sharing`).
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
    GrowFromEdge,
    LaggedStart,
    ReplacementTransform,
    SurroundingRectangle,
    VGroup,
    Write,
)

from scenes.components import (
    CAPTION_SIZE,
    CONTENT_ZONE,
    HIGHLIGHT,
    KEY,
    LABEL_SIZE,
    MUTED,
    QUERY,
    TEXT_COLOR,
    VALUE,
    ColorBar,
    HBarChart,
    Heatmap,
    VideoScene,
    Zone,
    caption,
    diverging_scale,
    fit_in,
    fmt_float,
    fmt_int,
    text,
    title,
)


def grid_share(n_head: int) -> float:
    """The fraction of the content width the heads' blocks get (more for more heads); the
    rest holds the tables."""
    return min(0.55, 0.3 + 0.04 * n_head)


NOTE_HEIGHT = 0.55  # the one-line narration under the title
COLUMN_NAMES = ("K/V heads", "bytes / token", "attention KL, head {head}", "perplexity")


def block_at(values: np.ndarray, scale, cell: float, x: float, y: float, color: str) -> Group:
    """One head's (or group's) [T, D] keys or values, drawn as [D, T] (a column per token),
    outlined in the tensor's colour, centred at (x, y)."""
    heatmap = Heatmap(np.asarray(values).T, scale, cell_size=cell, grid=False)
    outline = SurroundingRectangle(heatmap.image, buff=0, color=color, stroke_width=2)
    return Group(heatmap, outline).move_to([x, y, 0])


class SharingKeysValues(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        head, layer = data["head"], int(data["layer"])
        n_head, group_counts, labels = int(data["n_head"]), data["group_counts"], data["labels"]
        gqa_groups = data["gqa_groups"]
        n_tokens = len(data["tokens"])
        head_dim = int(data["head_dim"])
        costs = data["costs"]
        kv = {g: (np.asarray(data[f"k_g{g}"]), np.asarray(data[f"v_g{g}"])) for g in group_counts}
        head_name = f"{head['layer']}.{head['head']}"
        shown = {
            "kv_heads": [str(g) for g in group_counts],
            "bytes_per_token": [fmt_int(b) for b in data["bytes_per_token"]],
            "head_kl": [fmt_float(x, 3) for x in data["head_kl"]],
            "perplexity": [fmt_float(x, 1) for x in data["perplexity"]],
        }
        paper = data["paper"]
        self.shown_numbers = {
            "layer": layer,
            "head": head_name,
            "variants": list(labels),
            **{k: dict(zip(labels, v, strict=True)) for k, v in shown.items()},
            "paper_mmlu": {r["attention"]: fmt_float(r["mmlu"], 1) for r in paper["rows"]},
        }

        heading = title("Sharing keys and values: MQA and GQA")
        source = caption(self.inputs.model_caption)
        note_zone = Zone(
            CONTENT_ZONE.left, CONTENT_ZONE.right, CONTENT_ZONE.top - NOTE_HEIGHT, CONTENT_ZONE.top
        )

        def note(s: str):
            return fit_in(text(s, LABEL_SIZE + 2, TEXT_COLOR), note_zone)

        body_top = note_zone.bottom - 0.2
        split = CONTENT_ZONE.left + grid_share(n_head) * CONTENT_ZONE.width
        grid_zone = Zone(CONTENT_ZONE.left, split - 0.3, CONTENT_ZONE.bottom, body_top)
        table_zone = Zone(split + 0.3, CONTENT_ZONE.right, CONTENT_ZONE.bottom, body_top)

        # --- the heads: a label per query head, below it the head's K and V blocks -----------
        # Each block is [D, T] on screen (a column per token, D numbers tall, square cells).
        heads_k, heads_v = kv[n_head]
        limit = float(np.percentile(np.abs(np.concatenate([heads_k, heads_v])), 98))
        scale = diverging_scale(limit, "key/value entries")
        label_h, brace_h, letter_h, shape_h = 0.45, 0.45, 0.35, 0.4
        # between heads (closer when there are many), between K and V, the colour bar
        pair_gap, kv_gap, bar_w = min(0.35, 1.5 / n_head), 0.06, 0.9
        cell = min(
            (grid_zone.height - label_h - brace_h - letter_h - shape_h) / head_dim,
            (grid_zone.width - bar_w - (n_head - 1) * pair_gap - n_head * kv_gap)
            / (2 * n_tokens * n_head),
        )
        block_w, block_h = n_tokens * cell, head_dim * cell
        pair_w = 2 * block_w + kv_gap
        grid_w = n_head * pair_w + (n_head - 1) * pair_gap
        left = grid_zone.left + (grid_zone.width - bar_w - grid_w) / 2
        grid_h = label_h + brace_h + letter_h + block_h + shape_h
        y_label = (grid_zone.top + grid_zone.bottom) / 2 + grid_h / 2 - label_h / 2
        y_letters = y_label - label_h / 2 - brace_h - letter_h / 2
        y_blocks = y_letters - letter_h / 2 - block_h / 2

        def pair_x(h: float) -> float:
            """Centre of head h's K|V pair (h may be fractional: a group's middle)."""
            return left + pair_w / 2 + h * (pair_w + pair_gap)

        size = min(LABEL_SIZE, max(12.0, pair_w * 22))
        row_labels = VGroup()
        for h in range(n_head):
            if pair_w >= 1.0:
                label = VGroup(text(f"head {h}", size, TEXT_COLOR), text("q", size, QUERY))
                label.arrange(RIGHT, buff=0.08)
            else:  # many heads: q with the head's number
                label = VGroup(text("q", size, QUERY), text(str(h), size * 0.75, TEXT_COLOR))
                label.arrange(RIGHT, buff=0.02, aligned_edge=DOWN)
            if label.width > pair_w + 0.8 * pair_gap:
                label.scale_to_fit_width(pair_w + 0.8 * pair_gap)
            row_labels.add(label.move_to([pair_x(h), y_label, 0]))

        def letters_at(h: float) -> VGroup:
            return VGroup(
                text("K", size, KEY).move_to([pair_x(h) - (block_w + kv_gap) / 2, y_letters, 0]),
                text("V", size, VALUE).move_to([pair_x(h) + (block_w + kv_gap) / 2, y_letters, 0]),
            )

        headers = VGroup(*(letters_at(h) for h in range(n_head)))
        shape_note = text(
            f"layer {layer}: a column per token ({n_tokens}), {head_dim} numbers tall",
            CAPTION_SIZE,
            MUTED,
        )
        shape_note.set(width=min(shape_note.width, grid_zone.width))
        colour_bar = ColorBar(scale, height=min(2.0, max(1.2, block_h * 0.8)), width=0.16)
        colour_bar.move_to([left + grid_w + 0.25, y_blocks, 0], aligned_edge=LEFT)
        below = min(y_blocks - block_h / 2, colour_bar.get_bottom()[1])
        shape_note.move_to([grid_zone.center[0], below - shape_h / 2 - 0.05, 0])

        def blocks(groups: int) -> tuple[Group, Group, VGroup]:
            """Each group's K and V block (and their letters), under its group's middle."""
            per_group = n_head // groups
            k_blocks, v_blocks, letters = Group(), Group(), VGroup()
            for g in range(groups):
                h = g * per_group + (per_group - 1) / 2
                x = pair_x(h)
                k_blocks.add(
                    block_at(
                        kv[groups][0][g], scale, cell, x - (block_w + kv_gap) / 2, y_blocks, KEY
                    )
                )
                v_blocks.add(
                    block_at(
                        kv[groups][1][g], scale, cell, x + (block_w + kv_gap) / 2, y_blocks, VALUE
                    )
                )
                letters.add(letters_at(h))
            return k_blocks, v_blocks, letters

        def braces(groups: int) -> VGroup:
            per_group = n_head // groups
            out = VGroup()
            for g in range(groups):
                members = row_labels[g * per_group : (g + 1) * per_group]
                brace = Brace(members, direction=DOWN, buff=0.08, color=MUTED)
                brace.stretch_to_fit_height(min(brace.height, brace_h * 0.7))
                out.add(brace)
            return out

        # --- the measured costs, a row per variant ---------------------------------------------
        columns = [c.format(head=head_name) for c in COLUMN_NAMES]
        cell_texts = [
            [str(g), *(shown[k][i] for k in list(shown)[1:])] for i, g in enumerate(group_counts)
        ]
        table = VGroup()
        header_row = VGroup(
            text("", LABEL_SIZE), *(text(c, LABEL_SIZE - 4, MUTED) for c in columns)
        )
        body_rows = [
            VGroup(
                text(labels[i], LABEL_SIZE, HIGHLIGHT if labels[i] != "MHA" else TEXT_COLOR),
                *(text(v, LABEL_SIZE, TEXT_COLOR) for v in cell_texts[i]),
            )
            for i in range(len(group_counts))
        ]
        col_w = [max(r[j].width for r in [header_row, *body_rows]) for j in range(len(columns) + 1)]
        x = 0.0
        for j, w in enumerate(col_w):
            for r, row in enumerate([header_row, *body_rows]):
                if j == 0:  # names left-aligned, numbers right-aligned
                    row[j].move_to([x, -0.55 * r, 0], aligned_edge=LEFT)
                else:  # tops aligned: a comma's descender must not lift a number
                    row[j].move_to([x + w, -0.55 * r, 0], aligned_edge=RIGHT)
                    row[j].align_to(row[0] if r else row[j], UP)
            x += w + 0.35
        table.add(header_row, *body_rows)
        table_title = text(
            "this model, K/V mean-pooled per group, no retraining", LABEL_SIZE - 2, MUTED
        )
        text_note = text(
            f"pooling as in the {data['conversion_source']}; "
            f"{fmt_int(costs['text']['scored_tokens'])} held-out tokens",
            CAPTION_SIZE,
            MUTED,
        )
        no_gqa = None
        if gqa_groups is None:
            no_gqa = text(
                f"no GQA here: no group count between 1 and {n_head} divides {n_head} heads",
                CAPTION_SIZE,
                MUTED,
            )

        # --- the paper's ablation ----------------------------------------------------------------
        mmlu = [r["mmlu"] for r in paper["rows"]]
        paper_names = [r["attention"] for r in paper["rows"]]
        chart = HBarChart(
            mmlu,
            paper_names,
            colors=[TEXT_COLOR if n == "MHA" else HIGHLIGHT for n in paper_names],
            value_labels=[fmt_float(v, 1) for v in mmlu],
            length=3.4,
            bar_height=0.34,
            row_gap=0.18,
            max_value=max(mmlu),
            label_size=LABEL_SIZE - 2,
        )
        paper_title = text(
            f"DeepSeek-V2 ablation, {paper['rows'][0]['model']} models: MMLU (%)",
            LABEL_SIZE - 2,
            MUTED,
        )
        citation = text(paper["citation"], CAPTION_SIZE, MUTED)

        right = VGroup(table_title, text_note, table)
        if no_gqa is not None:
            right.add(no_gqa)
        right.add(paper_title, chart, citation)
        right.arrange(DOWN, buff=0.22, aligned_edge=LEFT)
        text_note.shift(UP * 0.1)
        paper_title.shift(DOWN * 0.25)
        chart.shift(DOWN * 0.25)
        citation.shift(DOWN * 0.25)
        fit_in(right, table_zone, align="left")

        # --- the story, one spoken beat at a time -------------------------------------------------
        bytes_shown, ppl_shown = shown["bytes_per_token"], shown["perplexity"]
        k_heads, v_heads, _ = blocks(n_head)
        current_note = note(
            f"Multi-head attention (MHA): each of the {n_head} heads caches its own K and V"
        )
        with self.beat(
            f"In multi-head attention, each of the {n_head} heads caches its own keys "
            f"and values, shown here for layer {layer}."
        ):
            self.play(Write(heading), FadeIn(source), run_time=1.2)
            self.play(
                FadeIn(current_note),
                FadeIn(headers),
                FadeIn(shape_note),
                FadeIn(row_labels),
                run_time=1,
            )
            self.play(
                LaggedStart(*(FadeIn(b) for b in [*k_heads, *v_heads]), lag_ratio=0.1),
                FadeIn(colour_bar),
                run_time=1.8,
            )
            self.wait(1)
        with self.beat(f"For this model that is {bytes_shown[0]} bytes per token."):
            self.play(
                FadeIn(table_title),
                FadeIn(text_note),
                FadeIn(header_row),
                FadeIn(body_rows[0]),
                run_time=1,
            )
            self.wait(1)

        shown_k, shown_v, shown_letters, shown_braces = k_heads, v_heads, headers, VGroup()
        for i, groups in enumerate(group_counts[1:], start=1):
            per_group = n_head // groups
            if groups == 1:
                if no_gqa is not None:  # say why there is no GQA step
                    gqa_note = note(
                        f"GQA shares K and V within groups of heads: "
                        f"the group count must divide the {n_head} heads"
                    )
                    with self.beat(
                        "Grouped-query attention shares them within groups, but the group "
                        f"count must divide the {n_head} heads: this model has only MHA and MQA."
                    ):
                        self.play(ReplacementTransform(current_note, gqa_note), run_time=0.8)
                        self.play(FadeIn(no_gqa), run_time=1)
                        self.wait(1)
                    current_note = gqa_note
                line = f"MQA: all {n_head} query heads share ONE key head and ONE value head"
                spoken = (
                    f"Multi-query attention: all {n_head} query heads share one key head and "
                    "one value head, the average of theirs."
                )
            else:
                line = f"GQA-{groups}: each group of {per_group} query heads shares one K and one V"
                spoken = (
                    f"Grouped-query attention with {groups} groups: each group of {per_group} "
                    "query heads shares one key and one value head, the average of theirs."
                )
            new_note = note(line)
            new_k, new_v, new_letters = blocks(groups)
            new_braces = braces(groups)
            with self.beat(spoken):
                self.play(ReplacementTransform(current_note, new_note), run_time=0.8)
                current_note = new_note
                # the group's blocks slide together, then become their mean
                moves = []
                old_per_group = n_head // len(shown_k)
                for j, (bk, bv, letters) in enumerate(
                    zip(shown_k, shown_v, shown_letters, strict=True)
                ):
                    target = j * old_per_group // per_group
                    moves += [
                        bk.animate.move_to(new_k[target]),
                        bv.animate.move_to(new_v[target]),
                        letters.animate.move_to(new_letters[target]),
                    ]
                self.play(*moves, run_time=1.3)
                brace_anim = (
                    ReplacementTransform(shown_braces, new_braces)
                    if len(shown_braces)
                    else FadeIn(new_braces)
                )
                # the letters slid onto each other: one pair per group from now on, no blink
                self.remove(shown_letters)
                self.add(new_letters)
                self.play(
                    FadeOut(shown_k),
                    FadeOut(shown_v),
                    FadeIn(new_k),
                    FadeIn(new_v),
                    brace_anim,
                    run_time=1,
                )
            shown_k, shown_v, shown_letters, shown_braces = new_k, new_v, new_letters, new_braces
            with self.beat(
                f"The cache drops to {bytes_shown[i]} bytes per token, and the perplexity "
                f"goes from {ppl_shown[0]} to {ppl_shown[i]}."
            ):
                self.play(FadeIn(body_rows[i], shift=0.15 * DOWN), run_time=0.9)
                self.wait(1)

        perplexity = list(data["perplexity"])
        if all(p > perplexity[0] for p in perplexity[1:]):
            verdict = (
                "Smaller cache, higher perplexity. Trained with shared K/V, quality drops too:"
            )
        else:
            verdict = "Smaller cache. Trained with shared K/V from scratch, quality drops:"
        final_note = note(verdict)
        mmlu_said = [f"{fmt_float(r['mmlu'], 1)} with {r['attention']}" for r in paper["rows"]]
        with self.beat(
            f"Trained that way from scratch, DeepSeek-V2's {paper['rows'][0]['model']} models "
            f"scored {mmlu_said[0]} on MMLU, {', '.join(mmlu_said[1:])}."
        ):
            self.play(ReplacementTransform(current_note, final_note), run_time=0.8)
            self.play(FadeIn(paper_title), FadeIn(chart.axis), FadeIn(chart.names), run_time=0.8)
            self.play(
                LaggedStart(*(GrowFromEdge(b, LEFT) for b in chart.bars), lag_ratio=0.3),
                run_time=1.5,
            )
            self.play(FadeIn(chart.value_labels), FadeIn(citation), run_time=0.8)
            self.wait(3)
