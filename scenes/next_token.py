"""Beat 2: a language model predicts the next token.

The prompt is cut into tokens by GPT-2's tokenizer (the strip shows each token's display
string and id), the model gives every possible next token a probability (the top few as
bars), and the most likely one is appended. Everything comes from
`mla_core.scene_data.next_token`.
"""

from __future__ import annotations

from manim import (
    DOWN,
    LEFT,
    UP,
    FadeIn,
    FadeOut,
    FadeTransform,
    GrowFromEdge,
    LaggedStart,
    ReplacementTransform,
    SurroundingRectangle,
    VGroup,
    Write,
)

from scenes.components import (
    BODY_SIZE,
    CAPTION_SIZE,
    CONTENT_ZONE,
    HIGHLIGHT,
    LABEL_SIZE,
    MUTED,
    TEXT_COLOR,
    HBarChart,
    TokenStrip,
    VideoScene,
    caption,
    fmt_int,
    say_token,
    text,
    title,
)


def fmt_probability(p: float) -> str:
    """0.4132 -> '41.3%'; small ones keep two significant digits: 6.8e-05 -> '0.0068%'."""
    percent = 100 * p
    return f"{percent:.1f}%" if percent >= 1 else f"{percent:.2g}%"


class NextToken(VideoScene):
    def construct(self) -> None:
        data = self.scene_data()
        tokens, token_ids = data["tokens"], [int(i) for i in data["token_ids"]]
        top_tokens = data["top_tokens"]
        probabilities = [float(p) for p in data["top_probabilities"]]
        labels = [fmt_probability(p) for p in probabilities]
        self.shown_numbers = {
            "tokens": list(tokens),
            "token_ids": token_ids,
            "top_tokens": list(top_tokens),
            "top_probabilities": labels,
            "chosen_token": data["chosen_token"],
            "vocab_size": fmt_int(data["vocab_size"]),
        }

        heading = title("Predicting the next token")
        source = caption(self.inputs.model_caption)

        # The strip is laid out with the chosen token already in place, so appending it
        # moves nothing; it starts hidden.
        strip = TokenStrip([*tokens, data["chosen_token"]], size=LABEL_SIZE + 4)
        strip.move_to(CONTENT_ZONE.point(0.5, 0.9))
        ids = VGroup(
            *(
                text(str(i), CAPTION_SIZE, MUTED).next_to(strip.token(n), DOWN, buff=0.12)
                for n, i in enumerate([*token_ids, data["chosen_id"]])
            )
        )
        chosen_cell, chosen_id = strip.token(len(tokens)), ids[len(tokens)]
        chosen_cell[0].set_stroke(HIGHLIGHT, width=3)
        chosen_cell[1].set_color(HIGHLIGHT)
        chosen_id.set_color(HIGHLIGHT)

        sentence = text(data["provenance"]["prompt"].strip(), BODY_SIZE + 4, TEXT_COLOR)
        sentence.move_to(strip.cells[: len(tokens)])

        chart = HBarChart(
            probabilities,
            [f"{t}" for t in top_tokens],
            colors=MUTED,
            value_labels=labels,
            length=5.5,
            bar_height=0.42,
            row_gap=0.22,
            label_size=LABEL_SIZE + 2,
        )
        header = text(
            f"the {len(probabilities)} most likely next tokens, of {fmt_int(data['vocab_size'])}",
            LABEL_SIZE,
            MUTED,
        )
        header.next_to(chart, UP, buff=0.3).align_to(chart.bars, LEFT)
        block = VGroup(header, chart)
        block.move_to(CONTENT_ZONE.point(0.5, 0.0)).align_to(CONTENT_ZONE.point(0.5, 0.0), DOWN)
        vocab = fmt_int(data["vocab_size"])
        with self.beat(
            "A language model reads a text and predicts what comes next. Our prompt: "
            f"\u201c{data['provenance']['prompt'].strip()}\u201d"
        ):
            self.play(Write(heading), run_time=1.2)
            self.play(FadeIn(sentence, shift=0.2 * UP), FadeIn(source), run_time=1.2)
            self.wait(1.2)
        with self.beat(
            f"First the text is cut into {len(tokens)} tokens, each a number from a "
            f"vocabulary of {vocab}."
        ):
            self.play(FadeTransform(sentence, strip.cells[: len(tokens)]), run_time=1.5)
            self.play(LaggedStart(*(FadeIn(i) for i in ids[: len(tokens)]), lag_ratio=0.1))
            self.wait(1.5)
        with self.beat(
            f"The model gives every one of the {vocab} tokens a probability of coming next; "
            f"here are the {len(probabilities)} most likely."
        ):
            self.play(FadeIn(header, shift=0.2 * DOWN), run_time=1)
            for i in range(len(probabilities)):
                self.play(
                    FadeIn(chart.names[i]),
                    GrowFromEdge(chart.bars[i], LEFT),
                    FadeIn(chart.value_labels[i]),
                    FadeIn(chart.axis) if i == 0 else FadeIn(VGroup()),
                    run_time=0.7,
                )
            self.wait(2)
        box = SurroundingRectangle(chart.row(0), color=HIGHLIGHT, buff=0.1, corner_radius=0.06)
        with self.beat(
            f"Its best guess is {say_token(data['chosen_token'])}, at {labels[0]}, and that "
            "token joins the text."
        ):
            self.play(FadeIn(box), chart.bars[0].animate.set_fill(HIGHLIGHT), run_time=0.8)
            self.wait(0.8)
            self.play(
                ReplacementTransform(chart.names[0].copy(), chosen_cell),
                FadeIn(chosen_id),
                run_time=1.5,
            )
            self.wait(1.5)
            self.play(FadeOut(box), run_time=0.6)
            self.wait(2)
