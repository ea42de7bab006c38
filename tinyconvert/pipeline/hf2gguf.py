"""hf2gguf: a Hugging Face checkpoint of any registered architecture (tinyconvert.archs) to a GGUF file that llama.cpp runs.

--outtype f32/f16/bf16/q8_0/auto follow llama.cpp's converter (bit-identical tensors); any other
quantize type or mix (q4_k_m, ...) quantizes in the same pass, as llama.cpp's quantizer would from
an f32 file of the same weights."""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from tinyconvert.archs import refuse_no_llamacpp_arch
from tinyconvert.archs.base import gguf_arch_name
from tinyconvert.archs.moe.gpt_oss_mxfp4 import file_type as mxfp4_file_type
from tinyconvert.archs.yarn_checks import yarn_notes
from tinyconvert.io.atomic import atomic_output, check_output
from tinyconvert.formats.checkpoint import open_checkpoint
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gptq import read_config as read_gptq_config
from tinyconvert.formats.tokenizers.vocab import add_vocab, load_vocab
from tinyconvert.archs.config import RELU_ACTS, add_hparams, read_config
from tinyconvert.archs.config_checks import check_against_records
from tinyconvert.io.hub import resolve_model
from tinyconvert.pipeline.general import add_general
from tinyconvert.pipeline.recipes.mixes import RECIPES, ModelShape, Options, recipe
from tinyconvert.pipeline.plan import PlannedTensor, extra_tensors, plan_tensors, resolve_outtype
from tinyconvert.io.progress import TensorProgress
from tinyconvert.io.threads import resolve_threads
from tinyconvert.quant.tmac.tmac_types import CANONICAL
from tinyconvert.pipeline.write.stream import stream_tensors
from tinyconvert.pipeline.recipes.tmac_plan import TmacSpec, file_keys, spec_from_name

CONVERTER_OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")


@dataclass
class ConvertResult:
    path: Path
    source: Path
    outtype: str
    n_tensors: int
    n_bytes: int
    seconds: float
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    types: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    n_params: int = 0
    plan: object = None               # the output plan (pipeline/outplan.py); --dry-run: all
    dry_run: bool = False


def _plan(cfg, records, outtype: str, target):
    """The converter's plan for its own out types; the quantizer's recipe for the rest."""
    if target is None and outtype in CONVERTER_OUTTYPES:
        return extra_tensors(cfg) + plan_tensors(cfg, records, outtype)
    from tinyconvert.pipeline.assign import Target, assign
    target = target or Target(recipe(outtype))
    base = extra_tensors(cfg) + plan_tensors(cfg, records, "f32")
    shape = ModelShape(cfg.n_layer, cfg.n_head, cfg.n_kv_head, gguf_arch_name(cfg.arch),
                       cfg.n_expert)
    return assign(base, target, shape)


def _powerinfer_plan(cfg, records, outtype: str, predictor_dir: Path):
    from tinyconvert.formats.predictor import scan_predictors
    from tinyconvert.powerinfer.pwri import to_powerinfer, with_output
    preds = scan_predictors(predictor_dir, cfg.n_layer, cfg.n_embd, cfg.n_ff)
    arch = gguf_arch_name(cfg.arch)
    if outtype == "f16":
        return with_output(to_powerinfer(plan_tensors(cfg, records, "f16"), preds, "f16"), arch)
    from tinyconvert.pipeline.assign import Target, assign
    base = with_output(to_powerinfer(plan_tensors(cfg, records, "f32"), preds, "f32"), arch)
    shape = ModelShape(cfg.n_layer, cfg.n_head, cfg.n_kv_head, gguf_arch_name(cfg.arch),
                       cfg.n_expert)
    return assign(base, Target(outtype), shape)


def hf2gguf(model: str, out: Path, *, outtype: str = "auto", quiet: bool = False,
            model_name: str | None = None, target=None, threads: int | None = None,
            powerinfer: Path | None = None, sparse_threshold: float | None = None,
            dense_relu: bool = False, split_max_size: str | None = None,
            split_max_tensors: int | None = None, dry_run: bool = False,
            imatrix=None, plans: list | None = None, lora=(), lora_scale=()) -> ConvertResult:
    """lora: PEFT adapters merged into the weights while converting (tinyconvert.lora.merge),
    each scaled by lora_scale (one for all, or one per adapter).
    powerinfer: a predictor folder; writes PowerInfer's PWRI file for a ReLU model.
    dense_relu: write a ReLU model as a plain GGUF (for attach-predictor; llama.cpp would run its
    FFN with SiLU, so the file records the activation in tinyconvert.ffn_act).
    split_max_size / split_max_tensors: llama.cpp's split layout (OUT-00001-of-0000N.gguf).
    dry_run: plan only (result.plan), nothing written.
    imatrix: tinyconvert.imatrix.apply.ImatrixOptions, for a quantized outtype.
    plans: plan only: (writer with the header, planned) is appended to it, nothing is written
    (pipeline/ladder/run.py writes several plans in one pass; n_bytes is then 0)."""
    from tinyconvert.formats.gguf_split import make_rule
    rule = make_rule(split_max_size, split_max_tensors)
    outtype = outtype.lower()
    threads = resolve_threads(threads)
    if imatrix is not None and imatrix.given:
        from tinyconvert.imatrix.apply import target_for
        target = target_for(model, outtype, target, imatrix, quiet)
    if target is None and (spec := spec_from_name(outtype)) is not None:
        from tinyconvert.pipeline.assign import Target
        target = Target("f16", tmac=spec)
    if outtype not in CONVERTER_OUTTYPES and target is None:
        try:
            outtype = recipe(outtype)
        except InputError:
            raise InputError(f"unknown --outtype {outtype!r}; valid: "
                             f"{', '.join(CONVERTER_OUTTYPES[:-1])}, auto, or any quantize type: "
                             f"{', '.join(sorted(set(RECIPES) - set(CONVERTER_OUTTYPES)))}, "
                             f"or a T-MAC type: {', '.join(CANONICAL)}") from None
    start = time.perf_counter()
    out = Path(out)
    folder = resolve_model(model)
    check_output(out, folder)
    if powerinfer is None:
        refuse_no_llamacpp_arch(folder)
    cfg = read_config(folder, acts=RELU_ACTS if powerinfer or dense_relu else None)
    gptq_cfg = read_gptq_config(cfg.raw.get("quantization_config"))
    records = open_checkpoint(folder, cfg.raw.get("quantization_config"))
    check_against_records(cfg, records)          # before predictors are looked for per layer
    loras = _open_loras(lora, lora_scale, folder, powerinfer is not None or gptq_cfg is not None)
    if gptq_cfg is not None:
        if powerinfer is not None:
            raise InputError("a GPTQ checkpoint cannot be written as a PowerInfer file")
        outtype, target = _gptq_target(gptq_cfg, outtype, target)
    if powerinfer is not None:
        from tinyconvert.formats.predictor import predictor_threshold
        from tinyconvert.powerinfer.pwri import check_outtype
        outtype = check_outtype(outtype)
        planned = _powerinfer_plan(cfg, records, outtype, Path(powerinfer))
        if sparse_threshold is None:
            sparse_threshold = predictor_threshold(Path(powerinfer))
    else:
        outtype = resolve_outtype(outtype, records)     # from the checkpoint's own dtypes
        if loras:
            from tinyconvert.lora.merge import merged_records
            records = merged_records(records, loras)
        planned = _plan(cfg, records, outtype, target)
    vocab = load_vocab(folder, cfg.n_vocab)

    writer = gguf.GGUFWriter(None, gguf_arch_name(cfg.arch))
    for p in planned:
        writer.add_tensor_info(p.name, p.shape, np.dtype(np.float32), p.qtype.nbytes(p.shape),
                               raw_dtype=p.qtype.ggml_id)     # T-MAC ids are not in gguf-py
    writer.add_type(gguf.GGUFType.MODEL)
    extra_params = sum(math.prod(p.shape) for p in planned
                       if p.name.endswith((".fc1.weight", ".fc2.weight")))
    if powerinfer is not None and cfg.tied:      # PowerInfer's copy of token_embd as output
        extra_params += sum(math.prod(p.shape) for p in planned if p.name == "output.weight")
    notes = add_general(writer, folder, model if not Path(model).is_dir() else None, model_name,
                        extra_params) + yarn_notes(cfg)
    add_hparams(writer, cfg)
    writer.add_file_type(target.file_type if target is not None
                         else mxfp4_file_type(planned, outtype, RECIPES[outtype][0]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if target is not None and target.int8_group:
        from tinyconvert.quant.int8_grouped import GROUP_KEY
        writer.add_uint32(GROUP_KEY, target.int8_group)
    if target is not None and target.tmac:
        for key, (vtype, value) in file_keys(target.tmac).items():
            writer.add_key_value(key, value, gguf.GGUFValueType(vtype))
    add_vocab(writer, vocab)
    if target is not None and target.imatrix is not None:
        from tinyconvert.imatrix.apply import file_keys as imatrix_keys
        for key, vtype, value in imatrix_keys(target.imatrix):
            writer.add_key_value(key, value, gguf.GGUFValueType(vtype))
    if dense_relu:
        from tinyconvert.powerinfer.pwri import ACT_KEY
        writer.add_string(ACT_KEY, "drelu" if cfg.arch.name == "bamboo" else "relu")
    if powerinfer is not None and sparse_threshold is not None:
        from tinyconvert.powerinfer.pwri import THRESHOLD_KEY
        writer.add_float32(THRESHOLD_KEY, float(sparse_threshold))

    if plans is not None:
        if rule is not None:
            raise InputError("a ladder (several types) cannot be split yet: convert each type "
                             "with --split-max-size, or split the outputs with tinyconvert split")
        plans.append((writer, planned))
    from tinyconvert.pipeline.write.shards import plan_planned, write_planned, writer_entries
    plan = plan_planned(out, writer_entries(writer), planned, rule=rule,
                        alignment=writer.data_alignment, magic=b"PWRI" if powerinfer else b"GGUF")
    if dry_run or plans is not None:
        n_bytes = plan.total if dry_run else 0
    elif plan.split:
        n_bytes = write_planned(plan, planned, quiet=quiet, threads=threads)
    else:
        plan.check_space()
        n_bytes = _write(writer, planned, out, quiet, threads, powerinfer is not None)
    out = plan.paths[0]
    fallbacks = [(p.name, p.fallback_from, p.qtype.name) for p in planned if p.fallback_from]
    bytes_in = sum(math.prod(r.shape) * (4 if r.dtype == "F32" else 2)
                   for r in records)
    n_params = sum(math.prod(p.shape) for p in planned
                   if not p.name.endswith(".scale"))
    return ConvertResult(out, folder, outtype, len(planned), n_bytes, time.perf_counter() - start,
                         fallbacks, notes + vocab.notes, dict(Counter(p.qtype.name for p in planned)),
                         bytes_in, n_params, plan, dry_run)


def _open_loras(lora, lora_scale, folder: Path, special: bool):
    if not lora:
        if lora_scale:
            raise InputError("--lora-scale goes with --lora ADAPTER")
        return []
    if special:
        raise InputError("--lora cannot be merged into a GPTQ checkpoint or a PowerInfer file")
    from tinyconvert.lora.merge import check_tokenizer, open_loras
    loras = open_loras(lora, lora_scale)
    check_tokenizer(loras, folder)
    return loras


def _gptq_target(gptq_cfg, outtype: str, target):
    """GPTQ codes go to the T-MAC type of the same bits, group and zero points, unchanged."""
    from tinyconvert.pipeline.assign import Target
    want = gptq_cfg.qtype.name
    asked = target.tmac.name if target is not None and target.tmac else outtype
    if asked not in ("auto", want):
        raise InputError(f"this GPTQ checkpoint ({gptq_cfg.bits}-bit, group {gptq_cfg.group}"
                         f"{', symmetric' if gptq_cfg.sym else ''}) converts to {want} without "
                         f"requantizing; --outtype {asked} is not possible (use auto or {want})")
    spec = TmacSpec(gptq_cfg.bits, gptq_cfg.group, not gptq_cfg.sym)
    return want, Target("f16", options=target.options if target else Options(), tmac=spec)


def _write(writer: gguf.GGUFWriter, planned: list[PlannedTensor], out: Path, quiet: bool,
           threads: int = 1, pwri: bool = False) -> int:
    """gguf-py writes the header, KV data and tensor infos; the data then streams in row chunks,
    each tensor starting on the file's alignment, exactly where the tensor infos say."""
    total = sum(p.qtype.nbytes(p.shape) for p in planned)
    with atomic_output(out) as tmp, TensorProgress(len(planned), total, quiet) as bar:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        stream_tensors(writer.fout[0], planned, writer.data_alignment, bar, threads)
        writer.close()
        if pwri:
            from tinyconvert.powerinfer.pwri import patch_magic
            patch_magic(tmp)
    return out.stat().st_size


__all__ = ["ConvertResult", "hf2gguf"]
