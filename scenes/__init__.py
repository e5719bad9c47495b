"""The video's scenes and their story order.

`STORY` is the one list `render.py` reads: scene class name, the module that defines it,
and one line on what it shows. Importing this package does not import Manim, so listing
scenes is instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCENES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class StoryScene:
    name: str  # the Scene subclass
    module: str  # dotted module path, e.g. "scenes.hook"
    description: str
    # Stills besides the final frame, for `render.py figures`: (label, animation index);
    # the still shows the scene right after that animation (0 = the first self.play).
    extra_stills: tuple[tuple[str, int], ...] = ()

    @property
    def path(self) -> Path:
        return SCENES_DIR.parent / (self.module.replace(".", "/") + ".py")


STORY: tuple[StoryScene, ...] = (
    StoryScene(
        "Hook", "scenes.hook", "the headline numbers: MLA's smaller KV cache and higher throughput"
    ),
    StoryScene(
        "NextToken",
        "scenes.next_token",
        "GPT-2 tokenises the prompt and predicts the next token (top-k probabilities)",
    ),
    StoryScene(
        "AttentionPatterns",
        "scenes.attention_patterns",
        "a gallery of real heads' attention patterns on the prompt, then one head enlarged",
    ),
    StoryScene(
        "QueriesKeysValues",
        "scenes.queries_keys_values",
        "one head step by step: Q, K, V, q.k, scale, causal mask, softmax, pattern x V",
    ),
    StoryScene(
        "KVCacheGrowth",
        "scenes.kv_cache_growth",
        "generating token by token: the KV cache grows, then scaled up to DeepSeek-V3",
    ),
    StoryScene(
        "CacheSizePerToken",
        "scenes.cache_size",
        "bytes of KV cache per token for MHA, GQA-8, MQA and MLA at DeepSeek-V3 size",
    ),
)


def scene_names() -> list[str]:
    return [s.name for s in STORY]


def find_scene(name: str) -> StoryScene | None:
    return next((s for s in STORY if s.name == name), None)


# Not part of the story: a one-second scene the tests render to check the pipeline.
TEST_CARD = StoryScene(
    "TestCard", "scenes.testcard", "a two-second test card (pipeline check)", (("first", 0),)
)
