"""GPTQ checkpoints as T-MAC tensors, codes carried over exactly (shared/specs/tmac.md 6.0).

Per linear layer P the checkpoint holds (n = bits, gs = group size, W is [M out, K in]):
    P.qweight  int32 [K n/32, M]    n-bit codes packed LSB-first along K: word j, field i -> k = j 32/n + i
    P.qzeros   int32 [K/gs, M n/32] zero points packed LSB-first along M
    P.scales   f16   [K/gs, M]
    P.g_idx    int32 [K]            group of each input column (k // gs unless act-order)
    w[m, k] = s[g, m] (q[m, k] - z[g, m]),  g = g_idx[k]
AutoGPTQ ("v1") files store z - 1; gptqmodel ("v2") files store z. T-MAC's form: w = s (q - 2^(n-1))
- zf with zf = (z - 2^(n-1)) s. Each triple becomes one record `P.weight` whose dtype is the T-MAC
type's name (e.g. "tmac_w4g128_1") and whose rows are TmacWeights.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord
from tinyconvert.quant.tmac import core as tmac
from tinyconvert.quant.tmac.tmac_types import TmacType, canonical_type

PARTS = ("qweight", "qzeros", "scales", "g_idx", "bias")


@dataclass(frozen=True)
class GptqConfig:
    bits: int
    group: int
    sym: bool
    v1: bool                  # AutoGPTQ's z - 1 convention
    desc_act: bool

    @property
    def qtype(self) -> TmacType:
        return canonical_type(self.bits, self.group, not self.sym)


def read_config(qc: dict) -> GptqConfig | None:
    """None for an unquantized checkpoint; an error for quantization we cannot carry over."""
    if not isinstance(qc, dict) or not qc:
        return None
    method = str(qc.get("quant_method", "")).lower()
    if method == "mxfp4":         # gpt-oss's experts: its records hook carries them over
        return None
    if method != "gptq":
        raise InputError(f"quantization_config.quant_method {method!r} is not supported (only "
                         f"gptq checkpoints, gpt-oss's mxfp4, or unquantized ones)")
    bits, group = qc.get("bits"), qc.get("group_size")
    if bits not in (2, 4) or group not in (64, 128):
        raise InputError(f"GPTQ with bits={bits} group_size={group} has no T-MAC type; supported: "
                         f"bits 2 or 4 with group_size 64 or 128")
    fmt = str(qc.get("checkpoint_format", "")).lower()
    quantizer = str((qc.get("meta") or {}).get("quantizer", "")).lower()
    v2 = fmt == "gptq_v2" or "gptqmodel" in quantizer
    return GptqConfig(bits, group, bool(qc.get("sym", True)), not v2, bool(qc.get("desc_act")))


def unpack_along_rows(words: np.ndarray, bits: int) -> np.ndarray:
    """int32 [R, C] -> uint8 [R 32/n, C]: field i of word row j is row j 32/n + i."""
    per = 32 // bits
    u = words.astype(np.int64) & 0xFFFFFFFF
    fields = (u[:, None, :] >> (bits * np.arange(per))[None, :, None]) & ((1 << bits) - 1)
    return fields.reshape(-1, words.shape[1]).astype(np.uint8)


def _unpack(parts: dict[str, TensorRecord], cfg: GptqConfig, name: str) -> tmac.TmacWeights:
    n, gs = cfg.bits, cfg.group
    q = unpack_along_rows(parts["qweight"].load(), n).T                      # [M, K]
    z = unpack_along_rows(parts["qzeros"].load().T, n).T.astype(np.float32)  # [K/gs, M]
    s = parts["scales"].load().astype(np.float32)                            # [K/gs, M]
    M, K = q.shape
    if z.shape != s.shape or s.shape != (K // gs, M):
        raise InputError(f"GPTQ tensor {name}: qzeros/scales shapes {z.shape}/{s.shape} do not "
                         f"match {K // gs} groups x {M} outputs")
    if cfg.v1:
        z = z + 1
    if cfg.sym and not np.all(z == 1 << (n - 1)):
        raise InputError(f"GPTQ tensor {name}: config says sym but its zero points are not "
                         f"{1 << (n - 1)}")
    zf = None if cfg.sym else ((z - (1 << (n - 1))) * s).T.astype(np.float32)
    return tmac.TmacWeights(np.ascontiguousarray(q), np.ascontiguousarray(s.T), zf, n, gs)


def _check_g_idx(rec: TensorRecord | None, K: int, group: int, name: str) -> None:
    if rec is None:
        return
    g = rec.load().astype(np.int64).reshape(-1)
    if g.shape[0] != K or not np.array_equal(g, np.arange(K) // group):
        raise InputError(f"GPTQ tensor {name}: g_idx reorders input columns (desc_act / act-order "
                         f"checkpoint); T-MAC's layout needs plain groups: re-quantize with "
                         f"desc_act=False")


def _record(prefix: str, parts: dict[str, TensorRecord], cfg: GptqConfig) -> TensorRecord:
    name = prefix + ".weight"
    missing = [p for p in ("qweight", "qzeros", "scales") if p not in parts]
    if missing:
        raise InputError(f"GPTQ layer {prefix} lacks {prefix}.{missing[0]}")
    rows_w, M = parts["qweight"].shape
    K = rows_w * 32 // cfg.bits
    _check_g_idx(parts.get("g_idx"), K, cfg.group, name)
    cache: dict = {"served": 0}
    lock = threading.Lock()

    def read_rows(r0: int, r1: int) -> tmac.TmacWeights:
        with lock:             # unpacked once per pass over the tensor, sliced per chunk
            if "w" not in cache:
                cache["w"] = _unpack(parts, cfg, name)
            t = cache["w"]
            cache["served"] += r1 - r0
            if cache["served"] >= M:
                cache.clear()
                cache["served"] = 0
        zf = None if t.zf is None else t.zf[r0:r1]
        return tmac.TmacWeights(t.q[r0:r1], t.scales[r0:r1], zf, t.bits, t.group)
    return TensorRecord(name, (M, K), cfg.qtype.name, read_rows, parts["qweight"].source)


def group_records(records: list[TensorRecord], cfg: GptqConfig) -> list[TensorRecord]:
    """Replaces every qweight/qzeros/scales/g_idx set by one TMAC record; all-zero biases of
    those layers (AutoGPTQ writes them for bias-free models) are dropped, others kept."""
    layers: dict[str, dict[str, TensorRecord]] = {}
    out = []
    for rec in records:
        prefix, _, part = rec.name.rpartition(".")
        if part in ("qweight", "qzeros", "scales", "g_idx"):
            layers.setdefault(prefix, {})[part] = rec
        else:
            out.append(rec)
    kept = []
    for rec in out:
        prefix, _, part = rec.name.rpartition(".")
        if part == "bias" and prefix in layers and not np.any(rec.load()):
            continue
        kept.append(rec)
    return kept + [_record(prefix, parts, cfg) for prefix, parts in layers.items()]
