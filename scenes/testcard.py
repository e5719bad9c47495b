"""A one-second test card: not part of the story, used by the tests to check the render
pipeline (render, still, video concatenation) quickly."""

from __future__ import annotations

from manim import FadeIn, Scene

from scenes.components import CONTENT_ZONE, LATENT, caption, fit_in, text, title


class TestCard(Scene):
    __test__ = False  # not a pytest test class

    def construct(self) -> None:
        heading = title("Test card")
        body = fit_in(text("render pipeline check", color=LATENT), CONTENT_ZONE)
        self.add(heading, caption("scenes/testcard.py"))
        self.play(FadeIn(body), run_time=1.0)
