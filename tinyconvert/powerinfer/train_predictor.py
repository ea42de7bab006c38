"""train-predictor: fit PowerInfer's per-layer low-rank predictors from the model's own
activations (PowerInfer never released its training code).

Per layer: inputs are the residual entering the FFN (pre-norm, as PowerInfer's runtime feeds its
predictor), labels are the neurons whose ReLU activation is not zero. The predictor
fc2(relu(fc1(x))) is fitted with a binary cross-entropy weighted towards recall (a missed active
neuron changes the output; a wrongly computed one only costs time). One threshold for the whole
file (PowerInfer has one) is then chosen so that every layer reaches the target recall on the
training tokens; recall and precision are reported on held-out tokens."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tinyconvert.formats.errors import InputError
from tinyconvert.formats.predictor import Predictor, save_predictors


@dataclass(frozen=True)
class LayerReport:
    layer: int
    rank: int
    recall: float
    precision: float
    computed: float          # fraction of neurons the predictor lets through
    active: float            # fraction of neurons that are really active


def _collect(src, ids: list[int], chunk: int):
    """Per layer: (X [N, n_embd] float32, Y [N, n_ff] bool) over all chunks of ids."""
    import torch
    xs: dict[int, list] = {}
    ys: dict[int, list] = {}
    hp = replace(src.hparams, sparse_threshold=None)
    from tinyconvert.runtime.model import ffn_inputs
    for c0 in range(0, len(ids), chunk):
        for i, h, active in ffn_inputs(hp, src.get, ids[c0:c0 + chunk]):
            xs.setdefault(i, []).append(h.float())
            ys.setdefault(i, []).append(active)
    return {i: (torch.cat(xs[i]), torch.cat(ys[i])) for i in xs}


def _fit(x, y, rank: int, epochs: int, lr: float, seed: int):
    import torch
    torch.manual_seed(seed)
    fc1 = torch.nn.Linear(x.shape[1], rank, bias=False)
    fc2 = torch.nn.Linear(rank, y.shape[1], bias=False)
    params = list(fc1.parameters()) + list(fc2.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    pos = y.float().mean().clamp(1e-4, 1 - 1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=((1 - pos) / pos).clamp(1, 20))
    scale = float(x.norm(dim=1).mean())                     # inputs scaled for the optimiser;
    xs = x / scale                                          # relu(fc1 x / s) = relu((fc1 / s) x)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(1024):
            opt.zero_grad()
            loss = loss_fn(fc2(torch.relu(fc1(xs[idx]))), y[idx].float())
            loss.backward()
            opt.step()
    with torch.no_grad():                                   # fold the input scale into fc1
        return fc1.weight / scale, fc2.weight.clone()


def _scores(p: Predictor, x):
    import torch
    return torch.relu(x @ torch.from_numpy(p.fc1).T) @ torch.from_numpy(p.fc2).T


def train_predictors(model: str, text: str, *, rank: int, out: Path, epochs: int = 60,
                     lr: float = 3e-3, held_out: float = 0.2, target_recall: float = 0.98,
                     chunk: int = 256, seed: int = 0):
    from tinyconvert.pipeline.sources import open_source
    from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
    src = open_source(model)
    if src.hparams.act not in ("relu", "drelu"):
        raise InputError(f"{model}: the FFN activation is {src.hparams.act}; predictors need a "
                         f"ReLU model (its inactive neurons are exactly zero)")
    if rank < 1:
        raise InputError("--rank must be at least 1")
    ids = tokenizer_for(src).encode(text)
    n_test = max(16, int(len(ids) * held_out))
    if len(ids) - n_test < 64:
        raise InputError(f"the calibration text gives only {len(ids)} tokens; give at least a "
                         f"few hundred")
    train, test = _collect(src, ids[:-n_test], chunk), _collect(src, ids[-n_test:], chunk)
    preds = []
    for i in sorted(train):
        fc1, fc2 = _fit(*train[i], rank, epochs, lr, seed + i)
        preds.append(Predictor(fc1.detach().numpy().astype(np.float32),
                               fc2.detach().numpy().astype(np.float32)))
    threshold = _threshold(preds, train, target_recall)
    save_predictors(Path(out), preds)
    (Path(out) / "config.json").write_text(f'{{"sparse_threshold": {threshold!r}}}\n')
    return threshold, [_report(i, p, *test[i], threshold) for i, p in enumerate(preds)]


def _threshold(preds, data, target: float) -> float:
    """The largest single threshold at which every layer keeps `target` of its active neurons."""
    import torch
    per_layer = []
    for i, p in enumerate(preds):
        x, y = data[i]
        s = _scores(p, x)[y]
        per_layer.append(float(torch.quantile(s, 1 - target)) if s.numel() else 0.0)
    return float(min(per_layer))


def _report(i: int, p: Predictor, x, y, threshold: float) -> LayerReport:
    keep = _scores(p, x) >= threshold
    tp = float((keep & y).sum())
    return LayerReport(i, p.rank, tp / max(1.0, float(y.sum())),
                       tp / max(1.0, float(keep.sum())), float(keep.float().mean()),
                       float(y.float().mean()))
