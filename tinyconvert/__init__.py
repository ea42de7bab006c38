"""tinyconvert: Hugging Face checkpoints to GGUF files that llama.cpp-family runtimes run."""
__version__ = "0.1.0"
