"""A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors, or .bin read with
weights_only) as records: for every base weight it changes, the factors A [r, in] and B [out, r]
and PEFT's scaling for that module (lora_alpha / r, or / sqrt(r) with rsLoRA, with the module's
own rank and alpha from rank_pattern / alpha_pattern), plus the full tensors the adapter replaces
(modules_to_save, trained biases). Nothing is read until a record is."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tinyconvert.formats.checkpoint import open_torch_bin
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord
from tinyconvert.formats.safetensors_file import open_safetensors

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
PREFIX = "base_model.model."
# PEFT's saved names: <module>.lora_A.weight, .lora_B.weight (Linear, Conv1D),
# <module>.lora_embedding_A / _B (Embedding), <module>.lora_magnitude_vector (DoRA)
FACTOR = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A\.weight|lora_B\.weight|lora_embedding_A|"
                    r"lora_embedding_B|lora_magnitude_vector(\.weight)?|lora_B\.bias)$")
# config keys that change what the adapter computes in ways a plain low-rank update cannot say
UNSUPPORTED = {"lora_bias": "a LoRA bias (lora_bias)", "layer_replication": "layer_replication",
               "target_parameters": "LoRA on parameters (target_parameters)",
               "trainable_token_indices": "trainable tokens (trainable_token_indices)",
               "alora_invocation_tokens": "an activated LoRA (alora_invocation_tokens)",
               "use_qalora": "QA-LoRA", "use_bdlora": "BD-LoRA"}


@dataclass(frozen=True)
class LoraPair:
    target: str                      # the base checkpoint tensor, e.g. model.layers.0.mlp.up_proj.weight
    a: TensorRecord                  # [r, in]   (an embedding's: [r, n_vocab])
    b: TensorRecord                  # [out, r]  (an embedding's: [d, r])
    scaling: float                   # PEFT's: alpha / r, or alpha / sqrt(r) with rsLoRA
    rank: int
    embedding: bool = False          # delta = (B @ A).T, as PEFT's Embedding computes it
    fan_in_fan_out: bool = False     # GPT-2 Conv1D weights are [in, out]: delta = (B @ A).T
    magnitude: TensorRecord | None = None   # DoRA's per-output-row magnitude [out]


@dataclass(frozen=True)
class LoraAdapter:
    path: Path
    config: dict
    alpha: float
    pairs: dict[str, LoraPair]                  # by target name
    replaced: dict[str, TensorRecord] = field(default_factory=dict)   # full tensors, by name

    @property
    def dora(self) -> bool:
        return any(p.magnitude is not None for p in self.pairs.values())


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: the first key that matches the end of the
    module name on a dot boundary."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def read_config(folder: Path) -> dict:
    path = folder / "adapter_config.json"
    if not path.is_file():
        raise InputError(f"{folder}: not a PEFT adapter (no adapter_config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object")
    kind = config.get("peft_type", "LORA")
    if kind != "LORA":
        raise InputError(f"{folder}: a {kind} adapter; only LoRA adapters are supported")
    for key, what in UNSUPPORTED.items():
        if config.get(key):
            raise InputError(f"{folder}: the adapter uses {what}, which is not supported")
    for key in ("r", "lora_alpha"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InputError(f"{path}: {key} must be a positive number, got {value!r}")
    for key in ("rank_pattern", "alpha_pattern"):
        if not isinstance(config.get(key) or {}, dict):
            raise InputError(f"{path}: {key} must be an object")
    return config


def _weights(folder: Path) -> list[TensorRecord]:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            path = folder / name
            return open_safetensors(path) if path.suffix == ".safetensors" else open_torch_bin(path)
    raise InputError(f"{folder}: no adapter weights ({' or '.join(WEIGHT_FILES)})")


def _scaling(config: dict, module: str, rank: int) -> float:
    alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, config["lora_alpha"]))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def open_adapter(adapter: str) -> LoraAdapter:
    """adapter: a PEFT folder or a hub repo id."""
    from tinyconvert.io.hub import resolve_model
    folder = resolve_model(adapter)
    config = read_config(folder)
    parts: dict[str, dict[str, TensorRecord]] = {}
    replaced: dict[str, TensorRecord] = {}
    for rec in _weights(folder):
        if not rec.name.startswith(PREFIX):
            raise InputError(f"{folder}: tensor {rec.name!r} is not under {PREFIX!r}; not a "
                             f"PEFT adapter of a causal LM")
        name = rec.name[len(PREFIX):]
        m = FACTOR.match(name)
        if m is None:                # modules_to_save, bias="all", or a saved embedding layer
            _full_tensor(replaced, name, rec)
        elif m["kind"] == "lora_B.bias":
            raise InputError(f"{folder}: {name} is a LoRA bias, which is not supported")
        else:
            parts.setdefault(m["module"], {})[m["kind"].split(".")[0]] = rec
    pairs = dict(_pair(folder, config, module, p) for module, p in parts.items())
    if not pairs and not replaced:
        raise InputError(f"{folder}: the adapter holds no LoRA tensors")
    return LoraAdapter(folder, config, float(config["lora_alpha"]), pairs, replaced)


def _full_tensor(replaced: dict, name: str, rec: TensorRecord) -> None:
    """PEFT saves a trained full tensor as `<module>.weight`, and with resized or targeted
    embeddings also its wrapper's parts: `.modules_to_save.` (the same trained copy, kept when
    no plain name comes), `.base_layer.` (the layer LoRA sits on), `.original_module.` (the
    base's own weights, which the base checkpoint already has)."""
    if ".original_module." in name:
        return
    plain = name.replace(".modules_to_save.", ".").replace(".base_layer.", ".")
    if plain == name or plain not in replaced:
        replaced[plain] = rec


def _pair(folder: Path, config: dict, module: str, p: dict) -> tuple[str, LoraPair]:
    embedding = "lora_embedding_A" in p or "lora_embedding_B" in p
    a = p.get("lora_embedding_A" if embedding else "lora_A")
    b = p.get("lora_embedding_B" if embedding else "lora_B")
    if a is None or b is None:
        raise InputError(f"{folder}: {module} has only one of its two LoRA factors")
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[0] != b.shape[1]:
        raise InputError(f"{folder}: {module} has LoRA factors of shapes {a.shape} and "
                         f"{b.shape}; expected [r, in] and [out, r]")
    rank = a.shape[0]
    want = _pattern_value(config.get("rank_pattern") or {}, module, config["r"])
    if rank != want:
        raise InputError(f"{folder}: {module} has rank {rank} in its weights but {want} in "
                         f"adapter_config.json")
    for rec in (a, b):
        if rec.dtype not in ("F32", "F16", "BF16"):
            raise InputError(f"{folder}: {rec.name} has dtype {rec.dtype}; LoRA factors must "
                             f"be F32, F16 or BF16")
    magnitude = p.get("lora_magnitude_vector")
    if magnitude is not None and (embedding or magnitude.shape != (b.shape[0],)):
        raise InputError(f"{folder}: DoRA on {module} ({'an embedding' if embedding else 'shape '}"
                         f"{'' if embedding else magnitude.shape}) is not supported")
    fan = bool(config.get("fan_in_fan_out")) and not embedding
    return f"{module}.weight", LoraPair(f"{module}.weight", a, b, _scaling(config, module, rank),
                                        rank, embedding, fan, magnitude)
