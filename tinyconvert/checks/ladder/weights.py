"""A candidate's weights in the ladder's verify pass, so that its memory does not grow with the
number of files. Alone, a GGUF's weights (runtime/weights.GgufWeights) keep the dequantized
token_embd (used twice when the output is tied) and read through a file map whose pages stay in
the process; with N candidates run in lockstep that is N float32 embedding tables and N whole
files resident. Here each tensor is read with pread into fresh memory that goes with it, and one
token_embd is kept for all candidates: the last one asked for, reused while the next candidate's
stored bytes are the same (the q6_k token_embd of a q6_k, a q5_k_m, a q4_k_m file) and
dequantized again otherwise."""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from tinyconvert.pipeline.sources import ModelSource

EMBEDDINGS = "token_embd.weight"


class _PreadFile:
    """A GgufModel whose tensor_bytes reads with pread (fresh memory) instead of its file map."""

    def __init__(self, model):
        self._model = model

    def tensor_bytes(self, t) -> np.ndarray:
        return np.frombuffer(self._model.pread(t, 0, t.nbytes), dtype=np.uint8)

    def __getattr__(self, name):
        return getattr(self._model, name)


class SharedEmbeddings:
    """One dequantized token_embd for every candidate: reused while the stored bytes match (by
    type, shape and a 128-bit digest of the bytes)."""

    def __init__(self):
        self._key: tuple | None = None
        self._tensor: torch.Tensor | None = None

    def get(self, weights, load) -> torch.Tensor:
        t = weights.tensors[EMBEDDINGS]
        digest = hashlib.blake2b(weights.file.tensor_bytes(t), digest_size=16).digest()
        key = (t.ggml_type, tuple(t.shape), digest)
        if key != self._key:
            self._key = self._tensor = None            # the old table goes before the new comes
            self._tensor, self._key = load(EMBEDDINGS), key
        return self._tensor


class LadderWeights:
    """get(name) for one candidate of the ladder's verify (everything else as GgufWeights)."""

    def __init__(self, weights, shared: SharedEmbeddings):
        weights.file = _PreadFile(weights.file)
        self._weights, self._shared = weights, shared

    def __call__(self, name: str) -> torch.Tensor | None:
        if name == EMBEDDINGS and name in self._weights.tensors:
            return self._shared.get(self._weights, self._load)
        return self._weights(name)

    def _load(self, name: str) -> torch.Tensor:
        out = self._weights(name)
        self._weights._keep.pop(name, None)           # kept once, in SharedEmbeddings
        return out

    def __getattr__(self, name):
        return getattr(self._weights, name)


def lean_sources(cands: list[ModelSource]) -> list[ModelSource]:
    """The candidates (gguf_source's) with LadderWeights, sharing one token_embd."""
    from dataclasses import replace
    shared = SharedEmbeddings()
    return [replace(c, get=LadderWeights(c.get, shared)) for c in cands]


__all__ = ["LadderWeights", "SharedEmbeddings", "lean_sources"]
