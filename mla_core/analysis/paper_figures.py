"""Figures the video quotes from papers: measured by their authors, not computed here.

Everything else on screen is computed by `mla_core`. The few numbers that can only be
cited (a throughput measured on DeepSeek's own cluster) live in this one module, each
with where it comes from, so a scene never types one in and a reader can check it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperFigure:
    """One reported number with its unit, what it measures and where it is printed."""

    value: float
    unit: str  # "x" for a factor, "%" for a percentage
    what: str  # one line: what was measured, against what
    paper: str  # short name of the paper
    arxiv: str  # its arXiv identifier, "arXiv NNNN.NNNNN"
    where: str  # the place in the paper

    @property
    def citation(self) -> str:
        return f"{self.paper}, {self.arxiv}, {self.where}"


# "boosts the maximum generation throughput to 5.76 times" (DeepSeek-V2 vs DeepSeek 67B,
# measured on 8 x H800 with FP8 weights and ~6-bit KV cache quantisation).
GENERATION_THROUGHPUT_SPEEDUP = PaperFigure(
    value=5.76,
    unit="x",
    what="maximum generation throughput of DeepSeek-V2 relative to DeepSeek 67B",
    paper="DeepSeek-V2 paper",
    arxiv="arXiv 2405.04434",
    where="abstract and Figure 1(b)",
)

# Measured in deployment against DeepSeek 67B, with KV quantisation: NOT the 56.9x the
# cache formula gives for DeepSeek-V3 dims (see mla_core.analysis.cache_size and REFERENCE.md).
KV_CACHE_REDUCTION_DEPLOYED = PaperFigure(
    value=93.3,
    unit="%",
    what="KV cache reduction of DeepSeek-V2 relative to DeepSeek 67B in deployment",
    paper="DeepSeek-V2 paper",
    arxiv="arXiv 2405.04434",
    where="abstract and Figure 1(b)",
)
