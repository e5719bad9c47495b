"""Beat 3b: inside one head, from queries, keys and values to the head's output.

For one real head on the prompt: Q, K and V (one row per token, from the live tensors);
q . k for every key of one query row, cell by cell, then the whole grid; the 1/sqrt(d_head)
scale; the causal mask; softmax row by row into the attention pattern; and that row of
the pattern times V, which is the head's output z for that token. Every number drawn is
the real one, from `mla_core.scene_data.queries_keys_values`.

Layout: token labels on the left, and every grid row on the same line as the matrix row
of the same token, so the eye can follow a token across the screen.
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
    ImageMobject,
    LaggedStart,
    ManimColor,
    MathTex,
    ReplacementTransform,
    SurroundingRectangle,
    Transform,
    VGroup,
    Write,
)
from manim.constants import RESAMPLING_ALGORITHMS

from scenes.components import (
    BACKGROUND,
    CONTENT_ZONE,
    GRID,
    HIGHLIGHT,
    KEY,
    LABEL_SIZE,
    MINUS,
    MUTED,
    PATTERN_SCALE,
    QUERY,
    TEXT_COLOR,
    VALUE,
    Heatmap,
    MatrixBlock,
    VideoScene,
    caption,
    diverging_scale,
    fmt_float,
    math_tex,
    say_token,
    text,
    title,
)

MATRIX_SIZE = LABEL_SIZE * 0.75  # entries of Q, K, V
CELL_NUMBER_SIZE = LABEL_SIZE * 0.62  # numbers written inside grid cells
SHOW_COLS = 4  # columns of Q, K, V drawn: the first two, an ellipsis, the last


def fmt_score(x: float) -> str:
    """A grid cell's number: '−∞' for a masked cell, else two significant places."""
    if np.isneginf(x):
        return MINUS + "\u221e"
    return fmt_float(x, 1 if abs(x) >= 10 else 2)


def row_entries(block: MatrixBlock, row: int, n_cols: int) -> VGroup:
    """The drawn entries of one row of a block that shows every row."""
    return block.entries[row * n_cols : (row + 1) * n_cols]


def mask_overlay(heatmap: Heatmap, mask: np.ndarray, color: str = BACKGROUND) -> ImageMobject:
    """An image over `heatmap`: `color` where mask is True, transparent elsewhere."""
    rgba = np.zeros(mask.shape + (4,), dtype=np.uint8)
    rgba[mask, :3] = np.round(np.array(ManimColor(color).to_rgb()) * 255).astype(np.uint8)
    rgba[mask, 3] = 255
    image = ImageMobject(rgba)
    image.set_resampling_algorithm(RESAMPLING_ALGORITHMS["nearest"])
    image.stretch_to_fit_width(heatmap.image.width).stretch_to_fit_height(heatmap.image.height)
    return image.move_to(heatmap.image)


class QueriesKeysValues(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        tokens = data["tokens"]
        head, r = data["head"], int(data["focus_row"])
        q, k, v = (np.asarray(data[n]) for n in "qkv")
        dots, scores = np.asarray(data["dot_products"]), np.asarray(data["scores"])
        masked, pattern = np.asarray(data["masked_scores"]), np.asarray(data["pattern"])
        z = np.asarray(data["z"])
        n_tokens, head_dim = q.shape

        heading = title(f"Inside one head: layer {head['layer']}, head {head['head']}")
        source = caption(self.inputs.model_caption)

        # --- layout: every row of every matrix and of the grid on its token's line ------
        def block(values: np.ndarray, color: str) -> MatrixBlock:
            return MatrixBlock(
                values, color=color, show_rows=n_tokens, show_cols=SHOW_COLS, size=MATRIX_SIZE
            )

        q_block, k_block, v_block = block(q, QUERY), block(k, KEY), block(v, VALUE)
        k_block.next_to(q_block, RIGHT, buff=0.5)
        v_block.next_to(k_block, RIGHT, buff=0.5)
        n_cols = len(q_block.entries) // n_tokens
        row_y = [q_block.entries[i * n_cols].get_y() for i in range(n_tokens)]
        row_height = row_y[0] - row_y[1]
        labels = VGroup(*(text(t, LABEL_SIZE * 0.8, TEXT_COLOR) for t in tokens))
        for label, y in zip(labels, row_y, strict=True):
            label.move_to([0, y, 0]).align_to(q_block.get_left() + 0.2 * LEFT, RIGHT)
        # the column of numbers for the focus row (one per key), then the whole grid
        column_x = k_block.get_right()[0] + 0.75
        grid_scale = diverging_scale(float(np.percentile(np.abs(dots), 98)), "q.k")
        grid = Heatmap(
            np.zeros((n_tokens, n_tokens)),
            grid_scale,
            cell_size=row_height,
            col_labels=tokens,
            label_size=LABEL_SIZE * 0.7,
            label_color=KEY,
        )
        grid.shift(
            (column_x + 0.85 - grid.image.get_left()[0]) * RIGHT
            + (row_y[0] + row_height / 2 - grid.image.get_top()[1]) * UP
        )
        everything = Group(labels, q_block, k_block, v_block, grid)
        fit = min(1.0, CONTENT_ZONE.width / everything.width)
        fit = min(fit, (CONTENT_ZONE.height - 0.6) / everything.height)
        shift = CONTENT_ZONE.center - everything.get_center() + 0.3 * DOWN
        everything.scale(fit, about_point=everything.get_center()).shift(shift)
        row_y = [q_block.entries[i * n_cols].get_y() for i in range(n_tokens)]
        column_x = k_block.get_right()[0] + 0.75 * fit

        def names_over(*pairs: tuple[str, MatrixBlock, str]) -> VGroup:
            top = q_block.get_top()[1] + 0.35
            return VGroup(
                *(
                    math_tex(tex, color=color).move_to([b.get_x(), top, 0], aligned_edge=DOWN)
                    for tex, b, color in pairs
                )
            )

        names = names_over(("Q", q_block, QUERY), ("K", k_block, KEY), ("V", v_block, VALUE))

        def column(values: np.ndarray, fmt, color: str = TEXT_COLOR) -> VGroup:
            return VGroup(
                *(
                    text(fmt(x), MATRIX_SIZE * fit, color).move_to([column_x, y, 0])
                    for x, y in zip(values, row_y, strict=True)
                )
            )

        def column_header(*parts: str) -> MathTex:
            """MathTex of `parts`, the ones that are just q or k in their role colours."""
            header = math_tex(*parts, size=LABEL_SIZE)
            for part, piece in zip(parts, header, strict=True):
                piece.set_color({"q": QUERY, "k": KEY}.get(part, TEXT_COLOR))
            return header.move_to([column_x, names[0].get_y(), 0])

        # --- Q, K, V ----------------------------------------------------------------------
        with self.beat(
            f"Inside one head, layer {head['layer']}, head {head['head']}, every token gets three "
            f"vectors of {head_dim} numbers: a query, a key and a value."
        ):
            self.play(Write(heading), FadeIn(source), run_time=1.2)
            self.play(FadeIn(labels), run_time=0.8)
            for name, b in zip(names, (q_block, k_block, v_block), strict=True):
                self.play(FadeIn(name), FadeIn(b), run_time=0.9)
            self.wait(2)

        # --- q . k for one query, key by key ---------------------------------------------
        with self.beat(
            f"To decide where {say_token(tokens[r])} looks, its query is compared with every key: "
            "one dot product per key."
        ):
            self.play(FadeOut(v_block), FadeOut(names[2]), run_time=0.8)
            q_box = SurroundingRectangle(row_entries(q_block, r, n_cols), color=QUERY, buff=0.05)
            label_box = SurroundingRectangle(labels[r], color=QUERY, buff=0.05)
            self.play(FadeIn(q_box), FadeIn(label_box), run_time=0.6)
            header = column_header("q", r"\cdot", "k")
            self.play(FadeIn(header), FadeIn(grid), run_time=0.8)
            dot_numbers = column(dots[r], fmt_score)
            k_box = None
            fills = Group()
            for j in range(n_tokens):
                box = SurroundingRectangle(row_entries(k_block, j, n_cols), color=KEY, buff=0.05)
                fill = Heatmap(
                    dots[r : r + 1, j : j + 1], grid_scale, cell_size=grid.cell_size * fit
                )
                fill.move_to(grid.cell_center(r, j))
                slow = j < 2
                if k_box is None:
                    k_box = box
                    self.play(FadeIn(k_box), run_time=0.5)
                else:
                    self.play(Transform(k_box, box), run_time=0.45 if slow else 0.2)
                self.play(FadeIn(dot_numbers[j]), FadeIn(fill), run_time=0.6 if slow else 0.25)
                fills.add(fill)
        with self.beat("Every query against every key gives a whole grid of scores."):
            self.wait(0.6)
            full = Heatmap(dots, grid_scale, cell_size=grid.cell_size * fit).move_to(grid.image)
            grid_title = text("every query, every key", LABEL_SIZE * 0.8, MUTED)
            grid_title.next_to(grid.image, DOWN, buff=0.2)
            self.play(FadeOut(k_box), FadeIn(full), FadeIn(grid_title), run_time=1.2)
            self.remove(*fills)
            self.wait(1)

        # --- scale by 1/sqrt(d_head) -----------------------------------------------------
        with self.beat(
            f"The scores are divided by the square root of {head_dim}, the number of values "
            "in each key."
        ):
            scaled_header = column_header("q", r"\cdot", "k", rf"/ \sqrt{{{head_dim}}}")
            scaled_numbers = column(scores[r], fmt_score)
            scaled = Heatmap(scores, grid_scale, cell_size=grid.cell_size * fit).move_to(grid.image)
            self.play(
                ReplacementTransform(header, scaled_header),
                ReplacementTransform(dot_numbers, scaled_numbers),
                FadeIn(scaled),
                run_time=1.5,
            )
            self.remove(full)
            self.wait(1.2)

        # --- the causal mask ----------------------------------------------------------------
        with self.beat(
            "A token may not look at the tokens after it, so those scores are masked out."
        ):
            future = np.triu(np.ones((n_tokens, n_tokens), dtype=bool), k=1)
            overlay = mask_overlay(grid, future, GRID)
            masked_numbers = column(masked[r], fmt_score)
            later = VGroup(*(row_entries(k_block, j, n_cols) for j in range(r + 1, n_tokens)))
            mask_note = text("a token may not look ahead", LABEL_SIZE * 0.8, MUTED)
            mask_note.move_to(grid_title)
            self.play(
                FadeIn(overlay),
                ReplacementTransform(scaled_numbers, masked_numbers),
                later.animate.set_opacity(0.3),
                ReplacementTransform(grid_title, mask_note),
                run_time=1.2,
            )
            self.wait(1.2)

        # --- softmax, row by row -------------------------------------------------------------
        with self.beat(
            "A softmax turns each row into weights that add up to one: the attention pattern."
        ):
            softmax_header = column_header(r"\mathrm{softmax}")
            pattern_numbers = column(pattern[r], lambda x: fmt_float(x, 2), HIGHLIGHT)
            rows = Group()
            for i in range(n_tokens):
                row = Heatmap(pattern[i : i + 1], PATTERN_SCALE, cell_size=grid.cell_size * fit)
                rows.add(row.move_to(grid.cell_center(i, (n_tokens - 1) / 2)))
            pattern_title = text("attention pattern", LABEL_SIZE * 0.8, MUTED).move_to(mask_note)
            self.play(
                ReplacementTransform(scaled_header, softmax_header),
                ReplacementTransform(masked_numbers, pattern_numbers),
                FadeIn(rows[r]),
                run_time=1.5,
            )
            self.wait(0.8)
            self.play(
                LaggedStart(*(FadeIn(rows[i]) for i in range(n_tokens) if i != r), lag_ratio=0.3),
                ReplacementTransform(mask_note, pattern_title),
                run_time=2.5,
            )
            self.wait(1.2)

        with self.beat(
            f"The head's output for {say_token(tokens[r])} is the sum of the values, each weighted "
            "by the attention it gets."
        ):
            # --- the pattern's row times V: the head's output z ---------------------------------
            self.play(
                FadeOut(Group(k_block, names[1], q_block, names[0], q_box)),
                FadeOut(Group(grid, scaled, overlay, rows, pattern_title)),
                run_time=1,
            )
            # V takes Q's place and the pattern's row moves along with it (weight p_j on the
            # line of v_j); then z to the right; the whole picture is centred in the frame
            to_v = (q_block.get_right()[0] - k_block.get_right()[0]) * RIGHT
            z_block = MatrixBlock(
                z[r : r + 1], color=VALUE, show_cols=SHOW_COLS, digits=2, size=MATRIX_SIZE
            ).scale(fit)
            z_block.move_to([column_x + to_v[0] + 1.8 + z_block.width / 2, row_y[r], 0])
            centring = (-(labels.get_left()[0] + z_block.get_right()[0]) / 2) * RIGHT
            z_block.shift(centring)
            v_block.move_to(q_block).shift(centring)
            v_name = names_over(("V", v_block, VALUE))
            self.play(
                Group(pattern_numbers, softmax_header).animate.shift(to_v + centring),
                Group(labels, label_box).animate.shift(centring),
                FadeIn(v_block),
                FadeIn(v_name),
                run_time=1.2,
            )
            column_x += to_v[0] + centring[0]
            arrows = VGroup(
                *(
                    Arrow(
                        [column_x + 0.35, row_y[j], 0],
                        z_block.get_left(),
                        buff=0.1,
                        color=MUTED,
                        stroke_width=2,
                        max_tip_length_to_length_ratio=0.06,
                    )
                    for j in range(r + 1)
                )
            )
            z_tex = math_tex(
                "z", "=", r"\textstyle\sum_j", "p_j", r"\,", "v_j", size=LABEL_SIZE + 4
            )
            z_tex[0].set_color(VALUE)
            z_tex[3].set_color(HIGHLIGHT)
            z_tex[5].set_color(VALUE)
            z_tex.next_to(z_block, UP, buff=0.45)
            z_label = text(f"the head's output for {tokens[r]}", LABEL_SIZE * 0.85, MUTED)
            z_label.next_to(z_block, DOWN, buff=0.35)
            self.play(LaggedStart(*(FadeIn(a) for a in arrows), lag_ratio=0.1), run_time=1.2)
            self.play(FadeIn(z_block), Write(z_tex), run_time=1.2)
            self.play(FadeIn(z_label), run_time=0.8)
            self.wait(3)

        self.shown_numbers = {
            "head": f"{head['layer']}.{head['head']}",
            "tokens": list(tokens),
            "focus_row": r,
            "head_dim": head_dim,
            "q": [e.original_text for e in q_block.entries],
            "k": [e.original_text for e in k_block.entries],
            "v": [e.original_text for e in v_block.entries],
            "dot_products_row": [c.original_text for c in dot_numbers],
            "scores_row": [c.original_text for c in scaled_numbers],
            "masked_scores_row": [c.original_text for c in masked_numbers],
            "pattern_row": [c.original_text for c in pattern_numbers],
            "z": [e.original_text for e in z_block.entries],
        }
