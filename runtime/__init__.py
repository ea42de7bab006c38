"""The bundled reference runtime: the forward pass of every registered architecture, in torch on
the CPU, fed from any "GGUF tensor name -> tensor" source."""
