"""LayerNorm families (norms with biases, many with parallel attention and FFN) and what they share."""
