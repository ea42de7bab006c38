"""lora2gguf: a PEFT LoRA adapter to llama.cpp's adapter GGUF (general.type=adapter,
adapter.type=lora, adapter.lora.alpha), loaded next to the base GGUF (llama-cli --lora).

Facts from llama.cpp (src/llama-adapter.cpp): each changed weight `<name>.weight` comes as
`<name>.weight.lora_a` (numpy [r, in], PEFT's A) and `<name>.weight.lora_b` ([out, r], PEFT's B);
it adds scale * (alpha / r) * B @ A x with one alpha for the whole file and r read from B. PEFT's
scaling differs per module (rank_pattern, alpha_pattern) and with rsLoRA (alpha / sqrt(r)), so B
is multiplied by PEFT's scaling * r / alpha: then llama.cpp's scale is PEFT's.

Names come from the base's architecture table (the same NameMapper hf2gguf uses); llama's Q/K
permutation reorders output rows, so it applies to B alone (permute(B @ A) = permute(B) @ A).
A family's own record transforms (Arch.records) reach B the same way when they only reorder rows
(GPT-NeoX's and Falcon's fused qkv); GPT-2's Conv1D transpose undoes fan_in_fan_out, so those
factors go as they are (lora.conv1d). Tensors a family splits or stacks, MoE experts, weights
llama.cpp multiplies without LoRA (lora.applied: DeepSeek's MLA projections), and adapters a
low-rank pair cannot express (DoRA, full tensors) are refused: merge instead."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import gguf
import numpy as np

from tinyconvert.archs import refuse_no_llamacpp_arch
from tinyconvert.archs.base import NameMapper, gguf_arch_name, permute_qk
from tinyconvert.archs.config import read_config
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord
from tinyconvert.io.atomic import atomic_output, check_output
from tinyconvert.io.hub import resolve_model
from tinyconvert.io.progress import TensorProgress
from tinyconvert.lora.adapter import LoraAdapter, LoraPair, open_adapter
from tinyconvert.lora.applied import refuse_unapplied
from tinyconvert.lora.conv1d import transposed_by_family
from tinyconvert.lora.experts import split_experts, stacked_rows, stacked_shape
from tinyconvert.lora.names import checkpoint_name
from tinyconvert.pipeline.write.encode import to_f32
from tinyconvert.pipeline.plan import PlannedTensor
from tinyconvert.pipeline.write.stream import stream_tensors
from tinyconvert.quant import get_qtype

OUTTYPES = ("f32", "f16", "bf16")
MERGE = "merge instead: hf2gguf MODEL --lora ADAPTER"


@dataclass
class LoraResult:
    path: Path
    adapter: Path
    base: Path
    arch: str
    alpha: float
    n_pairs: int
    n_bytes: int
    seconds: float


def refuse_unexpressible(adapter: LoraAdapter) -> None:
    """What llama.cpp's adapter cannot apply, in one line each."""
    where = adapter.path
    if adapter.config.get("use_dora") or adapter.dora:
        raise InputError(f"{where}: a DoRA adapter (use_dora) rescales whole weight rows, which "
                         f"llama.cpp's LoRA adapters cannot do; {MERGE}")
    emb = [p.target for p in adapter.pairs.values() if p.embedding]
    if emb:
        raise InputError(f"{where}: LoRA on the embeddings ({emb[0]}) is not supported in a "
                         f"GGUF adapter; {MERGE}")
    if adapter.replaced:
        first = sorted(adapter.replaced)[0]
        raise InputError(f"{where}: the adapter carries full tensors ({first}; modules_to_save "
                         f"or trained biases), which a GGUF adapter cannot hold; {MERGE}")


def _family_rows(cfg, target: str, b: TensorRecord) -> TensorRecord:
    """B through the family's own record transforms (Arch.records), named as its weight: a row
    reorder (GPT-NeoX's and Falcon's fused qkv) applies to B's rows as to W's. A transform that
    changes the name or shape (a transpose, a split, a stack) has no low-rank form here."""
    if cfg.arch.records is None:
        return b
    try:
        out = cfg.arch.records(cfg, [replace(b, name=target)])
    except InputError:
        out = []
    if len(out) != 1 or out[0].name != target or out[0].shape != b.shape:
        raise InputError(f"{target}: {cfg.hf_class} reshapes this tensor while converting, so "
                         f"its LoRA factors cannot be written as a GGUF adapter; {MERGE}")
    return out[0]


def _conv1d_b(cfg, pair: LoraPair) -> TensorRecord:
    """fan_in_fan_out: B as it is, where the family transposes the weight (lora.conv1d)."""
    if not transposed_by_family(cfg, pair.target, pair.a.shape[1], pair.b.shape[0]):
        raise InputError(f"{pair.target}: the adapter says fan_in_fan_out (a Conv1D weight "
                         f"stored [in, out]), but {cfg.hf_class} does not store this weight "
                         f"that way (wrong adapter_config.json?)")
    return pair.b


def _base_names(cfg, folder: Path, adapter: LoraAdapter) -> LoraAdapter:
    """The adapter with its targets under the base checkpoint's names (lora.names): checked
    against the checkpoint's tensors when there, else against the architecture table."""
    from tinyconvert.formats.checkpoint import open_checkpoint
    try:
        names = {r.name for r in open_checkpoint(folder)}
        known = names.__contains__
    except InputError:                           # config and tokenizer only
        mapper = NameMapper(cfg.arch, cfg.n_layer, cfg.hf_class)
        known = lambda name: _maps(mapper, name)   # noqa: E731
    pairs = {}
    for target, pair in adapter.pairs.items():
        name = checkpoint_name(target, known)
        pairs[name] = replace(pair, target=name)
    return replace(adapter, pairs=pairs)


def _maps(mapper: NameMapper, name: str) -> bool:
    try:
        mapper.gguf_name(name)
    except InputError:
        return False
    return True


def _check_shapes(cfg, folder: Path, adapter: LoraAdapter) -> None:
    """Against the base checkpoint's tensor headers when its weights are there (only config.json
    is needed; then llama.cpp's loader is the one to check shapes): factors made for another
    model would be refused by llama.cpp only when loaded."""
    from tinyconvert.formats.checkpoint import open_checkpoint
    try:
        shapes = {r.name: r.shape for r in open_checkpoint(folder)}
    except InputError:
        return                                   # config and tokenizer only
    for target, pair in adapter.pairs.items():
        want = (pair.b.shape[0], pair.a.shape[1])[::-1 if pair.fan_in_fan_out else 1]
        if target not in shapes and target.endswith("lm_head.weight") and cfg.tied:
            raise InputError(f"{adapter.path}: LoRA on lm_head of a model with tied embeddings "
                             f"cannot be a GGUF adapter (there is no output.weight); {MERGE}")
        if shapes.get(target, want) != want:
            raise InputError(f"{adapter.path}: {target} is {shapes[target]} in the base but the "
                             f"LoRA factors make {want} (wrong base model?)")
        if target not in shapes:
            raise InputError(f"{adapter.path} changes {target}, which the base checkpoint does "
                             f"not have (wrong base model?)")


def _factor_rows(rec, fold: float, heads: int | None):
    """The factor as float32 rows: B folded by PEFT's scaling and permuted where its weight is."""
    def rows(r0: int, r1: int) -> np.ndarray:
        w = to_f32(rec.load().reshape(rec.n_rows, -1), rec.dtype).reshape(rec.shape)
        if heads is not None:
            w = permute_qk(w, heads)
        if fold != 1.0:
            w = (w.astype(np.float64) * fold).astype(np.float32)
        return np.ascontiguousarray(w[r0:r1])
    return rows


def plan_adapter(cfg, adapter: LoraAdapter, outtype: str, *, alpha: float) -> list[PlannedTensor]:
    mapper = NameMapper(cfg.arch, cfg.n_layer, cfg.hf_class)
    qtype = get_qtype(outtype)
    plain, stacks = split_experts(adapter.pairs, cfg.n_expert)
    planned = []
    for stack in stacks:                         # lora.experts: held whole, experts are small
        name = mapper.gguf_name(stack.key)
        refuse_unapplied(gguf_arch_name(cfg.arch), name, stack.key, MERGE)
        planned += [PlannedTensor(f"{name}.lora_{w}", stacked_shape(stack, w), qtype,
                                  stacked_rows(stack, w, alpha), "F32") for w in "ab"]
    for target in sorted(plain, key=_layer_order):
        pair: LoraPair = plain[target]
        name = mapper.gguf_name(target)
        refuse_unapplied(gguf_arch_name(cfg.arch), name, target, MERGE)
        heads = mapper.permute_heads(target, cfg.n_head, cfg.n_kv_head)
        if heads is not None and pair.b.shape[0] % (2 * heads):
            raise InputError(f"{target}: {pair.b.shape[0]} rows cannot be split into {heads} heads")
        fold = pair.scaling * pair.rank / alpha      # llama.cpp applies alpha / r
        b = _conv1d_b(cfg, pair) if pair.fan_in_fan_out else _family_rows(cfg, target, pair.b)
        for suffix, rec, f, h in ((".lora_a", pair.a, 1.0, None), (".lora_b", b, fold, heads)):
            planned.append(PlannedTensor(name + suffix, rec.shape, qtype,
                                         _factor_rows(rec, f, h), "F32"))
    return planned


def _layer_order(target: str):
    parts = target.split(".")
    return [int(p) if p.isdigit() else 0 for p in parts[:4]] + [target]


def lora2gguf(adapter: str, out: Path, *, base: str | None = None, outtype: str = "f32",
              quiet: bool = False) -> LoraResult:
    """adapter: a PEFT folder or hub id; base: the base checkpoint (its config.json is enough;
    default: the adapter's base_model_name_or_path)."""
    start = time.perf_counter()
    outtype = outtype.lower()
    if outtype not in OUTTYPES:
        raise InputError(f"unknown --outtype {outtype!r} for an adapter; valid: {', '.join(OUTTYPES)}")
    ad = open_adapter(adapter)
    refuse_unexpressible(ad)
    base = base or ad.config.get("base_model_name_or_path")
    if not base:
        raise InputError(f"{ad.path}: adapter_config.json names no base model; pass --base MODEL")
    folder = resolve_model(str(base))
    out = Path(out)
    check_output(out, folder, ad.path)
    refuse_no_llamacpp_arch(folder)
    cfg = read_config(folder)
    ad = _base_names(cfg, folder, ad)
    _check_shapes(cfg, folder, ad)
    planned = plan_adapter(cfg, ad, outtype, alpha=ad.alpha)
    writer = gguf.GGUFWriter(None, gguf_arch_name(cfg.arch))
    for p in planned:
        writer.add_tensor_info(p.name, p.shape, np.dtype(np.float32), p.qtype.nbytes(p.shape),
                               raw_dtype=p.qtype.ggml_id)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, ad.alpha)
    writer.add_name(ad.path.resolve().name)
    total = sum(p.qtype.nbytes(p.shape) for p in planned)
    with atomic_output(out) as tmp, TensorProgress(len(planned), total, quiet) as bar:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        stream_tensors(writer.fout[0], planned, writer.data_alignment, bar)
        writer.close()
    return LoraResult(out, ad.path, folder, gguf_arch_name(cfg.arch), ad.alpha,
                      len(planned) // 2, out.stat().st_size, time.perf_counter() - start)

