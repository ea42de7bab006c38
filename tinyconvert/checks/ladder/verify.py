"""verify for a quant ladder: every candidate against one reference in ONE pass. The reference is
computed once per chunk of tokens (not once per candidate), every candidate once, layer by layer
in lockstep (one layer's weights of each model in memory). Each candidate then gets the same
report, limit and verdict as `verify REFERENCE CANDIDATE` gives it (checks/verify.py)."""
from __future__ import annotations

from pathlib import Path

from tinyconvert.checks.experts import ExpertCounter
from tinyconvert.checks.ladder.weights import lean_sources
from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
from tinyconvert.checks.verify import (VerifyReport, _check_compatible, build_report,
                                       default_text, lockstep_many)
from tinyconvert.formats.errors import InputError
from tinyconvert.pipeline.sources import gguf_source, open_source
from tinyconvert.runtime import metrics


def verify_ladder(reference: str, candidates: list[Path], *, text: str | None = None,
                  tokens: int = 512, chunk: int = 512) -> list[VerifyReport]:
    ref = open_source(reference)
    cands = lean_sources([gguf_source(Path(c)) for c in candidates])   # memory flat in N
    for c in cands:
        _check_compatible(ref, c)
    text = default_text() if text is None else text
    all_ids = tokenizer_for(ref).encode(text)
    ids = all_ids[:tokens]
    if len(ids) < 2:
        raise InputError("the evaluation text gives fewer than 2 tokens")
    routes = [ExpertCounter(c.hparams.n_layer, c.hparams.n_expert) if c.hparams.n_expert
              else None for c in cands]
    parts = [[] for _ in cands]
    layer_sums = [[] for _ in cands]
    ref_logits = []         # kept for judging against the requantized reference (no rerun)
    for c0 in range(0, len(ids), chunk):
        part = ids[c0:c0 + chunk]
        if len(part) < 2:
            break
        lr, lcs, layers = lockstep_many(ref, cands, part, on_route=routes)
        ref_logits.append(lr)
        for k, lc in enumerate(lcs):
            parts[k].append(metrics.token_stats(lr, lc, part))
            layer_sums[k].append(layers[k])
    return [build_report(ref, c, ids, all_ids, text, chunk, parts[k], layer_sums[k],
                         routes=routes[k], ref_logits=ref_logits)
            for k, c in enumerate(cands)]
