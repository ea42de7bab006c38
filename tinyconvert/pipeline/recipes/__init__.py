"""Quantization recipes: the llama.cpp mixes, the IQ mixes and the T-MAC plan."""
