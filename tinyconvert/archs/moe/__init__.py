"""Mixture-of-experts families: softmax-routed (Mixtral, Qwen-MoE, OLMoE), DeepSeek and gpt-oss."""
