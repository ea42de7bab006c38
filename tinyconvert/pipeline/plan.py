"""Plan, then write: every output tensor's name, shape and type is decided from the checkpoint
header alone, before any data is read, so the GGUF header can be written first."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from tinyconvert.archs.base import NameMapper, permute_qk
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord
import gguf

from tinyconvert.archs.config import ModelConfig, llama3_rope_freqs
from tinyconvert.archs.config_checks import check_against_records, check_planned
from tinyconvert.pipeline.write.encode import to_f32
from tinyconvert.pipeline.experts import stack_experts
from tinyconvert.pipeline.planned import PlannedTensor
from tinyconvert.quant import QuantType, get_qtype
from tinyconvert.quant.tmac.tmac_types import CANONICAL

FLOAT_SOURCES = ("F32", "F16", "BF16")


def resolve_outtype(outtype: str, records: list[TensorRecord]) -> str:
    """`auto`: bf16 if the first matrix is bf16, else f16 (tensors, not config.json, decide)."""
    if outtype != "auto":
        return outtype
    first = next((r for r in records if len(r.shape) >= 2 and r.dtype in FLOAT_SOURCES), None)
    # (gpt-oss's U8 MXFP4 blocks say nothing about the float tensors' type)
    return "bf16" if first is not None and first.dtype == "BF16" else "f16"


# Matrices llama.cpp's converter keeps in F32 whatever --outtype says
KEEP_F32 = ("position_embd.weight", "token_types.weight", "ffn_gate_inp.weight",
            "ffn_gate_inp_shexp.weight", "ssm_conv1d.weight")


def choose_qtype(name: str, shape: tuple[int, ...], outtype: str) -> tuple[QuantType, str | None]:
    """Norms, 1-D tensors, non-weights and KEEP_F32 stay F32; a row length a type cannot hold
    falls back to F16 (as llama.cpp's converter does)."""
    if (len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight")
            or name.endswith(KEEP_F32)):
        return get_qtype("f32"), None
    qtype = get_qtype(outtype)
    if not qtype.fits(shape[-1]):
        return get_qtype("f16"), qtype.name
    return qtype, None


def _with_permute(read_rows, head_rows: int):
    """Rows of whole heads are read together and permuted within each head."""
    return lambda r0, r1: permute_qk(read_rows(r0, r1), (r1 - r0) // head_rows)


def _permute_tmac(read_rows, head_rows: int):
    """The same row permutation applied to codes, scales and zero points (all indexed by row)."""
    def rows(r0, r1):
        t, heads = read_rows(r0, r1), (r1 - r0) // head_rows
        zf = None if t.zf is None else permute_qk(t.zf, heads)
        return replace(t, q=permute_qk(t.q, heads), scales=permute_qk(t.scales, heads), zf=zf)
    return rows


def _permuted(cfg: ModelConfig, mapper: NameMapper, rec: TensorRecord, wrap):
    """(row reader, row alignment), with llama's Q/K permutation where the tensor needs it."""
    heads = mapper.permute_heads(rec.name, cfg.n_head, cfg.n_kv_head)
    if heads is None:
        return rec.read_rows, 1
    if rec.shape[0] % (2 * heads):
        raise InputError(f"tensor {rec.name!r} shape {rec.shape} cannot be split into "
                         f"{heads} heads for the Q/K permutation")
    align = rec.shape[0] // heads
    return wrap(rec.read_rows, align), align


def _shifted(read_rows, src_dtype: str, shift: float):
    """Gemma's norm +1, in the precision llama.cpp's converter adds it: F16 sources in f16
    (then widened), BF16 and F32 in f32."""
    def rows(r0, r1):
        x = read_rows(r0, r1)
        if src_dtype == "F16":
            return (x + np.float16(shift)).astype(np.float32)
        return to_f32(x, src_dtype) + np.float32(shift)
    return rows


def _tmac_tensor(cfg: ModelConfig, mapper: NameMapper, rec: TensorRecord) -> PlannedTensor:
    qtype = CANONICAL[rec.dtype]
    read_rows, align = _permuted(cfg, mapper, rec, _permute_tmac)
    return PlannedTensor(mapper.gguf_name(rec.name), rec.shape, qtype, read_rows, "TMAC", align)


def plan_tensors(cfg: ModelConfig, records: list[TensorRecord], outtype: str) -> list[PlannedTensor]:
    check_against_records(cfg, records)          # before a name map of n_layer layers is built
    mapper = NameMapper(cfg.arch, cfg.n_layer, cfg.hf_class)
    planned: list[PlannedTensor] = []
    had_output = any(r.name.endswith("lm_head.weight") for r in records)
    if cfg.arch.records is not None:
        records = cfg.arch.records(cfg, records)
    _check_dropped_output(cfg, records)
    for rec in stack_experts(records):
        if mapper.skipped(rec.name):
            continue
        if rec.name.endswith("lm_head.weight") and (cfg.tied or cfg.arch.drop_output):
            continue        # tied: llama.cpp reuses token_embd; no output.weight is written
        if rec.dtype in CANONICAL:        # GPTQ codes, carried over as T-MAC tensors
            planned.append(_tmac_tensor(cfg, mapper, rec))
            continue
        if rec.dtype == "MXFP4":          # gpt-oss's MXFP4 experts: ggml blocks already
            planned.append(PlannedTensor(mapper.gguf_name(rec.name), rec.shape,
                                         get_qtype("mxfp4"), rec.read_rows, "RAW"))
            continue
        if rec.dtype not in FLOAT_SOURCES:
            raise InputError(f"tensor {rec.name!r} has dtype {rec.dtype}; only F32/F16/BF16 "
                             f"checkpoints are supported")
        planned.append(_float_tensor(cfg, mapper, rec, outtype))
    # an output the family dropped on purpose (Mamba's, equal to the embeddings) is not missing
    dropped = had_output and not any(r.name.endswith("lm_head.weight") for r in records)
    _check_complete(cfg, planned, dropped)
    check_planned(cfg, planned)
    return planned


def _check_dropped_output(cfg: ModelConfig, records: list[TensorRecord]) -> None:
    """Gemma 1 and 2: llama.cpp's graph always reuses token_embd as the output, so an
    lm_head.weight is dropped (as llama.cpp's converter drops AutoAWQ's copy). With untied
    embeddings and an lm_head that differs from them (a fine-tune that trained it), the file
    would compute another model: refused. Compared exactly, a chunk of rows at a time."""
    if cfg.tied or not cfg.arch.drop_output:
        return
    head = next((r for r in records if r.name.endswith("lm_head.weight")), None)
    emb = next((r for r in records if r.name.endswith("embed_tokens.weight")), None)
    if head is None or emb is None:
        return
    same = head.shape == emb.shape
    step = max(1, (16 << 20) // max(1, 4 * head.row_len))
    for r0 in range(0, head.n_rows if same else 0, step):
        r1 = min(head.n_rows, r0 + step)
        a, b = head.read_rows(r0, r1), emb.read_rows(r0, r1)
        if head.dtype != emb.dtype:
            a, b = to_f32(a, head.dtype), to_f32(b, emb.dtype)
        if not np.array_equal(a, b):
            same = False
            break
    if not same:
        raise InputError(f"{head.name} differs from the token embeddings, but llama.cpp's "
                         f"{cfg.arch.gguf_arch.name.lower()} always uses the embeddings as "
                         f"the output layer: the GGUF would compute a different model")


def _float_tensor(cfg: ModelConfig, mapper: NameMapper, rec: TensorRecord,
                  outtype: str) -> PlannedTensor:
    name = mapper.gguf_name(rec.name)
    read_rows, align = _permuted(cfg, mapper, rec, _with_permute)
    src_dtype = rec.dtype
    if shift := mapper.shift(name):
        read_rows, src_dtype = _shifted(read_rows, src_dtype, shift), "F32"
    qtype, fallback = choose_qtype(name, rec.shape, outtype)
    return PlannedTensor(name, rec.shape, qtype, read_rows, src_dtype, align, fallback)


def _made_tensor(name: str, make: Callable[[], np.ndarray], n: int) -> PlannedTensor:
    """A 1-D float32 tensor of n values the converter computes (rows of one value each)."""
    def rows(r0, r1):
        return np.asarray(make(), dtype=np.float32).reshape(-1, 1)[r0:r1]
    return PlannedTensor(name, (n,), get_qtype("f32"), rows, "F32")


def extra_tensors(cfg: ModelConfig) -> list[PlannedTensor]:
    """Tensors the converter makes: `rope_freqs` for llama3 rope scaling (llama arch only), and
    the family's own (`Arch.extra`: phi3's LongRoPE factors), ahead of the checkpoint's tensors
    as llama.cpp's converter orders them."""
    if cfg.arch.gguf_arch == gguf.MODEL_ARCH.LLAMA and cfg.rope["rope_type"] == "llama3":
        return [_made_tensor("rope_freqs.weight", lambda: llama3_rope_freqs(cfg).numpy(),
                             cfg.head_dim // 2)]
    if cfg.arch.extra is None:
        return []
    return [_made_tensor(name, lambda a=values: a, len(values))
            for name, values in cfg.arch.extra(cfg)]


def _check_complete(cfg: ModelConfig, planned: list[PlannedTensor], dropped: bool) -> None:
    names = {p.name for p in planned}
    needed = ["token_embd.weight", "output_norm.weight"] + [
        f"blk.{i}.{t}.weight" for i in range(cfg.n_layer) for t in cfg.arch.layer_needs(cfg, i)]
    if not (cfg.tied or cfg.arch.drop_output or dropped):
        needed.append("output.weight")
    missing = [n for n in needed if n not in names]
    if missing:
        raise InputError(f"checkpoint is missing {len(missing)} tensor(s) the model needs, "
                         f"first: {missing[0]}")
    dup = len(planned) - len(names)
    if dup:
        raise InputError("two checkpoint tensors map to the same GGUF name")
