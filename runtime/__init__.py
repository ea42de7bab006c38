"""The bundled reference runtime: a llama-family forward pass in torch on the CPU, fed from any
"GGUF tensor name -> tensor" source."""
