"""Getting things in: the GPT-2 tokenizer, weights, DeepSeek checkpoints, the corpus."""
