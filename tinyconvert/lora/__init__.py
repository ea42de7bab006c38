"""PEFT LoRA adapters: read (adapter), merged into a conversion (merge), written as llama.cpp's
adapter GGUF (to_gguf)."""
