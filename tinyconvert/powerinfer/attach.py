"""attach-predictor: a dense ReLU GGUF of a family PowerInfer runs (ReLU-LLaMA, Bamboo,
ReluFalcon: INVENTORIES; OPT has no dense GGUF, hf2gguf --powerinfer converts it), F16 or
quantized, plus a predictor folder to a PowerInfer file. Tensors other than ffn_down are copied
byte for byte; ffn_down is (dequantized and) transposed into F16 ffn_down_t; fc1/fc2 are added
as F16; keys are copied, with powerinfer.sparse_threshold added when given. From a dense file
that hf2gguf --dense-relu wrote, the result equals hf2gguf --powerinfer's byte for byte."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from tinyconvert.io.atomic import atomic_output, check_output
from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_edit import copy_entries, encode_entry
from tinyconvert.formats.gguf_model import open_gguf
from tinyconvert.formats.gguf_split import SPLIT_KEYS
from tinyconvert.formats.gguf_write import OutTensor, write_header
from tinyconvert.formats.predictor import scan_predictors, predictor_threshold
from tinyconvert.powerinfer.pwri import ACT_KEY, MAGIC, THRESHOLD_KEY, to_powerinfer, with_output
from tinyconvert.pipeline.quantize import gguf_plan
from tinyconvert.pipeline.write.stream import stream_tensors
from tinyconvert.io.threads import resolve_threads

LLAMA_LAYER = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
               "ffn_up", "ffn_down")


@dataclass(frozen=True)
class Inventory:
    """The tensors a dense file of the architecture must have (global, per layer) and may have,
    as names without their .weight / .bias suffix: PowerInfer's loader takes nothing else."""
    required: tuple[str, ...]
    layer: tuple[str, ...]
    optional: tuple[str, ...] = ("output.weight",)
    layer_optional: tuple[str, ...] = ()


_LLAMA = Inventory(("token_embd.weight", "output_norm.weight"),
                   tuple(f"{t}.weight" for t in LLAMA_LAYER))
INVENTORIES = {
    "llama": _LLAMA, "bamboo": _LLAMA,
    # ReluFalcon-40B: two LayerNorms (attn_norm_2 only in the new decoder architecture), no gate
    "falcon": Inventory(("token_embd.weight", "output_norm.weight", "output_norm.bias"),
                        ("attn_norm.weight", "attn_norm.bias", "attn_qkv.weight",
                         "attn_output.weight", "ffn_up.weight", "ffn_down.weight"),
                        layer_optional=("attn_norm_2.weight", "attn_norm_2.bias")),
}
ARCHS = tuple(INVENTORIES)


@dataclass
class AttachResult:
    path: Path
    n_tensors: int
    ranks: list[int]
    threshold: float | None
    plan: object = None                 # the output plan (pipeline/outplan.py)
    dry_run: bool = False


def _check_inventory(f: gf.GgufFile, arch: str, n_layer: int) -> None:
    inv = INVENTORIES[arch]
    layers = range(n_layer)
    want = set(inv.required) | {f"blk.{i}.{t}" for i in layers for t in inv.layer}
    have = {t.name for t in f.tensors}
    missing = sorted(want - have)
    if missing:
        raise InputError(f"{f.path}: not a dense {arch} file: {missing[0]} is missing")
    allowed = set(inv.optional) | {f"blk.{i}.{t}" for i in layers for t in inv.layer_optional}
    extra = sorted(have - want - allowed)
    if extra:
        raise InputError(f"{f.path}: tensor {extra[0]} has no place in a PowerInfer file "
                         f"(PowerInfer's loader rejects extra tensors)")


def attach_predictor(inp: Path, predictor_dir: Path, out: Path, *,
                     sparse_threshold: float | None = None, quiet: bool = False,
                     dry_run: bool = False, threads: int | None = None) -> AttachResult:
    """dry_run: plan only (result.plan), nothing written."""
    from tinyconvert.pipeline.outplan import single_plan
    inp, out = Path(inp), Path(out)
    threads = resolve_threads(threads)
    check_output(out, inp)
    f = open_gguf(inp)                  # one file, or every shard of a split model
    for shard in f.shards[1:]:
        check_output(out, shard.path)
    if f.magic != b"GGUF":
        raise InputError(f"{inp}: already a PowerInfer file; attach to the dense GGUF instead")
    arch = f.value("general.architecture")
    if arch not in ARCHS:
        raise InputError(f"{inp}: architecture {arch!r}; PowerInfer runs {', '.join(ARCHS)}")
    n_layer = f.value(f"{arch}.block_count")
    n_embd, n_ff = f.value(f"{arch}.embedding_length"), f.value(f"{arch}.feed_forward_length")
    _check_inventory(f, arch, n_layer)
    preds = scan_predictors(Path(predictor_dir), n_layer, n_embd, n_ff)
    if sparse_threshold is None:
        sparse_threshold = predictor_threshold(Path(predictor_dir))
    try:
        planned, raw = gguf_plan(f)
        kept = [p if re.search(r"\.ffn_down\.weight$", p.name)
                else replace(p, read_rows=raw[p.name], src_dtype="RAW") for p in planned]
        final = with_output(to_powerinfer(kept, preds, "f16"), arch)
        entries = _entries(f, sparse_threshold)
        tensors = [OutTensor(p.name, tuple(reversed(p.shape)), p.qtype.ggml_id,
                             p.qtype.nbytes(p.shape)) for p in final]
        plan = single_plan(out, entries, tensors, {p.name: p.qtype.name for p in final},
                           alignment=f.alignment, magic=MAGIC)
        if not dry_run:
            plan.check_space()
            with atomic_output(out) as tmp, open(tmp, "wb") as fh:
                write_header(fh, tensors, entries, alignment=f.alignment, magic=MAGIC)
                stream_tensors(fh, final, f.alignment, threads=threads)
    finally:
        f.close()
    return AttachResult(out, len(final), [p.rank for p in preds], sparse_threshold, plan,
                        dry_run)


def _entries(f: gf.GgufFile, threshold: float | None) -> list[bytes]:
    entries = copy_entries(f.first, (ACT_KEY, THRESHOLD_KEY, *SPLIT_KEYS))
    if threshold is not None:
        entries.append(encode_entry(THRESHOLD_KEY, gf.F32, float(threshold)))
    return entries
