"""The video's scenes and their story order.

`STORY` is the one list `render.py` reads: the scene class name and one line on what it
shows. A scene's files share one stem (`mla_core.names.scene_stem`): the class `NextToken` is
defined in `scenes/next_token.py` and draws the data of `mla_core/scene_data/next_token.py`.
Importing this package does not import Manim or torch, so listing scenes is instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mla_core.names import scene_stem

SCENES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class StoryScene:
    name: str  # the Scene subclass
    description: str
    # Stills besides the final frame, for `render.py figures`: (label, animation index);
    # the still shows the scene right after that animation (0 = the first self.play).
    extra_stills: tuple[tuple[str, int], ...] = ()

    @property
    def module(self) -> str:
        """The dotted module that defines the scene, e.g. "scenes.kv_cache_growth"."""
        return f"scenes.{scene_stem(self.name)}"

    @property
    def path(self) -> Path:
        return SCENES_DIR.parent / (self.module.replace(".", "/") + ".py")


# The story, in order: one line per scene (class name, what it shows).
STORY: tuple[StoryScene, ...] = (
    StoryScene("Hook", "the headline numbers: MLA's smaller KV cache and higher throughput"),
    StoryScene("NextToken", "GPT-2 tokenises the prompt and predicts the next token (top-k)"),
    StoryScene(
        "AttentionPatterns",
        "real heads' attention patterns, then one head enlarged",
        (("gallery", 6),),
    ),
    StoryScene("QueriesKeysValues", "one head: Q, K, V, q.k, scale, mask, softmax, pattern x V"),
    StoryScene("KVCacheGrowth", "token by token the KV cache grows; then at DeepSeek-V3 size"),
    StoryScene("CacheSizePerToken", "KV cache bytes per token: MHA, GQA-8, MQA, MLA (V3 size)"),
    StoryScene(
        "SharingKeysValues",
        "MQA/GQA share K/V between heads: one layer's blocks merge; measured cost; paper Table 8",
        (("mha", 2), ("no_gqa", 9), ("merging", 13), ("mqa", 16)),
    ),
    StoryScene(
        "LatentKV",
        "one token: h -> W_DKV -> cached c_KV -> W_UK, W_UV; then the latent cache while decoding",
        (("latent", 4), ("keys_values", 8), ("deepseek_v3", 11)),
    ),
    StoryScene(
        "LatentRankSweep",
        "how small can the latent be: cache bytes vs quality by rank; exact at rank n_embd",
        (("sweep", 8), ("patterns", 17)),
    ),
    StoryScene(
        "Absorption",
        "W_UK folds into the query: one head scores keys naive and absorbed, equal; no expansion",
        (("algebra", 6), ("both-ways", 16)),
    ),
    StoryScene(
        "DecoupledRope",
        "RoPE between W_UQ and W_UK breaks the fold; q_R per head and one shared k_R fix it",
        (("rotation", 8), ("shared-key", 12), ("both-ways", 28)),
    ),
    StoryScene(
        "Results",
        "what MLA saves: V3 computed, the notes' example corrected, the paper's figures, Table 9",
        (("sources", 15),),
    ),
    StoryScene(
        "DecodeSpeed",
        "decode step time vs context for MHA, GQA-8, MQA and absorbed MLA, with roofline floors",
        (("mha", 5),),
    ),
    StoryScene(
        "Closing",
        "the path recapped: MHA, sharing, latent, absorption, RoPE key, 57x",
        (("latent", 13),),
    ),
)


def scene_names() -> list[str]:
    return [s.name for s in STORY]


def find_scene(name: str) -> StoryScene | None:
    return next((s for s in STORY if s.name == name), None)


# Not part of the story: a one-second scene the tests render to check the pipeline.
TEST_CARD = StoryScene("TestCard", "a two-second test card (pipeline check)", (("first", 0),))
