"""The one naming rule that ties a scene's files together (no heavy imports: scenes use it)."""

import re


def scene_stem(scene_name: str) -> str:
    """The stem a scene's files share: "KVCacheGrowth" -> "kv_cache_growth", so the scene class
    `KVCacheGrowth` lives in scenes/kv_cache_growth.py and draws the data that the function
    `kv_cache_growth` in mla_core/scene_data/kv_cache_growth.py returns."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", scene_name).lower()
