"""GPT-2's Conv1D layers store their weight [in, out]; PEFT trains them with fan_in_fan_out and
saves the factors as for a Linear: A [r, in], B [out, r], the update (B @ A).T in the weight's
own layout (PEFT's get_delta_weight). The converter transposes these weights to [out, in], so in
the GGUF the update is B @ A: the factors go unchanged into llama.cpp's lora_a [r, in] and
lora_b [out, r]. That holds only where the family's own record transform is that transpose,
which is checked here on a probe tensor, not assumed from the tensor's name."""
from __future__ import annotations

import numpy as np

from tinyconvert.formats.records import TensorRecord


def transposed_by_family(cfg, target: str, n_in: int, n_out: int) -> bool:
    """Does the family's record transform turn target [n_in, n_out] into its transpose?"""
    if cfg.arch.records is None:
        return False
    probe = np.arange(n_in * n_out, dtype=np.float32).reshape(n_in, n_out)
    rec = TensorRecord(target, (n_in, n_out), "F32", lambda r0, r1: probe[r0:r1])
    out = cfg.arch.records(cfg, [rec])
    return (len(out) == 1 and out[0].name == target and out[0].shape == (n_out, n_in)
            and np.array_equal(out[0].load(), probe.T))
