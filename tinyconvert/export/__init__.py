"""GGUF back to a Hugging Face checkpoint (gguf2hf): the conversion's tables run backwards."""
