"""PowerInfer predictor folders: one low-rank MLP per layer, as published (`model_{i}.pt`,
torch state dicts loaded with weights_only=True) or as safetensors (`model_{i}.safetensors`):
fc1.weight (rank, n_embd) and fc2.weight (n_ff, rank), float32, no biases; ranks may differ per
layer. An optional config.json may hold "sparse_threshold"."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyconvert.formats.errors import InputError


@dataclass(frozen=True)
class Predictor:
    fc1: np.ndarray        # (rank, n_embd) float32
    fc2: np.ndarray        # (n_ff, rank) float32

    @property
    def rank(self) -> int:
        return self.fc1.shape[0]

    @property
    def n_embd(self) -> int:
        return self.fc1.shape[1]

    @property
    def n_ff(self) -> int:
        return self.fc2.shape[0]

    def load(self) -> Predictor:      # in memory already (as PredictorFile.load() reads it)
        return self


def _load_one(folder: Path, i: int) -> dict[str, np.ndarray]:
    st, pt = folder / f"model_{i}.safetensors", folder / f"model_{i}.pt"
    if st.is_file():
        from safetensors.numpy import load_file
        try:
            return load_file(st)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise InputError(f"{st}: not a readable safetensors file ({e})") from None
    if pt.is_file():
        import pickle

        import torch
        try:
            state = torch.load(pt, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
            raise InputError(f"{pt}: cannot load as a safe PyTorch checkpoint "
                             f"({str(e).strip().splitlines()[0] if str(e).strip() else e})") \
                from None
        if not isinstance(state, dict):
            raise InputError(f"{pt}: expected a state dict")
        return {k: v.float().numpy() for k, v in state.items() if hasattr(v, "numpy")}
    raise InputError(f"{folder}: no predictor for layer {i} (model_{i}.pt or "
                     f"model_{i}.safetensors)")


@dataclass(frozen=True)
class PredictorFile:
    """Layer i's predictor as found on disk (checked once, then let go): its shapes for the
    plan, and load() to read it again when its rows are written, one layer at a time."""
    folder: Path
    layer: int
    rank: int
    n_embd: int
    n_ff: int

    def load(self) -> Predictor:
        return _checked(self.folder, self.layer, self.n_embd, self.n_ff)


def _checked(folder: Path, i: int, n_embd: int, n_ff: int) -> Predictor:
    state = _load_one(folder, i)
    if set(state) != {"fc1.weight", "fc2.weight"}:
        raise InputError(f"layer {i} predictor: expected fc1.weight and fc2.weight, got "
                         f"{sorted(state)}")
    fc1 = np.ascontiguousarray(state["fc1.weight"], dtype=np.float32)
    fc2 = np.ascontiguousarray(state["fc2.weight"], dtype=np.float32)
    if fc1.ndim != 2 or fc1.shape[1] != n_embd:
        raise InputError(f"layer {i} predictor: fc1.weight shape {fc1.shape}, expected "
                         f"(rank, n_embd={n_embd})")
    if fc2.ndim != 2 or fc2.shape != (n_ff, fc1.shape[0]):
        raise InputError(f"layer {i} predictor: fc2.weight shape {fc2.shape}, expected "
                         f"(n_ff={n_ff}, rank={fc1.shape[0]})")
    return Predictor(fc1, fc2)


def scan_predictors(folder: Path, n_layer: int, n_embd: int, n_ff: int) -> list[PredictorFile]:
    """Every layer's predictor checked (one in memory at a time) before anything is written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such predictor folder")
    extra = folder / f"model_{n_layer}.pt"
    if extra.exists() or (folder / f"model_{n_layer}.safetensors").exists():
        raise InputError(f"{folder}: has a predictor for layer {n_layer}, but the model has only "
                         f"{n_layer} layers")
    return [PredictorFile(folder, i, _checked(folder, i, n_embd, n_ff).rank, n_embd, n_ff)
            for i in range(n_layer)]


def load_predictors(folder: Path, n_layer: int, n_embd: int, n_ff: int) -> list[Predictor]:
    return [p.load() for p in scan_predictors(folder, n_layer, n_embd, n_ff)]


def predictor_threshold(folder: Path) -> float | None:
    cfg = Path(folder) / "config.json"
    if not cfg.is_file():
        return None
    try:
        value = json.loads(cfg.read_text(encoding="utf-8")).get("sparse_threshold")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{cfg}: not valid JSON ({e})") from None
    return None if value is None else float(value)


def save_predictors(folder: Path, predictors: list[Predictor]) -> None:
    """The published layout: model_{i}.pt with float32 fc1.weight and fc2.weight."""
    import torch
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(predictors):
        torch.save({"fc1.weight": torch.from_numpy(p.fc1.copy()),
                    "fc2.weight": torch.from_numpy(p.fc2.copy())}, folder / f"model_{i}.pt")
