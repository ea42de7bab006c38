"""State-space families (Mamba, Mamba2) and the checkpoint reshapes they need."""
