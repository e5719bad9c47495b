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


# --- ablations of the attention kind (DeepSeek-V2 paper, Appendix D) ----------------------


@dataclass(frozen=True)
class AblationRow:
    """One model of a paper's attention ablation: its benchmark score and, where the paper
    gives it, the KV cache per token (elements, summed over layers)."""

    attention: str  # "MHA", "GQA-8", "MQA", "MLA"
    model: str  # which model of the ablation
    mmlu: float  # 5-shot MMLU accuracy, %
    kv_elements_per_token: float | None = None


@dataclass(frozen=True)
class Ablation:
    rows: tuple[AblationRow, ...]
    what: str
    paper: str
    arxiv: str
    where: str

    @property
    def citation(self) -> str:
        return f"{self.paper}, {self.arxiv}, {self.where}"

    def row(self, attention: str, model: str | None = None) -> AblationRow:
        for r in self.rows:
            if r.attention == attention and (model is None or r.model == model):
                return r
        raise KeyError(f"no {attention!r} row for model {model!r} in {self.where}")


# 7B dense models trained on the same 1.33T tokens, differing only in attention.
SHARING_ABLATION = Ablation(
    rows=(
        AblationRow("MQA", "7B dense", 37.9),
        AblationRow("GQA-8", "7B dense", 41.2),
        AblationRow("MHA", "7B dense", 45.2),
    ),
    what="MMLU (5-shot) of 7B dense models with MQA, GQA (8 groups) and MHA",
    paper="DeepSeek-V2 paper",
    arxiv="arXiv 2405.04434",
    where="Appendix D.1, Table 8",
)

# MoE models of two sizes, MHA against MLA; KV cache elements per token as printed (K = 1,000).
MLA_ABLATION = Ablation(
    rows=(
        AblationRow("MHA", "small MoE", 48.7, 110.6e3),
        AblationRow("MLA", "small MoE", 50.0, 15.6e3),
        AblationRow("MHA", "large MoE", 57.5, 860.2e3),
        AblationRow("MLA", "large MoE", 59.0, 34.6e3),
    ),
    what="MMLU (5-shot) and KV cache per token of MoE models with MHA and MLA",
    paper="DeepSeek-V2 paper",
    arxiv="arXiv 2405.04434",
    where="Appendix D.2, Table 9",
)
