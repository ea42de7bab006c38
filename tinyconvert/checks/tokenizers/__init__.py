"""Tokenizer checks: the GGUF vocabulary and chat template against the HF tokenizer."""
