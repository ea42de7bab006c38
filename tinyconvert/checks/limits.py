"""The default --max-kld of verify: how much mean KL divergence a correct file of its kind may
cost, from measurements.

COST holds what llama.cpp's own quantization costs on SmolLM2-135M-Instruct, a small model
(small models drift most: an 8B model drifts several times less), as
`tests/benchmarks/kld_by_type.py` prints it: the worse of two texts (the built-in one and one
nobody tuned on), 512 tokens, with our runtime computing the candidate; and with llama.cpp
computing it, which also quantizes the activations for the quantized dot products. A correct file
of a larger model costs less, so it passes; a broken one (a wrong permutation, swapped tensors)
costs one to three orders of magnitude more than its type (the same script measures those), so
it fails. A file within MARGIN times its type's cost passes at once. Above that, verify does
not guess: it quantizes the reference itself at the file's own tensor types (checks/requant.py)
and allows RELATIVE_MARGIN times what that costs, plus FLOOR (float rounding between engines).
A file exactly as llama-quantize makes it costs exactly that; a broken one far more.
Files of types we cannot reproduce (T-MAC, grouped INT8) are limited by their bits per weight
at BITS_MARGIN times the costliest measured type near them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MARGIN = 1.5
RELATIVE_MARGIN = 1.25
BITS_MARGIN = 4.0
FLOOR = 1e-4

# general.file_type (llama.cpp's LlamaFileType) -> (name, runtime cost, llama.cpp cost)
COST: dict[int, tuple[str, float, float]] = {
    0: ("f32", 0.0, 0.0),
    1: ("f16", 3.1e-6, 5.4e-6),
    32: ("bf16", 6.2e-5, 1.7e-4),
    7: ("q8_0", 1.44e-3, 4.8e-3),
    18: ("q6_k", 6.7e-3, 0.0121),
    17: ("q5_k_m", 0.0939, 0.101),
    16: ("q5_k_s", 0.108, 0.113),
    9: ("q5_1", 0.161, 0.167),
    8: ("q5_0", 0.0893, 0.094),
    15: ("q4_k_m", 0.0591, 0.0663),
    14: ("q4_k_s", 0.0713, 0.0779),
    # SmolLM2's checkpoint is rebuilt from a Q4_1 file, so q4_1 reproduces it exactly (KLD 0):
    # q4_1 gets q4_0's row, which it beats on models whose weights are not on its grid
    3: ("q4_1", 0.345, 0.349),
    2: ("q4_0", 0.345, 0.349),
    25: ("iq4_nl", 0.238, 0.240),
    13: ("q3_k_l", 0.198, 0.204),
    12: ("q3_k_m", 0.159, 0.165),
    11: ("q3_k_s", 0.491, 0.491),
    10: ("q2_k", 0.491, 0.491),
    # ternary types compute a model only when it was trained ternary (BitNet, TriLM); on any
    # other model they cost more than a broken file (SmolLM2: 11.2), and verify says so
    36: ("tq1_0", 0.491, 0.491),
    37: ("tq2_0", 0.491, 0.491),
    # the IQ mixes, made without a matrix where llama.cpp allows it (a matrix only lowers these)
    30: ("iq4_xs", 0.239, 0.243),
    27: ("iq3_m", 1.00, 1.02),
    26: ("iq3_s", 1.31, 1.32),
    22: ("iq3_xs", 1.31, 1.32),
    23: ("iq3_xxs", 0.369, 0.378),
    # ... and with one (6 x 512 tokens of CPython's help topics) where llama.cpp insists on it
    29: ("iq2_m", 0.474, 0.498),
    28: ("iq2_s", 0.529, 0.549),
    20: ("iq2_xs", 0.609, 0.619),
    19: ("iq2_xxs", 0.831, 0.837),
    31: ("iq1_m", 1.09, 1.10),
    24: ("iq1_s", 1.58, 1.59),
    21: ("q2_k_s", 0.495, 0.494),
}
# what these cost depends on a matrix verify never sees (a poorer one costs more), and some of
# their types cannot be remade without it (no requantized yardstick): BITS_MARGIN, not MARGIN
NEEDS_MATRIX = {29, 28, 20, 19, 31, 24, 21}
# T-MAC files (their file type ids mean other types upstream): by bits per weight
TMAC_BY_BITS = {4: 0.5, 3: 1.0, 2: 4.0, 1: 6.0}


@dataclass(frozen=True)
class Limit:
    value: float
    bpw: float                      # bits per weight over the file's tensors
    why: str                        # what the value was derived from, for the report
    activation_note: str | None = None
    relative: bool = True           # above it, judge against the requantized reference


def bits_per_weight(path: Path) -> float:
    from tinyconvert.formats.gguf_model import open_gguf
    g = open_gguf(path, strict_types=False)            # a split model: all its shards
    n = sum(t.n_elements for t in g.tensors)
    return 8 * sum(t.nbytes for t in g.tensors) / max(1, n)


# bits per weight of SmolLM2-135M's file at each measured type (for files of other kinds)
BPW = {"f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 8.51, "q6_k": 8.12, "q5_k_m": 6.56,
       "q5_k_s": 6.43, "q5_1": 6.53, "q5_0": 6.14, "q4_k_m": 6.17, "q4_k_s": 5.96, "q4_1": 5.74,
       "q4_0": 5.35, "iq4_nl": 5.37, "q3_k_l": 5.69, "q3_k_m": 5.46, "q3_k_s": 5.14, "q2_k": 5.14}


def _by_bits(bpw: float) -> tuple[float, str]:
    """A file of no measured type (a custom mix, grouped INT8): the costliest measured type of at
    least bpw - 1 bits per weight, as costs do not fall monotonically with bits."""
    near = [ours for name, ours, _ in COST.values() if name in BPW and BPW[name] >= bpw - 1.0]
    cost = max(near) if near else max(ours for _, ours, _ in COST.values())
    return (max(FLOOR, BITS_MARGIN * cost),
            f"{BITS_MARGIN:g} x the costliest type near {bpw:.2f} bits/weight")


def default_limit(fields: dict, path: Path, *, engine: str = "runtime") -> Limit:
    from tinyconvert.quant.tmac.tmac_types import BITS_KEY
    bpw = bits_per_weight(path)
    if BITS_KEY in fields:
        bits = int(fields[BITS_KEY])
        return Limit(TMAC_BY_BITS.get(bits, 1.0), bpw, f"T-MAC {bits}-bit", relative=False)
    row = COST.get(fields.get("general.file_type"))
    if row is None or fields.get("tinyconvert.int8.group_size"):
        value, why = _by_bits(bpw)
        return Limit(value, bpw, why)
    name, ours, theirs = row
    cost = theirs if engine == "llama.cpp" else ours
    note = None
    if engine == "runtime" and ours > 0 and theirs > 1.05 * ours:
        note = (f"llama.cpp also quantizes activations for {name}'s dot products; its own KLD "
                f"for such a file is typically {theirs / ours:.1f}x this (README)")
    margin = BITS_MARGIN if fields.get("general.file_type") in NEEDS_MATRIX else MARGIN
    return Limit(max(FLOOR, margin * cost), bpw,
                 f"{margin:g} x what {name} costs on a 135M model", note)
