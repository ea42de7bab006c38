"""How evenly a mixture-of-experts file used its experts on the verify text: people debugging a
broken MoE quant look for experts that are never chosen and experts that take far more than
their share."""
from __future__ import annotations

import torch


class ExpertCounter:
    """on_route(i, ids [T, k]) for the runtime's MoE layers: tokens routed to each expert."""

    def __init__(self, n_layer: int, n_expert: int):
        self.counts = torch.zeros(n_layer, n_expert, dtype=torch.int64)

    def __call__(self, i: int, ids: torch.Tensor) -> None:
        self.counts[i] += torch.bincount(ids.flatten(), minlength=self.counts.shape[1])

    def report(self) -> dict:
        """histogram: per layer, tokens per expert; unused: (layer, expert) pairs never chosen;
        max_share: the busiest expert's load over an even share (1.0 is perfectly even)."""
        moe = (self.counts.sum(1) > 0).nonzero().flatten().tolist()   # dense layers route none
        used = self.counts[moe]                                        # (DeepSeek's first k)
        even = used.sum(1, keepdim=True).double() / used.shape[1]
        share = (used / even).max(1) if len(used) else None
        busiest = moe[int(share.values.argmax())] if share is not None else -1
        return {"histogram": self.counts.tolist(),
                "unused": [[int(i), int(e)] for i, e in (self.counts == 0).nonzero().tolist()
                           if i in moe],
                "max_share": float(share.values.max()) if share is not None else 0.0,
                "max_share_layer": busiest}

    @staticmethod
    def summary(r: dict) -> str:
        total = sum(len(row) for row in r["histogram"] if sum(row))
        return (f"{len(r['unused'])} of {total} (layer, expert) pairs never chosen; the busiest "
                f"expert took {r['max_share']:.2f}x an even share (layer {r['max_share_layer']})")
