"""The bundled reference runtime (llama-family forward pass in torch on the CPU)."""
