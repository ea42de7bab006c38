"""Tokenizer files: HF tokenizer.json / tokenizer.model read into the GGUF vocabulary, and llama.cpp's pre-tokenizer names."""
