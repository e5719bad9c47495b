"""The models: configs, RoPE, GPT-2, MLA, the DeepSeek-style model, GPT-2 as MLA, caches."""
