"""gpt-oss (llama.cpp's `gpt-oss`): attention with biases and per-head
sinks, sliding-window attention on even layers, YaRN rope, and a mixture of experts with a biased
router, biased experts and the clamped `swiglu_oai` activation. OpenAI's own MXFP4
checkpoints (`*_blocks` / `*_scales`) are carried over unchanged by gpt_oss_mxfp4.py.

transformers keeps the experts fused and transposed, unlike Qwen's fused layout:
  gate_up_proj       [E, n_embd, 2*ff]  column 2j is gate unit j, column 2j+1 up unit j
  gate_up_proj_bias  [E, 2*ff]          interleaved the same way
  down_proj          [E, ff, n_embd]
  down_proj_bias     [E, n_embd]
llama.cpp wants gate/up [E, ff, n_embd] and down [E, n_embd, ff]; the readers below transpose one
expert at a time, so memory holds one expert's block, never the stack.

llama.cpp's converter writes no sliding_window_pattern: its loader makes layer i slide iff i is
even, which is transformers' default layer_types. Configs that say otherwise are refused."""
from __future__ import annotations

import re

import gguf
import numpy as np

from tinyconvert.archs.base import Arch
from tinyconvert.archs.moe.gpt_oss_mxfp4 import mxfp4_records
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord

LAYER = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_sinks",
         "post_attention_norm", "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
FUSED = re.compile(r"^(?P<pre>.*\.experts)\.(?P<w>gate_up_proj|down_proj)(?P<bias>_bias)?$")
SWIGLU = {"swiglu_alpha": 1.702, "swiglu_limit": 7.0}     # llama.cpp's build_moe_ffn constants


def gpt_oss_keys(w: gguf.GGUFWriter, c) -> None:
    r = c.raw
    if not c.n_expert or not c.n_expert_used:
        raise InputError(f"{c.hf_class}: config.json gives no expert count / experts per token")
    for key, want in SWIGLU.items():
        if abs(r.get(key, want) - want) > 1e-9:
            raise InputError(f"config.json has {key}={r[key]}; llama.cpp's gpt-oss hard-codes "
                             f"{want}: the GGUF would compute a different model")
    want = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(c.n_layer)]
    if r.get("layer_types") is not None and list(r["layer_types"][:c.n_layer]) != want:
        raise InputError(f"config.json's layer_types {r['layer_types']} differ from llama.cpp's "
                         f"fixed gpt-oss pattern (sliding window on even layers)")
    if r.get("sliding_window") is None:
        raise InputError(f"{c.hf_class}: config.json has no 'sliding_window'")
    w.add_sliding_window(r["sliding_window"])
    w.add_expert_feed_forward_length(c.n_ff)


def _expert_reader(rec: TensorRecord, cols: slice):
    """Rows [r0, r1) of the output [E, rows_out, rows_in] where expert e's block is
    rec[e] ([rows_in, width]) transposed, keeping the columns `cols` of each row of rec[e].
    The last expert read is kept, so row chunks of one expert read it once."""
    per, last = rec.shape[1], {}
    n_out = len(range(rec.shape[2])[cols])

    def block(e: int) -> np.ndarray:
        if last.get("e") != e:
            b = rec.read_rows(e * per, (e + 1) * per)[:, cols]          # [rows_in, n_out]
            last.update(e=e, b=np.ascontiguousarray(b.T))                 # [n_out, rows_in]
        return last["b"]

    def read(r0: int, r1: int) -> np.ndarray:
        out, r = [], r0
        while r < r1:
            e, j = divmod(r, n_out)
            n = min(r1 - r, n_out - j)
            out.append(block(e)[j:j + n])
            r += n
        return out[0] if len(out) == 1 else np.concatenate(out)
    return read


def _bias_reader(rec: TensorRecord, cols: slice):
    return lambda r0, r1: np.ascontiguousarray(rec.read_rows(r0, r1)[:, cols])


def _split(rec: TensorRecord, m: re.Match) -> list[TensorRecord]:
    pre, kind = m["pre"], "bias" if m["bias"] else "weight"
    if len(rec.shape) != (2 if m["bias"] else 3):
        raise InputError(f"fused expert tensor {rec.name!r} has shape {rec.shape}")
    if m["w"] == "down_proj":
        if m["bias"]:
            return [TensorRecord(f"{pre}.down_proj.bias", rec.shape, rec.dtype, rec.read_rows,
                                 rec.source)]
        n_expert, ff, n_embd = rec.shape                                  # -> [E, n_embd, ff]
        return [TensorRecord(f"{pre}.down_proj.weight", (n_expert, n_embd, ff), rec.dtype,
                             _expert_reader(rec, slice(None)), rec.source)]
    if rec.shape[-1] % 2:
        raise InputError(f"{rec.name!r} has shape {rec.shape}; the last dim must be 2 * ff")
    out = []
    for w, cols in (("gate_proj", slice(0, None, 2)), ("up_proj", slice(1, None, 2))):
        if m["bias"]:
            shape, read = (rec.shape[0], rec.shape[1] // 2), _bias_reader(rec, cols)
        else:
            shape, read = (rec.shape[0], rec.shape[2] // 2, rec.shape[1]), _expert_reader(rec, cols)
        out.append(TensorRecord(f"{pre}.{w}.{kind}", shape, rec.dtype, read, rec.source))
    return out


def gpt_oss_records(c, records: list[TensorRecord]) -> list[TensorRecord]:
    """Fused experts split and transposed as llama.cpp's converter does; sinks get `.weight`."""
    out: list[TensorRecord] = []
    for rec in mxfp4_records(records):          # OpenAI's MXFP4 experts, carried over
        if m := FUSED.match(rec.name):
            out.extend(_split(rec, m))
        elif rec.name.endswith(".self_attn.sinks"):
            out.append(TensorRecord(rec.name + ".weight", rec.shape, rec.dtype, rec.read_rows,
                                    rec.source))
        else:
            out.append(rec)
    return out


FAMILIES = [
    Arch(("GptOssForCausalLM",), gguf.MODEL_ARCH.GPT_OSS, keys=gpt_oss_keys,
         records=gpt_oss_records, layer_tensors=LAYER),
]
