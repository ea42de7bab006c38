"""Dense decoder families with RMSNorm: llama and its relatives."""
