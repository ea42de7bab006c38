"""Quantizing with an importance matrix, as llama-quantize does it (tools/quantize/quantize.cpp
load_imatrix + prepare_imatrix, src/llama-quant.cpp llama_model_quantize_impl):

- the file's entries are normalised to per-column mean squares (files.Imatrix.normalized);
  --exclude-weights S drops entries whose name contains S, --include-weights S keeps only entries
  containing some S (never both); if nothing is left, there is no imatrix at all;
- every tensor being quantized looks its own name up. A missing entry: quantized without one,
  unless its type needs one (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, and Q2_K in a Q2_K_S
  file; never token_embd / output), which is an error. An entry whose size is not n_per_row times
  the experts: an error, except for token_embd, which goes on without;
- rows of expert e use the e-th slice of the vector (3-D tensors), every row of a 2-D tensor the
  whole vector;
- the output file records quantize.imatrix.file, .dataset, .entries_count and .chunks_count.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats.errors import InputError
from tinyconvert.imatrix.files import Imatrix

NEEDS_IMATRIX = ("iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs")
FLOAT_TYPES = ("f32", "f16", "bf16")
TOKEN_EMBD = ("token_embd.weight", "per_layer_token_embd.weight")
KEYS = ("quantize.imatrix.file", "quantize.imatrix.dataset", "quantize.imatrix.entries_count",
        "quantize.imatrix.chunks_count")


@dataclass(frozen=True)
class ImatrixOptions:
    """quantize / hf2gguf --imatrix FILE, or --imatrix-text TEXT (computed on the model, kept in
    --imatrix-out if given), with llama-quantize's --include-weights / --exclude-weights."""
    imatrix: Path | None = None
    imatrix_text: Path | None = None
    imatrix_out: Path | None = None
    include_weights: tuple[str, ...] = ()
    exclude_weights: tuple[str, ...] = ()

    @property
    def given(self) -> bool:
        return self.imatrix is not None or self.imatrix_text is not None


@dataclass(frozen=True, eq=False)
class ImatrixData:
    vectors: dict[str, np.ndarray]     # entry name -> normalised float32 values
    file: str                          # what quantize.imatrix.file records
    dataset: str | None
    chunks: int


def check_options(o: ImatrixOptions) -> None:
    if o.imatrix is not None and o.imatrix_text is not None:
        raise InputError("give --imatrix FILE or --imatrix-text TEXT, not both")
    if o.imatrix_out is not None and o.imatrix_text is None:
        raise InputError("--imatrix-out keeps the matrix --imatrix-text computes; it needs "
                         "--imatrix-text")
    if o.include_weights and o.exclude_weights:
        raise InputError("--include-weights and --exclude-weights cannot be used together (as "
                         "in llama-quantize)")
    if (o.include_weights or o.exclude_weights) and not o.given:
        raise InputError("--include-weights / --exclude-weights filter an importance matrix: "
                         "give --imatrix or --imatrix-text")


def select(im: Imatrix, o: ImatrixOptions, file: str) -> ImatrixData | None:
    """prepare_imatrix: normalised vectors, filtered; None when no entry is left."""
    if not im.is_legacy and not im.has_metadata:
        raise InputError(f"{file}: missing imatrix metadata (imatrix.datasets, chunk_count, "
                         f"chunk_size); llama-quantize refuses such a file too")
    names = [n for n in im.entries if not any(s in n for s in o.exclude_weights)]
    if o.include_weights:
        names = [n for n in names if any(s in n for s in o.include_weights)]
    vectors = {n: im.normalized(n) for n in names}
    for n, v in vectors.items():
        if not np.isfinite(v).all():
            raise InputError(f"{file}: the importance matrix of {n} holds a non-finite value")
    if not vectors:
        return None
    return ImatrixData(vectors, file, im.datasets[0] if im.datasets else None, im.chunk_count)


def load(model: str | Path, o: ImatrixOptions, quiet: bool = True) -> ImatrixData | None:
    """The matrix the options ask for: read from --imatrix, or computed on MODEL from
    --imatrix-text (and written to --imatrix-out when given: legacy format if it ends in .dat,
    else GGUF)."""
    check_options(o)
    if o.imatrix is not None:
        from tinyconvert.imatrix.files import read
        return select(read(Path(o.imatrix)), o, str(o.imatrix))
    if o.imatrix_text is None:
        return None
    from tinyconvert.imatrix import api, files
    from tinyconvert.imatrix.compute import compute_imatrix
    im = compute_imatrix(model, api.read_text(o.imatrix_text), dataset=str(o.imatrix_text),
                         quiet=quiet)
    if o.imatrix_out is None:
        return select(im, o, str(o.imatrix_text))
    out = Path(o.imatrix_out)
    files.write(im, out, "dat" if out.suffix == ".dat" else "gguf")
    # read back: the very vectors a later --imatrix OUT gives (a .dat normalises differently)
    return select(files.read(out), o, str(out))


def requires_imatrix(name: str, qtype: str, mix: str) -> bool:
    """tensor_requires_imatrix, on the final (post-fallback) type."""
    if name in TOKEN_EMBD or name == "output.weight":
        return False
    return qtype in NEEDS_IMATRIX or (qtype == "q2_k" and mix == "q2_k_s")


def _vector(p, data: ImatrixData | None) -> np.ndarray | None:
    """This tensor's [n_mat, n_per_row] matrix, None to go without, or an error."""
    v = data.vectors.get(p.name) if data is not None else None
    n_mat = p.shape[0] if len(p.shape) == 3 else 1
    if v is not None and v.size != p.shape[-1] * n_mat:
        if p.name in TOKEN_EMBD:          # llama.cpp logs it and goes on without
            return None
        raise InputError(f"imatrix size {v.size} is different from tensor size "
                         f"{p.shape[-1] * n_mat} for {p.name} (a matrix of another model?)")
    return None if v is None else v.reshape(n_mat, p.shape[-1])


def attach(planned: list, data: ImatrixData | None, mix: str, allows) -> list:
    """Each tensor being quantized gets its vector (PlannedTensor.imatrix); refusals as
    llama-quantize's. allows(p): whether the mix may quantize the tensor at all."""
    out = []
    for p in planned:
        if p.src_dtype in ("RAW", "I8", "TMAC") or p.qtype.name in FLOAT_TYPES or not allows(p):
            out.append(p)
            continue
        v = _vector(p, data)
        if v is None and requires_imatrix(p.name, p.qtype.name, mix):
            raise InputError(f"{p.name} becomes {p.qtype.name}, which needs an importance "
                             f"matrix: " + ("this quantization requires an imatrix (give "
                                            "--imatrix or --imatrix-text)" if data is None else
                                            "the matrix has no entry for it"))
        out.append(replace(p, imatrix=v) if v is not None else p)
    return out


def file_keys(data: ImatrixData) -> list[tuple[str, int, object]]:
    """(key, GGUF value type, value) in the order llama-quantize appends them."""
    def short(s: str) -> str:              # strncpy(..., 127)
        return s.encode("utf-8")[:127].decode("utf-8", "ignore")
    keys = [(KEYS[0], gf.STRING, short(data.file))]
    if data.dataset is not None:
        keys.append((KEYS[1], gf.STRING, short(data.dataset)))
    keys.append((KEYS[2], gf.U32, len(data.vectors)))
    if data.chunks > 0:
        keys.append((KEYS[3], gf.U32, data.chunks))
    return keys


def encode(p, r0: int, r1: int) -> np.ndarray:
    """Rows [r0, r1) of a tensor with an imatrix: each expert's rows with its own vector, as
    llama_tensor_quantize_impl's chunks, which never cross an expert."""
    from tinyconvert.pipeline.write.encode import to_f32
    rows = to_f32(p.read_rows(r0, r1), p.src_dtype).reshape(r1 - r0, -1)
    if hasattr(p.qtype, "quantize_rows"):    # T-MAC (2-D only): (codes, tail sections)
        return p.qtype.pack(p.qtype.quantize_rows(rows, imatrix=p.imatrix[0]))
    per = p.n_rows // p.imatrix.shape[0]
    parts, r = [], r0
    while r < r1:
        e, end = r // per, min(r1, (r // per + 1) * per)
        parts.append(p.qtype.quantize(rows[r - r0:end - r0], imatrix=p.imatrix[e]))
        r = end
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def with_imatrix(target, model: str | Path, o: ImatrixOptions | None, quiet: bool = True):
    """The quantize target with the matrix the options give (and llama.cpp's has_imatrix
    mix rules on); unchanged when there is none or the filters leave no entry."""
    if o is None:
        return target
    check_options(o)
    if not o.given:
        return target
    if target.int8_group:
        raise InputError("an importance matrix goes with llama.cpp's quant types and T-MAC, "
                         "not with grouped INT8 (round to nearest, nothing to weight)")
    data = load(model, o, quiet)
    if data is None:
        return target
    return replace(target, imatrix=data, options=replace(target.options, has_imatrix=True))


def target_for(model: str, outtype: str, target, o: ImatrixOptions, quiet: bool = True):
    """hf2gguf --outtype TYPE --imatrix ...: the quantizer's target for TYPE, with the matrix
    computed on (or read for) the checkpoint."""
    from tinyconvert.pipeline.assign import Target
    from tinyconvert.pipeline.recipes.mixes import recipe
    if target is None and outtype in ("f32", "f16", "bf16", "auto"):
        raise InputError(f"an importance matrix is for quantized types; --outtype {outtype} "
                         f"does not use one")
    from tinyconvert.pipeline.recipes.tmac_plan import spec_from_name
    if target is None and (spec := spec_from_name(outtype)) is not None:
        target = Target("f16", tmac=spec)
    return with_imatrix(target or Target(recipe(outtype)), model, o, quiet)
