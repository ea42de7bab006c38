"""Importance matrices as llama.cpp's llama-imatrix makes them and llama-quantize uses them: the
per-column mean squares of each weight matrix's input, computed by the bundled runtime
(compute), stored in llama.cpp's GGUF or legacy .dat files (files), summarised (stats) and handed
to the quantizers tensor by tensor (apply)."""
