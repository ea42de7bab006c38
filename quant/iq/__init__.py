"""The IQ types: llama.cpp's grid searches (iq1-iq3), IQ4_XS / IQ4_NL and their grids."""
