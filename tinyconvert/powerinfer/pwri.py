"""PowerInfer files: a GGUF v3 whose magic is PWRI, with every blk.N.ffn_down replaced by its
transpose blk.N.ffn_down_t (n_ff rows of n_embd: row j is neuron j's output column) and the layer's
predictor added as blk.N.fc1 (rank x n_embd) and blk.N.fc2 (n_ff x rank); nothing else extra
(PowerInfer's GPU loader rejects unknown tensors). ffn_down_t must be F16 or Q4_0 (its CPU kernel
assumes so); there is no BF16 in PowerInfer's ggml. See shared/specs/powerinfer.md."""
from __future__ import annotations

import dataclasses
import re
import numpy as np

from tinyconvert.pipeline.write.encode import to_f32
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.predictor import Predictor, PredictorFile
from tinyconvert.pipeline.write.held import HeldWhole
from tinyconvert.pipeline.planned import PlannedTensor
from tinyconvert.quant import get_qtype

MAGIC = b"PWRI"
THRESHOLD_KEY = "powerinfer.sparse_threshold"
ACT_KEY = "tinyconvert.ffn_act"          # dense ReLU files we write say what their FFN computes
OUTTYPES = ("f16", "q4_0")
DOWN = re.compile(r"^blk\.(\d+)\.ffn_down\.weight$")
DOWN_BIAS = re.compile(r"^blk\.(\d+)\.ffn_down\.bias$")     # OPT's: renamed, as PowerInfer's
                                                             # loader asks for ffn_down_t.bias


def _transposed(p: PlannedTensor, out_type: str) -> PlannedTensor:
    """blk.N.ffn_down [n_embd, n_ff] -> blk.N.ffn_down_t [n_ff, n_embd]; the source tensor is
    read whole once, served by rows and let go after its last row (one tensor in memory)."""
    def full() -> np.ndarray:
        rows = p.read_rows(0, p.n_rows)
        if p.src_dtype in ("F16", "F32"):
            data = rows.reshape(p.shape)
        else:                                    # BF16 bits or dequantized: float32
            data = to_f32(rows, p.src_dtype).reshape(p.shape)
        return np.ascontiguousarray(data.T)

    src = p.src_dtype if p.src_dtype in ("F16", "F32") else "F32"
    return PlannedTensor(p.name.replace(".ffn_down.", ".ffn_down_t."), (p.shape[1], p.shape[0]),
                         get_qtype(out_type), HeldWhole(full, p.shape[1]).reader(), src,
                         whole=True)


def _predictor_tensors(i: int, pred, out_type: str) -> list[PlannedTensor]:
    """blk.i.fc1 and fc2, read from one load of layer i's predictor, freed once both are written
    (pred: a Predictor in memory or a PredictorFile read when its rows are asked for)."""
    held = HeldWhole(pred.load, pred.rank + pred.n_ff)
    return [PlannedTensor(f"blk.{i}.fc1.weight", (pred.rank, pred.n_embd), get_qtype(out_type),
                          held.reader(lambda d: d.fc1), "F32", whole=True),
            PlannedTensor(f"blk.{i}.fc2.weight", (pred.n_ff, pred.rank), get_qtype(out_type),
                          held.reader(lambda d: d.fc2), "F32")]     # same load as fc1


def to_powerinfer(planned: list[PlannedTensor], predictors: list[Predictor | PredictorFile],
                  two_d_type: str) -> list[PlannedTensor]:
    """The dense plan (in its order) with ffn_down transposed in place, then fc1/fc2 per layer."""
    out, seen = [], set()
    for p in planned:
        m = DOWN.match(p.name)
        if m:
            seen.add(int(m.group(1)))
            out.append(_transposed(p, two_d_type))
        elif DOWN_BIAS.match(p.name):
            out.append(dataclasses.replace(p, name=p.name.replace(".ffn_down.", ".ffn_down_t.")))
        elif p.name == "rope_freqs.weight":
            raise InputError("PowerInfer files cannot hold rope_freqs (llama3 rope scaling)")
        else:
            out.append(p)
    if seen != set(range(len(predictors))):
        raise InputError(f"the model has ffn_down for {len(seen)} layers but there are "
                         f"{len(predictors)} predictors")
    for i, pred in enumerate(predictors):
        out.extend(_predictor_tensors(i, pred, two_d_type))
    return out


# PowerInfer's sparse loader asks for output.weight in these architectures (llama.cpp's falcon
# falls back to token_embd; PowerInfer's does not), so a tied model gets token_embd's copy.
NEEDS_OUTPUT = ("falcon",)


def with_output(planned: list[PlannedTensor], arch: str) -> list[PlannedTensor]:
    if arch not in NEEDS_OUTPUT or any(p.name == "output.weight" for p in planned):
        return planned
    embd = next(p for p in planned if p.name == "token_embd.weight")
    return planned + [dataclasses.replace(embd, name="output.weight")]


def check_outtype(outtype: str) -> str:
    if outtype == "auto":
        return "f16"
    if outtype not in OUTTYPES:
        raise InputError(f"PowerInfer files need --outtype f16 or q4_0 (its CPU kernel reads "
                         f"ffn_down_t as F16 or Q4_0; it has no BF16), got {outtype!r}")
    return outtype


def patch_magic(path) -> None:
    with open(path, "r+b") as f:
        f.write(MAGIC)


__all__ = ["to_powerinfer", "with_output", "check_outtype", "patch_magic"]
