"""verify: run a reference (HF checkpoint or GGUF) and a candidate GGUF on the same tokens and
report how far the candidate's predictions drift: KL divergence, top-1 agreement, perplexity,
largest logit difference, per-layer hidden-state error, and whether the vocabularies agree."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from tinyconvert.checks.experts import ExpertCounter
from tinyconvert.checks.limits import FLOOR, RELATIVE_MARGIN, default_limit
from tinyconvert.checks.requant import requantized
from tinyconvert.checks.reference import ENGINES, transformers_logits
from tinyconvert.formats.errors import InputError
from tinyconvert.runtime import metrics
from tinyconvert.runtime.model import block, embed, output_logits, rope_tables
from tinyconvert.pipeline.sources import ModelSource, gguf_source, open_source
from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
from tinyconvert.checks.tokenizers.vocab_check import default_text, vocab_mismatches  # noqa: F401 (API)

@dataclass
class VerifyReport:
    stats: dict
    layers: list[float]                     # relative hidden-state error after each layer
    vocab_mismatches: list[str]
    max_kld: float
    engine: str
    reference_engine: str = "runtime"
    limit_why: str = "--max-kld"
    activation_note: str | None = None       # how llama.cpp's own number would differ
    judged: str = "kld_mean"                 # the statistic held against max_kld
    kld_values: torch.Tensor = field(repr=False, default=None)
    sparse: dict | None = None              # PowerInfer files: predictor quality and its cost
    experts: dict | None = None             # MoE files: how evenly the experts were chosen
    chat: list = field(default_factory=list)  # checks/tokenizers/chat.py findings (HF references)

    @property
    def passed(self) -> bool:
        return (self.stats[self.judged] <= self.max_kld and not self.vocab_mismatches
                and not any(f.fails for f in self.chat))

    def as_json(self) -> dict:
        return {**self.stats, "check": "model", "max_kld": self.max_kld, "passed": self.passed,
                "engine": self.engine, "reference_engine": self.reference_engine,
                "limit_why": self.limit_why, "judged": self.judged,
                "layer_rel_error": self.layers,
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
    lr, (lc,), (layers,) = lockstep_many(ref, [cand], ids, [observe], [on_route])
    return lr, lc, layers


def lockstep_many(ref: ModelSource, cands: list[ModelSource], ids: list[int], observe=None,
                  on_route=None):
    """The reference and every candidate, one layer at a time (one layer's weights of each in
    memory): the reference runs once however many candidates there are. observe, on_route: one
    per candidate. -> (reference logits, [candidate logits], [per-layer errors per candidate])"""
    observe, on_route = observe or [None] * len(cands), on_route or [None] * len(cands)
    hr, hcs = embed(ref.hparams, ref.get, ids), [embed(c.hparams, c.get, ids) for c in cands]
    rr = rope_tables(ref.hparams, ref.get, 0, len(ids))
    rcs = [rope_tables(c.hparams, c.get, 0, len(ids)) for c in cands]
    layers = [[] for _ in cands]
    for i in range(ref.hparams.n_layer):
        hr = block(ref.hparams, ref.get, i, hr, *rr[i])
        for k, c in enumerate(cands):
            hcs[k] = block(c.hparams, c.get, i, hcs[k], *rcs[k][i], observe=observe[k],
                           on_route=on_route[k])
            layers[k].append(metrics.relative_error(hr, hcs[k]))
    return (output_logits(ref.hparams, ref.get, hr),
            [output_logits(c.hparams, c.get, h) for c, h in zip(cands, hcs)], layers)


def _forward(model: ModelSource, ids: list[int]) -> torch.Tensor:
    """One model's logits, alone."""
    h = embed(model.hparams, model.get, ids)
    ropes = rope_tables(model.hparams, model.get, 0, len(ids))
    for i in range(model.hparams.n_layer):
        h = block(model.hparams, model.get, i, h, *ropes[i])
    return output_logits(model.hparams, model.get, h)


def _runtime_pair(ref: ModelSource, cand: ModelSource, ids: list[int], hf_logits, observe,
                  on_route):
    """(reference logits, candidate logits from our runtime, per-layer errors): in lockstep, or
    with transformers computing the reference (then no per-layer comparison)."""
    if hf_logits is None:
        return _lockstep(ref, cand, ids, observe, on_route)
    h = embed(cand.hparams, cand.get, ids)
    ropes = rope_tables(cand.hparams, cand.get, 0, len(ids))
    for i in range(cand.hparams.n_layer):
        h = block(cand.hparams, cand.get, i, h, *ropes[i], observe=observe, on_route=on_route)
    return hf_logits(ids), output_logits(cand.hparams, cand.get, h), []


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


def verify(reference: str, candidate: Path, *, text: str | None = None, tokens: int = 512,
           max_kld: float | None = None, engine: str = "runtime",
           reference_engine: str = "runtime", chunk: int = 512, lora=(),
           lora_scale=()) -> VerifyReport:
    """lora: PEFT adapters applied to an HF reference (merged on the fly; with transformers
    as the reference engine, by PEFT itself), each scaled by lora_scale.
    engine: what computes the candidate (our runtime, or llama.cpp through llama-cpp-python;
    then our runtime's number is reported beside it). reference_engine: what computes an HF
    reference (our runtime through the converter's table, streamed; or transformers)."""
    if engine not in ("runtime", "llama.cpp"):
        raise InputError(f"unknown --engine {engine!r}; valid: runtime, llama.cpp")
    if reference_engine not in ENGINES:
        raise InputError(f"unknown --reference-engine {reference_engine!r}; valid: "
                         f"{', '.join(ENGINES)}")
    from tinyconvert.lora.merge import open_loras
    loras = open_loras(lora, lora_scale)
    ref, cand = open_source(reference, loras), gguf_source(Path(candidate))
    _check_compatible(ref, cand)
    hf_logits = None
    if reference_engine == "transformers":
        if ref.kind != "hf":
            raise InputError("--reference-engine transformers needs a Hugging Face checkpoint "
                             "as the reference (this one is a GGUF file)")
        if loras:
            from tinyconvert.lora.reference import peft_logits
            hf_logits = peft_logits(ref.path, loras)
        else:
            hf_logits = transformers_logits(ref.path)
    text = default_text() if text is None else text
    all_ids = tokenizer_for(ref).encode(text)
    ids = all_ids[:tokens]
    if len(ids) < 2:
        raise InputError("the evaluation text gives fewer than 2 tokens")
    parts, layer_sums, skip_parts = [], [], []
    counter = SparseCounter() if cand.hparams.sparse_threshold is not None else None
    routes = (ExpertCounter(cand.hparams.n_layer, cand.hparams.n_expert)
              if cand.hparams.n_expert and engine == "runtime" else None)
    runtime_parts = []          # engine llama.cpp: our runtime's number for the same candidate
    for c0 in range(0, len(ids), chunk):
        part = ids[c0:c0 + chunk]
        if len(part) < 2:
            break
        own = engine == "runtime"
        lr, lc, layers = _runtime_pair(ref, cand, part, hf_logits, counter if own else None,
                                       routes if own else None)
        if own:
            layer_sums.append(layers)
            if counter is not None:         # the same file run densely: what skipping alone costs
                dense = replace(cand, hparams=replace(cand.hparams, sparse_threshold=None))
                ld, _, _ = _lockstep(dense, dense, part)
                skip_parts.append(metrics.token_stats(ld, lc, part))
        else:
            runtime_parts.append(metrics.token_stats(lr, lc, part))
            lc = _llamacpp_logits(cand.path, part)
        parts.append(metrics.token_stats(lr, lc, part))
    sparse = None
    if counter is not None and skip_parts:
        skip = metrics.summarize(skip_parts)
        sparse = {**counter.report(), "threshold": cand.hparams.sparse_threshold,
                  "kld_mean_from_skipping": skip["kld_mean"], "kld_max_from_skipping": skip["kld_max"]}
    return build_report(ref, cand, ids, all_ids, text, chunk, parts, layer_sums,
                        max_kld=max_kld, engine=engine, reference_engine=reference_engine,
                        runtime_parts=runtime_parts, sparse=sparse, routes=routes)


def build_report(ref: ModelSource, cand: ModelSource, ids: list[int], all_ids: list[int],
                 text: str, chunk: int, parts: list[dict], layer_sums: list, *,
                 max_kld: float | None = None, engine: str = "runtime",
                 reference_engine: str = "runtime", runtime_parts=(), sparse=None, routes=None,
                 ref_logits: list | None = None) -> VerifyReport:
    """The statistics of one candidate's token stats (parts, one per chunk), its limit and
    verdict. ref_logits: the reference's logits per chunk, when kept (verify_ladder), so that
    judging against the requantized reference does not run the reference again."""
    stats = metrics.summarize(parts)
    kld_values = stats.pop("kld_values")
    if runtime_parts:
        stats["kld_mean_runtime"] = metrics.summarize(runtime_parts)["kld_mean"]
    layers = [sum(col) / len(col) for col in zip(*layer_sums)] if any(layer_sums) else []
    lim = default_limit(cand.fields, cand.path, engine=engine)
    limit, why, judged = (max_kld, "--max-kld", "kld_mean") if max_kld is not None else \
        _judge(ref, cand, ids, chunk, stats, lim, ref_logits)
    chat = []
    if ref.kind == "hf":
        from tinyconvert.checks.tokenizers.chat import check_against_hf
        chat = check_against_hf(ref.path, cand.fields)
    return VerifyReport(stats, layers, vocab_mismatches(ref, cand, text, all_ids), limit, engine,
                        reference_engine, why, lim.activation_note, judged, kld_values, sparse,
                        routes.report() if routes is not None else None, chat)


def _judge(ref: ModelSource, cand: ModelSource, ids: list[int], chunk: int, stats: dict,
           lim, ref_logits: list | None = None) -> tuple[float, str, str]:
    """(limit, why, statistic judged). A drift within what the type usually costs passes; above
    it, the file is held against the reference quantized at its own tensor types, which a file
    exactly as llama-quantize makes it matches and a broken file exceeds by far."""
    if stats["kld_mean"] <= lim.value or not lim.relative:
        return lim.value, lim.why, "kld_mean"
    yard = requantized(ref, cand)
    if yard is None:
        return lim.value, lim.why, "kld_mean"
    # against our own reading of the checkpoint, never transformers: the yardstick measures what
    # the types (and llama.cpp's computation) cost, so a fault in our tables cannot hide in it
    starts = [c0 for c0 in range(0, len(ids), chunk) if len(ids[c0:c0 + chunk]) >= 2]
    if ref_logits is not None:
        parts = [metrics.token_stats(lr, _forward(yard, ids[c0:c0 + chunk]), ids[c0:c0 + chunk])
                 for lr, c0 in zip(ref_logits, starts)]
    else:
        parts = [metrics.token_stats(*_lockstep(ref, yard, ids[c0:c0 + chunk])[:2],
                                     ids[c0:c0 + chunk]) for c0 in starts]
    cost = metrics.summarize(parts)["kld_mean"]
    stats["kld_mean_requantized_reference"] = cost
    return (RELATIVE_MARGIN * cost + FLOOR,
            f"{RELATIVE_MARGIN:g} x {cost:.4g}, what this file's types cost the reference itself",
            "kld_mean_runtime" if "kld_mean_runtime" in stats else "kld_mean")


def _check_compatible(ref: ModelSource, cand: ModelSource) -> None:
    a, b = ref.hparams, cand.hparams
    for key in ("n_layer", "n_embd", "n_head", "n_kv_head", "head_dim"):
        if getattr(a, key) != getattr(b, key):
            raise InputError(f"reference and candidate are different models: {key} "
                             f"{getattr(a, key)} vs {getattr(b, key)}")
    if not math.isfinite(a.rms_eps):
        raise InputError("reference has a non-finite rms epsilon")
