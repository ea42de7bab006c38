"""Which tensors of a model become T-MAC tensors, and the keys that say so.

As in T-MAC's converters (shared/specs/tmac.md 6.0): the 2-D weight matrices of the blocks get the
T-MAC type; token embeddings and the output head are F16, norms and other 1-D tensors F32. A
matrix whose rows the group size does not divide takes the 64-group type of the same bits and
zero-point convention (canonical layout), else F16, and is reported as a fallback.

The 4-bit groups-of-128 target is a recipe, as llama.cpp's K mixes give ffn_down more bits:
ffn_down at groups of 64, every other matrix at 128 (on held-out text, ffn_down at 128 cost most
of w4g128's loss against q4_0; README "T-MAC on held-out text"). This is a choice, not a
fallback; --pure (Options.pure, as llama-quantize's flag) keeps every matrix at the asked group.
Per-tensor groups are the per-tensor type ids of PR #13206, as the fallback already uses.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import lcm

from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats.errors import InputError
from tinyconvert.pipeline.recipes.mixes import Options, allows_quantization, llama_order
from tinyconvert.pipeline.planned import PlannedTensor
from tinyconvert.quant import get_qtype
from tinyconvert.quant.tmac import tmac_types as tt
from tinyconvert.quant.tmac.core import METHODS, Tile

BITS = (2, 4)
GROUPS = (64, 128)
KEEP_F16 = ("token_embd.weight", "output.weight")
RECIPE_G64 = ".ffn_down"      # as llama-quant.cpp's name.find("ffn_down"): _exps, _shexp too


@dataclass(frozen=True)
class TmacSpec:
    bits: int = 4
    group: int = 128
    zero_point: bool = True
    layout: str = "canonical"
    bm: int | None = None
    kfactor: int | None = None
    method: str = "search"          # quantizer for zero-point types (tinyconvert.quant.tmac.core)

    @property
    def qtype(self) -> tt.TmacType:
        if self.layout == "canonical":
            t = tt.canonical_type(self.bits, self.group, self.zero_point)
        else:
            t = tt.kernel_type(self.bits, self.group, self.zero_point,
                               Tile(self.bm or 256, self.kfactor or 16))
        return replace(t, method=self.method)

    @property
    def name(self) -> str:
        return self.qtype.name


def make_spec(bits: int | None, group: int | None, sym: bool, layout: str, bm: int | None,
              kfactor: int | None, method: str) -> TmacSpec:
    """The CLI's --tmac options, checked."""
    if method not in METHODS:
        raise InputError(f"--tmac-quantizer {method!r} is not known; valid: {', '.join(METHODS)}")
    if layout not in tt.LAYOUTS:
        raise InputError(f"--tmac-layout {layout!r} is not known; valid: {', '.join(tt.LAYOUTS)}")
    bits = 4 if bits is None else bits
    group = 128 if group is None else group
    if layout == "canonical":
        if bits not in BITS or group not in GROUPS:
            raise InputError(f"T-MAC files (llama.cpp PR #13206 types) hold -b {'|'.join(map(str, BITS))} "
                             f"with --group-size {'|'.join(map(str, GROUPS))}; got -b {bits} "
                             f"--group-size {group}")
        if bm is not None or kfactor is not None:
            raise InputError("--tmac-bm and --tmac-kfactor go with --tmac-layout kernel")
    else:
        if bits not in (1, 2, 3, 4) or group not in (32, 64, 128):
            raise InputError(f"the T-MAC kernel layout holds -b 1..4 with --group-size 32|64|128; "
                             f"got -b {bits} --group-size {group}")
        if bm is None or kfactor is None:
            raise InputError("--tmac-layout kernel needs --tmac-bm N and --tmac-kfactor N (the "
                             "tile config T-MAC's kcfg.ini holds for these kernels)")
        if kfactor not in (8, 16) or bm % 32 or bm <= 0:
            raise InputError(f"--tmac-kfactor must be 8 or 16 and --tmac-bm a multiple of 32; got "
                             f"{kfactor} and {bm}")
    return TmacSpec(bits, group, not sym, layout, bm, kfactor, method)


def spec_from_name(name: str) -> TmacSpec | None:
    """`tmac_w4g128_1` and friends as --outtype / --type names."""
    t = tt.CANONICAL.get(name.lower())
    return None if t is None else TmacSpec(t.bits, t.group, t.zero_point)


def recipe_group(name: str, spec: TmacSpec, opts: Options = Options()) -> int:
    """The group a tensor is asked at: 64 for ffn_down in a 4-bit g128 canonical file (the
    recipe; the kernel layout holds one group per file), else the spec's."""
    if (not opts.pure and spec.layout == "canonical" and (spec.bits, spec.group) == (4, 128)
            and RECIPE_G64 in name):
        return 64
    return spec.group


def _target_type(p: PlannedTensor, spec: TmacSpec,
                 opts: Options = Options()) -> tuple[object, str | None]:
    spec = replace(spec, group=recipe_group(p.name, spec, opts))
    want = spec.qtype
    if want.fits_shape(p.shape) is None:
        return want, None
    if spec.layout == "canonical" and spec.group != 64:
        alt = replace(tt.canonical_type(spec.bits, 64, spec.zero_point), method=spec.method)
        if alt.fits_shape(p.shape) is None:
            return alt, want.name
    return get_qtype("f16"), want.name


def assign_tmac(planned: list[PlannedTensor], spec: TmacSpec,
                opts: Options = Options()) -> list[PlannedTensor]:
    out = []
    for p in sorted(planned, key=lambda p: llama_order(p.name)):
        if p.src_dtype == "TMAC":                 # imported codes (GPTQ): kept as they are
            out.append(p)
        elif p.name in KEEP_F16 and len(p.shape) == 2:
            out.append(p if p.qtype.name == "f16" else replace(p, qtype=get_qtype("f16")))
        elif not allows_quantization(p.name, len(p.shape), opts) or len(p.shape) != 2:
            out.append(p if p.qtype.name == "f32" else replace(p, qtype=get_qtype("f32")))
        else:
            qtype, wanted = _target_type(p, spec, opts)
            align = lcm(p.align, getattr(qtype, "row_align", 1))
            out.append(replace(p, qtype=qtype, fallback_from=wanted, align=align))
    return out


def recipe_choices(types: dict[str, str], asked: str | None,
                   fallbacks) -> dict[str, list[str]]:
    """From a plan's tensor -> type names: T-MAC type -> the tensors the asked type's recipe put
    there (another T-MAC type, not a fallback), for the report."""
    fell = {name for name, _, _ in fallbacks}
    out: dict[str, list[str]] = {}
    if asked is None or asked not in tt.CANONICAL:
        return out
    for name, t in types.items():
        if t in tt.CANONICAL and t != asked and name not in fell:
            out.setdefault(t, []).append(name)
    return out


def recipe_note(asked: str | None, choices: dict[str, list[str]]) -> str | None:
    """One line for the report, or None when every matrix is at the asked type."""
    if not choices:
        return None
    parts = [f"{len(names)} tensors at {t} ({names[0]}, ...)" for t, names in choices.items()]
    return f"{asked} recipe: {'; '.join(parts)}; --pure keeps every matrix at {asked}"


VALUE_TYPES = {"str": gf.STRING, "u32": gf.U32, "bool": gf.BOOL}


def file_keys(spec: TmacSpec) -> dict[str, tuple[int, object]]:
    """key -> (GGUF value type id, value) for the file's tinyconvert.tmac.* keys."""
    return {k: (VALUE_TYPES[kind], v) for k, (kind, v) in tt.keys_for(spec.qtype).items()}
