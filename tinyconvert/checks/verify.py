"""verify: run a reference (HF checkpoint or GGUF) and a candidate GGUF on the same tokens and
report how far the candidate's predictions drift: KL divergence, top-1 agreement, perplexity,
largest logit difference, per-layer hidden-state error, and whether the vocabularies agree."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import torch

from tinyconvert.checks.experts import ExpertCounter
from tinyconvert.formats.errors import InputError
from tinyconvert.runtime import metrics
from tinyconvert.runtime.model import block, embed, output_logits, rope_tables
from tinyconvert.pipeline.sources import ModelSource, gguf_source, open_source
from tinyconvert.checks.tokenizer import gguf_tokenizer, tokenizer_for

# Default --max-kld by the candidate's general.file_type (llama.cpp's LlamaFileType numbers):
# tight for float files, looser as bits go down. Small models drift 2-3x more than 8B ones.
MAX_KLD_BY_FILE_TYPE = {0: 1e-4, 1: 2e-3, 32: 2e-3, 7: 0.02, 18: 0.05, 17: 0.08, 16: 0.1,
                        9: 0.12, 8: 0.12, 15: 0.15, 14: 0.2, 3: 0.25, 2: 0.3, 13: 0.35,
                        12: 0.4, 11: 0.6, 10: 1.0}
DEFAULT_MAX_KLD = 1.0
# T-MAC files (their file type ids mean other types upstream): by bits per weight
MAX_KLD_BY_TMAC_BITS = {4: 0.5, 3: 1.0, 2: 4.0, 1: 6.0}


@dataclass
class VerifyReport:
    stats: dict
    layers: list[float]                     # relative hidden-state error after each layer
    vocab_mismatches: list[str]
    max_kld: float
    engine: str
    kld_values: torch.Tensor = field(repr=False, default=None)
    sparse: dict | None = None              # PowerInfer files: predictor quality and its cost
    experts: dict | None = None             # MoE files: how evenly the experts were chosen
    chat: list = field(default_factory=list)  # checks/chat.py findings (HF references)

    @property
    def passed(self) -> bool:
        return (self.stats["kld_mean"] <= self.max_kld and not self.vocab_mismatches
                and not any(f.fails for f in self.chat))

    def as_json(self) -> dict:
        return {**self.stats, "max_kld": self.max_kld, "passed": self.passed,
                "engine": self.engine, "layer_rel_error": self.layers,
                "vocab_mismatches": self.vocab_mismatches, "sparse": self.sparse,
                "experts": self.experts, "chat": [f.as_json() for f in self.chat]}

    def problems(self) -> list[str]:
        """One line per failed check other than the KL divergence."""
        return self.vocab_mismatches + [f"chat {f.check}: {f.message}" for f in self.chat
                                        if f.fails]

    def summary_line(self) -> str:
        s = self.stats
        return (f"verify: {'PASS' if self.passed else 'FAIL'} kld_mean={s['kld_mean']:.3g} "
                f"(max {self.max_kld:g}) p99={s['kld_p99']:.3g} top1={s['top1']:.2%} "
                f"ppl {s['ppl_reference']:.3f} -> {s['ppl_candidate']:.3f} on {s['tokens']} tokens")


def default_text() -> str:
    return resources.files("tinyconvert").joinpath("data/eval.txt").read_text(encoding="utf-8")


class SparseCounter:
    """Predicted (keep) against truly active (z != 0) FFN neurons, over all layers and tokens."""

    def __init__(self):
        self.tp = self.kept = self.active = self.total = 0

    def __call__(self, i, keep, active):
        self.tp += int((keep & active).sum())
        self.kept += int(keep.sum())
        self.active += int(active.sum())
        self.total += keep.numel()

    def report(self) -> dict:
        return {"recall": self.tp / max(1, self.active), "precision": self.tp / max(1, self.kept),
                "fraction_computed": self.kept / max(1, self.total),
                "fraction_active": self.active / max(1, self.total)}


def _lockstep(ref: ModelSource, cand: ModelSource, ids: list[int], observe=None, on_route=None):
    """Both models, one layer at a time (two layers' weights in memory at most)."""
    hr, hc = (embed(m.hparams, m.get, ids) for m in (ref, cand))
    rr = rope_tables(ref.hparams, ref.get, 0, len(ids))
    rc = rope_tables(cand.hparams, cand.get, 0, len(ids))
    layers = []
    for i in range(ref.hparams.n_layer):
        hr = block(ref.hparams, ref.get, i, hr, *rr[i])
        hc = block(cand.hparams, cand.get, i, hc, *rc[i], observe=observe, on_route=on_route)
        layers.append(metrics.relative_error(hr, hc))
    return output_logits(ref.hparams, ref.get, hr), output_logits(cand.hparams, cand.get, hc), layers


def _llamacpp_logits(path: Path, ids: list[int]) -> torch.Tensor:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise InputError("--engine llama.cpp needs llama-cpp-python (pip install "
                         "llama-cpp-python)") from None
    import numpy as np
    from tinyconvert.checks.llamacpp import open_llama
    llm = open_llama(path, n_ctx=max(64, len(ids)), n_batch=max(64, len(ids)), logits_all=True,
                verbose=False)
    llm.eval(ids)
    out = torch.from_numpy(np.array(llm.scores[: len(ids)], dtype=np.float32))
    llm.close()
    return out


def vocab_mismatches(ref: ModelSource, cand: ModelSource, text: str, ref_ids: list[int]) -> list[str]:
    """Does the candidate file's own vocabulary tokenize the text like the reference tokenizer?"""
    try:
        cand_ids = gguf_tokenizer(cand.fields).encode(text)
    except InputError:
        # not a vocabulary we can rebuild a tokenizer from (SentencePiece): compare its arrays
        return _vocab_arrays_differ(ref, cand)
    if cand_ids == ref_ids:
        return []
    first = next((i for i, (a, b) in enumerate(zip(ref_ids, cand_ids)) if a != b),
                 min(len(ref_ids), len(cand_ids)))
    return [f"candidate vocabulary tokenizes the text differently from token {first} on "
            f"({len(cand_ids)} vs {len(ref_ids)} tokens)"]


def _vocab_arrays_differ(ref: ModelSource, cand: ModelSource) -> list[str]:
    from tinyconvert.formats.vocab import load_vocab
    if ref.kind == "gguf":
        want = {k: v for k, v in ref.fields.items() if k.startswith("tokenizer.ggml.")}
    else:
        v = load_vocab(ref.path, ref.hparams.n_vocab or None)
        want = {"tokenizer.ggml.model": v.model, "tokenizer.ggml.pre": v.pre,
                "tokenizer.ggml.tokens": v.tokens, "tokenizer.ggml.token_type": v.token_types}
    keys = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type")
    return [f"{k} differs from the reference's" for k in keys
            if k in want and not _same(cand.fields.get(k), want[k])]


def _same(a, b) -> bool:
    import numpy as np
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def verify(reference: str, candidate: Path, *, text: str | None = None, tokens: int = 512,
           max_kld: float | None = None, engine: str = "runtime", chunk: int = 512) -> VerifyReport:
    if engine not in ("runtime", "llama.cpp"):
        raise InputError(f"unknown --engine {engine!r}; valid: runtime, llama.cpp")
    ref, cand = open_source(reference), gguf_source(Path(candidate))
    _check_compatible(ref, cand)
    text = default_text() if text is None else text
    all_ids = tokenizer_for(ref).encode(text)
    ids = all_ids[:tokens]
    if len(ids) < 2:
        raise InputError("the evaluation text gives fewer than 2 tokens")
    parts, layer_sums, skip_parts = [], [], []
    counter = SparseCounter() if cand.hparams.sparse_threshold is not None else None
    routes = (ExpertCounter(cand.hparams.n_layer, cand.hparams.n_expert)
              if cand.hparams.n_expert and engine == "runtime" else None)
    for c0 in range(0, len(ids), chunk):
        part = ids[c0:c0 + chunk]
        if len(part) < 2:
            break
        if engine == "runtime":
            lr, lc, layers = _lockstep(ref, cand, part, counter, routes)
            layer_sums.append(layers)
            if counter is not None:         # the same file run densely: what skipping alone costs
                dense = replace(cand, hparams=replace(cand.hparams, sparse_threshold=None))
                ld, _, _ = _lockstep(dense, dense, part)
                skip_parts.append(metrics.token_stats(ld, lc, part))
        else:
            lr, _, _ = _lockstep(ref, ref, part)
            lc = _llamacpp_logits(cand.path, part)
        parts.append(metrics.token_stats(lr, lc, part))
    stats = metrics.summarize(parts)
    kld_values = stats.pop("kld_values")
    layers = [sum(col) / len(col) for col in zip(*layer_sums)] if layer_sums else []
    limit = max_kld if max_kld is not None else _default_limit(cand.fields)
    sparse = None
    if counter is not None and skip_parts:
        skip = metrics.summarize(skip_parts)
        sparse = {**counter.report(), "threshold": cand.hparams.sparse_threshold,
                  "kld_mean_from_skipping": skip["kld_mean"], "kld_max_from_skipping": skip["kld_max"]}
    chat = []
    if ref.kind == "hf":
        from tinyconvert.checks.chat import check_against_hf
        chat = check_against_hf(ref.path, cand.fields)
    return VerifyReport(stats, layers, vocab_mismatches(ref, cand, text, all_ids), limit, engine,
                        kld_values, sparse, routes.report() if routes is not None else None, chat)


def _default_limit(fields: dict) -> float:
    from tinyconvert.quant.tmac_types import BITS_KEY
    if BITS_KEY in fields:
        return MAX_KLD_BY_TMAC_BITS.get(fields[BITS_KEY], DEFAULT_MAX_KLD)
    return MAX_KLD_BY_FILE_TYPE.get(fields.get("general.file_type"), DEFAULT_MAX_KLD)


def _check_compatible(ref: ModelSource, cand: ModelSource) -> None:
    a, b = ref.hparams, cand.hparams
    for key in ("n_layer", "n_embd", "n_head", "n_kv_head", "head_dim"):
        if getattr(a, key) != getattr(b, key):
            raise InputError(f"reference and candidate are different models: {key} "
                             f"{getattr(a, key)} vs {getattr(b, key)}")
    if not math.isfinite(a.rms_eps):
        raise InputError("reference has a non-finite rms epsilon")
