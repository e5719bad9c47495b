"""A two-second test card: not part of the story, used by the tests to check the render
pipeline (render, still, extra stills, video concatenation) quickly."""

from __future__ import annotations

from manim import FadeIn, ReplacementTransform

from scenes.components import CONTENT_ZONE, LATENT, VideoScene, caption, fit_in, text, title


class TestCard(VideoScene):
    __test__ = False  # not a pytest test class

    def construct(self) -> None:
        heading = title("Test card")
        body = fit_in(text("render pipeline check", color=LATENT), CONTENT_ZONE)
        self.shown_numbers = {"prompt": self.params.prompt}
        self.add(heading, caption("scenes/testcard.py"))
        # two words each: short enough (narration.min_seconds) not to lengthen a 1 s beat
        with self.beat("Render check."):
            self.play(FadeIn(body), run_time=1.0)  # animation 0: the extra still shows its end
        done = fit_in(text("pipeline checked: final frame", color=LATENT), CONTENT_ZONE)
        with self.beat("Pipeline checked."):
            self.play(ReplacementTransform(body, done), run_time=1.0)  # animation 1
