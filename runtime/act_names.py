"""HF `hidden_act` names -> the runtime's activation names, kept apart from runtime.activations
(torch) so that reading a checkpoint's hyperparameters does not import torch."""

HF_ACTS = {"gelu": "gelu_erf", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
           "gelu_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}
