"""Bytes on disk: GGUF, safetensors / .bin / sharded HF checkpoints, tokenizer files."""
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord

__all__ = ["InputError", "TensorRecord"]
