"""Accuracy of a candidate model's logits against a reference's, on the same tokens: KL divergence
(mean, p99, max), top-1 agreement, perplexity of each, largest logit difference."""
from __future__ import annotations

import torch


def token_stats(ref: torch.Tensor, cand: torch.Tensor, ids: list[int]) -> dict:
    """ref, cand: [T, n_vocab] logits for the T positions of ids. Per-token KLD of the candidate
    from the reference, in float64; NLL of each next token (positions 0..T-2)."""
    lp = ref.double().log_softmax(-1)
    lq = cand.double().log_softmax(-1)
    kld = (lp.exp() * (lp - lq)).sum(-1)                           # [T]
    nxt = torch.tensor(ids[1:])
    nll_ref = -lp[:-1].gather(1, nxt[:, None]).squeeze(1)          # [T-1]
    nll_cand = -lq[:-1].gather(1, nxt[:, None]).squeeze(1)
    return {"kld": kld, "top1": (ref.argmax(-1) == cand.argmax(-1)).double(),
            "nll_ref": nll_ref, "nll_cand": nll_cand,
            "max_abs": float((ref.double() - cand.double()).abs().max())}


def summarize(parts: list[dict]) -> dict:
    kld = torch.cat([p["kld"] for p in parts])
    top1 = torch.cat([p["top1"] for p in parts])
    nll_ref = torch.cat([p["nll_ref"] for p in parts])
    nll_cand = torch.cat([p["nll_cand"] for p in parts])
    return {"kld_mean": float(kld.mean()), "kld_p99": float(torch.quantile(kld, 0.99)),
            "kld_max": float(kld.max()), "top1": float(top1.mean()),
            "ppl_reference": float(nll_ref.mean().exp()) if len(nll_ref) else float("nan"),
            "ppl_candidate": float(nll_cand.mean().exp()) if len(nll_cand) else float("nan"),
            "max_abs_logit_diff": max(p["max_abs"] for p in parts), "tokens": int(len(kld)),
            "kld_values": kld}


def relative_error(ref: torch.Tensor, cand: torch.Tensor) -> float:
    """||cand - ref|| / ||ref|| over a whole hidden state."""
    return float((cand.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30))
