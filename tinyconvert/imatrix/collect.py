"""What llama-imatrix's collect_imatrix sees, taken from the bundled runtime: every matmul whose
weight is a `blk.*` tensor (and output.weight when asked) adds, per input column, the squares of
its input rows, and counts the rows.

The runtime multiplies by weights only through F.linear (runtime.projections.linear and the
expert loop of runtime.moe). A weight handed out by `RecordingWeights` is a tensor subclass that
notices when it is the weight of an F.linear: no runtime code changes, and a weight used any other
way (a norm, a shape) behaves as the plain tensor it is. Indexing a 3-D expert tensor with an
expert id gives that expert's slice, which records into the expert's own row of the entry, as
llama.cpp's MUL_MAT_ID bookkeeping does (one count per expert, per routed token)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from tinyconvert.formats.errors import InputError


class Sums:
    """name -> (float64 sums [n_mat, n_cols], int64 counts [n_mat])."""

    def __init__(self):
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}

    def add(self, name: str, x: torch.Tensor, n_mat: int, expert: int) -> None:
        x = x.detach().reshape(-1, x.shape[-1])
        if name not in self.sums:
            self.sums[name] = np.zeros((n_mat, x.shape[-1]))
            self.counts[name] = np.zeros(n_mat, dtype=np.int64)
        x64 = x.numpy().astype(np.float64)          # numpy: no torch thread-pool round trips
        sq = np.einsum("ij,ij->j", x64, x64)
        if not np.isfinite(sq).all():            # llama-imatrix stops here too
            raise InputError(f"non-finite activations reach {name}: the model overflows on "
                             f"this text")
        self.sums[name][expert] += sq
        self.counts[name][expert] += x.shape[0]


class _Tagged(torch.Tensor):
    """A weight that records its F.linear inputs into `_rec` under `_name` (matrix `_expert`
    of `_n_mat`)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            if isinstance(w, _Tagged) and w.dim() == 2:
                w._rec.add(w._name, args[0], w._n_mat, w._expert)
        if (func is torch.Tensor.__getitem__ and isinstance(args[0], _Tagged)
                and args[0].dim() == 3 and isinstance(args[1], int)):
            return _tag(_plain(args[0])[args[1]], args[0]._rec, args[0]._name,
                        args[0].shape[0], args[1])
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor)


def _tag(w: torch.Tensor, rec: Sums, name: str, n_mat: int, expert: int) -> torch.Tensor:
    t = w.as_subclass(_Tagged)
    t._rec, t._name, t._n_mat, t._expert = rec, name, n_mat, expert
    return t


def records(name: str, process_output: bool) -> bool:
    """collect_imatrix's filter: weights of the blocks, output.weight only when asked (a tied
    head multiplies by token_embd.weight, which is never recorded)."""
    return (name.startswith("blk.") or (process_output and name == "output.weight")) \
        and name.endswith(".weight")


class RecordingWeights:
    """Wraps a runtime `get`: hands out recording weights, and keeps what it loaded until
    `forget(prefix)` (one layer's weights serve every chunk, then go)."""

    def __init__(self, get: Callable, process_output: bool = False):
        self.inner, self.process_output = get, process_output
        self.sums = Sums()
        self._cache: dict[str, torch.Tensor | None] = {}

    def __call__(self, name: str):
        if name not in self._cache:
            w = self.inner(name)
            if isinstance(w, torch.Tensor) and records(name, self.process_output):
                n_mat = w.shape[0] if w.dim() == 3 else 1
                w = _tag(w, self.sums, name, n_mat, 0)
            self._cache[name] = w
        return self._cache[name]

    def plain(self, name: str):
        """The same weight, recording nothing."""
        w = self(name)
        return _plain(w) if isinstance(w, _Tagged) else w

    def forget(self, prefix: str) -> None:
        for name in [n for n in self._cache if n.startswith(prefix)]:
            del self._cache[name]
