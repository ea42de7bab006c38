"""gguf2hf: a GGUF file back to a Hugging Face checkpoint folder that transformers loads.

Every tensor is dequantized (any type the reader knows, T-MAC and grouped INT8 included) and
hf2gguf's transforms are undone through the same architecture tables (export/layout.py); the
config comes from the GGUF keys and is proved by reading it back with hf2gguf's own reader
(export/hfconfig.py); the tokenizer is rebuilt from the GGUF vocabulary (export/tokenizer_out.py).
Tensors stream one at a time into safetensors shards (export/safetensors_out.py); the folder is
written under a temporary name and renamed into place when complete.

--dtype auto keeps what the file holds without rounding: f32 if any matrix is F32, else bf16 or
f16 if its float matrices are that type, else (all quantized) bf16: the type modern checkpoints
are trained and shipped in (f16's narrow range overflows some models' activations), and the
dequantized weights already carry the quantization's 2-8 bit error, far above bf16's rounding."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyconvert.archs import ARCHITECTURES, POWERINFER_ONLY
from tinyconvert.archs.config import read_config
from tinyconvert.export.hfconfig import check_round_trip, config_dict, write_config
from tinyconvert.export.layout import export_plan, hf_state_shapes
from tinyconvert.export.hfconfig import arch_keys
from tinyconvert.export.made import LONG, ROPE_FREQS, check_made, llama3_candidates, longrope_parameters
from tinyconvert.export.safetensors_out import DEFAULT_SHARD, DTYPES, Entry, write_shards
from tinyconvert.export.tokenizer_out import write_tokenizer
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_file import GgufFile, read_gguf
from tinyconvert.io.progress import TensorProgress
from tinyconvert.quant.int8_grouped import GROUP_KEY, SCALE_SUFFIX
from tinyconvert.quant.int8_grouped import dequantize as int8_dequantize
from tinyconvert.runtime.weights import dequantize

DTYPE_NAMES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
FLOAT_IDS = {0: "f32", 1: "f16", 30: "bf16"}
UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "B": 1}


@dataclass
class ExportResult:
    path: Path
    hf_class: str
    dtype: str
    n_tensors: int
    n_bytes: int
    shards: list[str]
    seconds: float
    files: list[str] = field(default_factory=list)


def parse_size(text: str) -> int:
    """'5GB', '500MiB', '1000000' -> bytes (decimal and binary units, as transformers reads them)."""
    s = str(text).strip().upper().replace(" ", "")
    unit = next((u for u in sorted(UNITS, key=len, reverse=True) if s.endswith(u)), "B")
    num = s[:len(s) - len(unit)] if s.endswith(unit) else s
    try:
        n = int(float(num) * UNITS[unit])
    except ValueError:
        raise InputError(f"max shard size {text!r} is not a size like 5GB or 500MiB") from None
    if n <= 0:
        raise InputError(f"max shard size {text!r} must be positive")
    return n


def resolve_dtype(dtype: str, f: GgufFile) -> str:
    if dtype != "auto":
        if dtype not in DTYPES:
            raise InputError(f"--dtype {dtype!r}: choose f32, f16, bf16 or auto")
        return dtype
    kinds = {FLOAT_IDS.get(t.ggml_type, "quant") for t in f.tensors if len(t.ne) >= 2}
    return next((k for k in ("f32", "bf16", "f16") if k in kinds), "bf16")


def _loader(f: GgufFile):
    """load(name) -> float32 array in torch order; the last tensor is kept, since expert
    tensors of older transformers layouts take one slice each from the same stack."""
    tensors = {t.name: t for t in f.tensors}
    grouped = bool(f.value(GROUP_KEY))
    last: dict[str, np.ndarray] = {}

    def load(name: str) -> np.ndarray:
        if name in last:
            return last[name]
        t, scale = tensors[name], tensors.get(name + SCALE_SUFFIX) if grouped else None
        if scale is not None:              # tinyconvert's grouped INT8: codes times scales
            codes = f.tensor_bytes(t).view(np.int8).reshape(-1, t.ne[0])
            a = int8_dequantize(codes, dequantize(f, scale).reshape(codes.shape[0], -1))
            a = np.asarray(a, dtype=np.float32).reshape(t.shape)
        else:
            a = dequantize_tensor(f, t)
        last.clear()
        last[name] = a
        return a
    return load


def dequantize_tensor(f: GgufFile, t) -> np.ndarray:
    return dequantize(f, t)


def _candidates(f: GgufFile) -> list[tuple[str, object]]:
    name = f.value("general.architecture")
    found = [(c, a) for c, a in ARCHITECTURES.items()
             if a.arch_name == name and c not in POWERINFER_ONLY]
    if not found:
        raise InputError(f"gguf2hf: architecture {name!r} has no Hugging Face class registered "
                         f"(tinyconvert archs lists them)")
    return found


def _model_type(hf_class: str) -> str:
    """The model type whose own config class goes with hf_class (several types reuse
    LlamaForCausalLM; LlamaConfig is llama's)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    types = [t for t, cls in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items() if cls == hf_class]
    if not types:
        raise InputError(f"gguf2hf: transformers has no causal-LM model type for {hf_class}")
    stem = hf_class.split("For")[0]
    return next((t for t in types if CONFIG_MAPPING_NAMES.get(t) in (stem + "Config",
                                                                     stem + "TextConfig")), types[0])


def _plan_as(folder: Path, f: GgufFile, hf_class: str, arch, shapes: dict, dtype: str, load):
    """config.json for hf_class (checked by reading it back, and by remaking the tensors hf2gguf
    computes from it) and the tensor plan, or InputError."""
    from transformers import AutoConfig
    model_type = _model_type(hf_class)
    defaults = AutoConfig.for_model(model_type).to_dict()
    values = config_dict(f.values(), arch, hf_class, defaults, tensors=shapes,
                         dtype=DTYPE_NAMES[dtype])
    if LONG in shapes:
        values["rope_parameters"] = longrope_parameters(
            load, values["rope_parameters"], arch_keys(f.values(), arch.arch_name))
    variants = [values]
    if ROPE_FREQS in shapes:
        variants = [{**values, "rope_parameters": r}
                    for r in llama3_candidates(load(ROPE_FREQS), values["rope_parameters"])]
    for i, v in enumerate(variants):
        config = write_config(folder, v, model_type)
        check_round_trip(folder, f.values(), arch)
        cfg = read_config(folder)
        try:
            made = check_made(cfg, load, set(shapes))
        except InputError:
            if i + 1 == len(variants):
                raise
            continue
        rest = {k: s for k, s in shapes.items() if k not in made}
        return config, export_plan(cfg, hf_state_shapes(folder), rest)


def _choose(folder: Path, f: GgufFile, shapes: dict, dtype: str, load):
    """The first registered class of the file's architecture the file fits (llama: Llama, or
    Mixtral when it has experts)."""
    errors = []
    for hf_class, arch in _candidates(f):
        try:
            return (hf_class, *_plan_as(folder, f, hf_class, arch, shapes, dtype, load))
        except InputError as e:
            errors.append(f"as {hf_class}: {e}")
    raise InputError("gguf2hf cannot export this file " + "; ".join(errors))


def _side_files(folder: Path, f: GgufFile, config: dict) -> list[str]:
    gen = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in config}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    if f.value("tokenizer.ggml.tokens") is None:
        return ["generation_config.json"]
    return ["generation_config.json", *write_tokenizer(folder, f.values(),
                                                        n_ctx=config.get("max_position_embeddings"))]


def _check_out(path: Path, out: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{out}: the output folder's parent {parent} does not exist")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder")


def gguf2hf(path: Path | str, out: Path | str, *, dtype: str = "auto",
            max_shard_size: str = DEFAULT_SHARD, quiet: bool = False) -> ExportResult:
    path, out, t0 = Path(path), Path(out), time.time()
    _check_out(path, out)
    limit = parse_size(max_shard_size)
    f = read_gguf(path)
    dtype = resolve_dtype(dtype, f)
    grouped = bool(f.value(GROUP_KEY))
    shapes = {t.name: t.shape for t in f.tensors if not (grouped and t.name.endswith(SCALE_SUFFIX))}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        load = _loader(f)
        hf_class, config, plan = _choose(tmp, f, shapes, dtype, load)
        files = ["config.json", *_side_files(tmp, f, config)]
        by_name = {t.name: t for t in plan}
        entries = [Entry(t.name, tuple(t.shape)) for t in plan]
        n_bytes = sum(e.nbytes(dtype) for e in entries)
        with TensorProgress(len(entries), n_bytes, quiet) as bar:
            shards = write_shards(tmp, entries, lambda e: by_name[e.name].build(load), dtype=dtype,
                                  max_shard_size=limit, on_tensor=bar.advance)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)       # mkdtemp makes 0700; give the usual folder mode
        if out.exists():
            out.rmdir()                     # checked empty above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out, hf_class, dtype, len(entries), n_bytes, shards, time.time() - t0,
                        sorted(files + shards))
