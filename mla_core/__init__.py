"""mla_core: the models, caches and numbers behind the MLA explainer video.

One idea per module; nothing here knows about Manim. Start with `cache_size` (how big the
KV cache is), then the GPT-2 model, then Multi-head Latent Attention.
"""
