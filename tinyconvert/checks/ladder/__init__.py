"""Checks of a quant ladder: per-type weights, verify and the report."""
