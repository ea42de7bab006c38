"""Merging LoRA adapters into checkpoint records while converting: W += scale * scaling * (B @ A),
as PEFT's merge_and_unload computes it, on the checkpoint's own tensors (HF names and layout),
before any architecture transform, so the Q/K permutation, fused splits, transposes and expert
stacking apply to the merged weight exactly as to a plain one. DoRA rescales each output row to
its trained magnitude; modules_to_save replace the tensor. One merged tensor is held at a time:
it is computed when its first rows are asked for and let go after its last."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.records import TensorRecord
from tinyconvert.lora.adapter import LoraAdapter, LoraPair, open_adapter
from tinyconvert.lora.names import checkpoint_name
from tinyconvert.pipeline.write.encode import to_f32

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "added_tokens.json")


@dataclass(frozen=True)
class Lora:
    adapter: LoraAdapter
    scale: float = 1.0               # the user's --lora-scale, times PEFT's scaling


def scales_for(n: int, lora_scale) -> list[float]:
    """--lora-scale: none (1.0 each), one for all adapters, or one per adapter."""
    given = list(lora_scale or ())
    if len(given) not in (0, 1, n) or (given and not n):
        raise InputError(f"--lora-scale given {len(given)} times for {n} adapter(s); give it "
                         f"once (for all) or once per --lora")
    for s in given:
        if not np.isfinite(s):
            raise InputError(f"--lora-scale {s} is not a finite number")
    return [float(given[0] if len(given) == 1 else given[i]) if given else 1.0 for i in range(n)]


def open_loras(lora, lora_scale=()) -> list[Lora]:
    adapters = [open_adapter(str(a)) for a in lora or ()]
    return [Lora(a, s) for a, s in zip(adapters, scales_for(len(adapters), lora_scale))]


def _f32(rec: TensorRecord) -> np.ndarray:
    return to_f32(rec.load().reshape(rec.n_rows, -1), rec.dtype).reshape(rec.shape)


def delta(pair: LoraPair, scale: float) -> np.ndarray:
    """The change to the checkpoint tensor, in its own layout (float32)."""
    a, b = _f32(pair.a), _f32(pair.b)
    d = (b.astype(np.float64) @ a.astype(np.float64)) * (pair.scaling * scale)
    return (d.T if pair.embedding or pair.fan_in_fan_out else d).astype(np.float32)


def merge_one(w: np.ndarray, pair: LoraPair, scale: float) -> np.ndarray:
    merged = w + delta(pair, scale)
    if pair.magnitude is None:
        return merged
    # DoRA: each output row (a column of a fan_in_fan_out weight) scaled to its magnitude
    rows = merged.T if pair.fan_in_fan_out else merged
    norm = np.linalg.norm(rows.astype(np.float64), axis=1)
    rows = rows * (_f32(pair.magnitude).astype(np.float64) / norm)[:, None]
    return (rows.T if pair.fan_in_fan_out else rows).astype(np.float32)


def _merged(rec: TensorRecord, steps: list[tuple[LoraPair, float]]) -> TensorRecord:
    held: dict = {}

    def read(r0: int, r1: int) -> np.ndarray:
        if "w" not in held:
            w = _f32(rec)
            for pair, scale in steps:
                w = merge_one(w, pair, scale)
            held["w"] = w.reshape(rec.n_rows, -1)
        out = held["w"][r0:r1]
        if r1 >= rec.n_rows:
            held.clear()
        return out
    return TensorRecord(rec.name, rec.shape, "F32", read, rec.source)


def merged_records(records: list[TensorRecord], loras: list[Lora]) -> list[TensorRecord]:
    """The checkpoint's records with every adapter applied, in the order given."""
    if not loras:
        return records
    by_name = {r.name: r for r in records}
    steps: dict[str, list[tuple[LoraPair, float]]] = {}
    for lora in loras:
        for name, rec in lora.adapter.replaced.items():
            name = checkpoint_name(name, by_name.__contains__)
            by_name[name] = _replacement(lora.adapter, by_name.get(name), rec)
            steps.pop(name, None)            # the trained tensor replaces earlier merges
        for target, pair in lora.adapter.pairs.items():
            target = checkpoint_name(target, by_name.__contains__)
            _check_target(lora.adapter, by_name.get(target), pair)
            steps.setdefault(target, []).append((pair, lora.scale))
    return [_merged(by_name[r.name], steps[r.name]) if r.name in steps else by_name[r.name]
            for r in records]


def _check_target(adapter: LoraAdapter, base: TensorRecord | None, pair: LoraPair) -> None:
    if base is None:
        raise InputError(f"adapter {adapter.path} changes {pair.target}, which the base "
                         f"checkpoint does not have (wrong base model?)")
    out, r = pair.b.shape
    want = (pair.a.shape[1], out) if pair.embedding or pair.fan_in_fan_out else (out, pair.a.shape[1])
    if base.shape != want:
        if pair.embedding:
            _refuse_new_tokens(adapter, pair.target, base.shape[0], want[0])
        raise InputError(f"adapter {adapter.path}: {pair.target} is {base.shape} in the base "
                         f"but the LoRA factors make {want} (wrong base model?)")
    if base.dtype not in ("F32", "F16", "BF16"):
        raise InputError(f"cannot merge a LoRA into {pair.target} of dtype {base.dtype}")


def _replacement(adapter: LoraAdapter, base: TensorRecord | None, rec: TensorRecord):
    if base is None:
        raise InputError(f"adapter {adapter.path} carries {rec.name}, which the base checkpoint "
                         f"does not have (tied embeddings, or the wrong base model?)")
    if base.shape != rec.shape:
        if base.shape[1:] == rec.shape[1:]:
            _refuse_new_tokens(adapter, rec.name, base.shape[0], rec.shape[0])
        raise InputError(f"adapter {adapter.path}: {rec.name} is {rec.shape}, the base's is "
                         f"{base.shape} (wrong base model?)")
    if rec.dtype not in ("F32", "F16", "BF16"):
        raise InputError(f"adapter {adapter.path}: {rec.name} has dtype {rec.dtype}")
    return replace(rec, name=base.name)


def _refuse_new_tokens(adapter: LoraAdapter, name: str, base_rows: int, rows: int):
    raise InputError(f"adapter {adapter.path} resizes {name} from {base_rows} to {rows} tokens "
                     f"(tokens added while fine-tuning), which is not supported: merge with PEFT "
                     f"(merge_and_unload), save it with the adapter's tokenizer, and convert that")


def check_tokenizer(loras: list[Lora], base: Path) -> None:
    """A tokenizer in the adapter folder must be the base's: the merged file carries the base's
    vocabulary, so tokens added during fine-tuning would be lost without a word."""
    from tinyconvert.formats.tokenizers.vocab import load_vocab
    for lora in loras:
        folder = lora.adapter.path
        if not any((folder / n).is_file() for n in TOKENIZER_FILES):
            continue
        try:
            theirs = load_vocab(folder).tokens
        except InputError as e:
            raise InputError(f"adapter {folder}: its tokenizer cannot be read ({e})") from None
        ours = load_vocab(base).tokens
        if list(theirs) != list(ours):
            raise InputError(f"adapter {folder} has its own tokenizer ({len(theirs)} tokens; the "
                             f"base has {len(ours)}): tokens added while fine-tuning are not "
                             f"supported: merge with PEFT (merge_and_unload), save it with the "
                             f"adapter's tokenizer, and convert that")
