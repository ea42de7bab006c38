"""Quant ladders: one model to several types in one pass."""
