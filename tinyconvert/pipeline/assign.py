"""From a plan of tensors in their source types to the plan to write: the recipe's type for each
tensor (tinyconvert.pipeline.recipes.mixes), or tinyconvert's grouped INT8 layout."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from tinyconvert.pipeline.write.encode import to_f32
from tinyconvert.formats.errors import InputError
from tinyconvert.pipeline.recipes.mixes import RECIPES, ModelShape, Options, allows_quantization, choose_types, llama_order
from tinyconvert.pipeline.planned import PlannedTensor
from tinyconvert.quant import get_qtype
from tinyconvert.quant import int8_grouped as i8g
from tinyconvert.pipeline.recipes.tmac_plan import TmacSpec, assign_tmac


@dataclass(frozen=True)
class Target:
    mix: str                                 # a tinyconvert.mixes.RECIPES name
    int8_group: int | None = None
    options: Options = field(default_factory=Options)
    tmac: TmacSpec | None = None             # T-MAC lookup-table types instead of the mix
    imatrix: object = None                   # tinyconvert.imatrix.apply.ImatrixData

    @property
    def file_type(self) -> int:
        return self.tmac.qtype.file_type if self.tmac else RECIPES[self.mix][0]


def assign(planned: list[PlannedTensor], target: Target, shape: ModelShape,
           raw_readers: dict | None = None) -> list[PlannedTensor]:
    """planned: tensors as they are now (qtype = current type). raw_readers: name -> reader of
    the current bytes, for tensors that may be copied unchanged (GGUF input)."""
    if target.tmac or target.int8_group:    # carried-over bytes (gpt-oss MXFP4) decoded first
        planned = [decoded(p) if p.src_dtype == "RAW" else p for p in planned]
    from tinyconvert.imatrix.apply import attach
    if target.tmac:        # the matrix weights the search's error (tinyconvert.quant.tmac.core)
        return attach(assign_tmac(planned, target.tmac, target.options), target.imatrix,
                      target.mix, lambda p: hasattr(p.qtype, "quantize_rows"))
    if target.int8_group:
        return _int8(planned, target.int8_group, target.options)
    types = choose_types([(p.name, p.shape, p.qtype.name) for p in planned], target.mix, shape,
                         target.options)
    by_name = {p.name: p for p in planned}
    out = []
    for name in sorted(by_name, key=llama_order):
        p = by_name[name]
        new, wanted = types[name]
        if new == p.qtype.name and p.src_dtype == "RAW":     # carried-over bytes, kept
            out.append(p)
        elif p.src_dtype == "RAW":                         # carried-over bytes, requantized
            out.append(replace(decoded(p), qtype=get_qtype(new), fallback_from=wanted))
        elif new == p.qtype.name and raw_readers and name in raw_readers:
            out.append(replace(p, read_rows=raw_readers[name], src_dtype="RAW"))
        else:
            out.append(replace(p, qtype=get_qtype(new), fallback_from=wanted))
    return attach(out, target.imatrix, target.mix,
                  lambda p: allows_quantization(p.name, len(p.shape), target.options))


def decoded(p: PlannedTensor) -> PlannedTensor:
    """A tensor planned as its stored bytes (src "RAW"), read as float32 instead."""
    return replace(p, src_dtype="F32",
                   read_rows=lambda r0, r1: p.qtype.dequantize(p.read_rows(r0, r1)))


def _int8(planned: list[PlannedTensor], group: int, opts: Options) -> list[PlannedTensor]:
    out = []
    for p in sorted(planned, key=lambda p: llama_order(p.name)):
        if not allows_quantization(p.name, len(p.shape), opts):
            out.append(p)
            continue
        if p.shape[-1] % group:
            raise InputError(f"--group-size {group} does not divide the row length "
                             f"{p.shape[-1]} of {p.name}")

        def codes(r0, r1, p=p):
            return i8g.quantize(to_f32(p.read_rows(r0, r1), p.src_dtype), group)[0]

        def scales(r0, r1, p=p):
            return i8g.quantize(to_f32(p.read_rows(r0, r1), p.src_dtype), group)[1]
        out.append(replace(p, qtype=get_qtype("i8"), read_rows=codes, src_dtype="I8"))
        out.append(PlannedTensor(p.name + i8g.SCALE_SUFFIX, (*p.shape[:-1], p.shape[-1] // group),
                                 get_qtype("f16"), scales, "F16", p.align))
    return out


def quantized_inputs(planned: list[PlannedTensor]) -> list[str]:
    return [p.name for p in planned if p.qtype.name not in ("f32", "f16", "bf16")]
