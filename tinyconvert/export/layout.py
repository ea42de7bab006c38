"""Which GGUF tensors make each tensor of the HF class, and how: hf2gguf's naming and transforms
run backwards through the same tables (tinyconvert.archs NameMapper: names, Q/K permutation,
norm offsets; tinyconvert.pipeline.experts: expert stacks and fused gate_up).

The HF side is the class's own state dict, built by transformers on the meta device (names and
shapes, no memory), so the export has exactly the tensors transformers loads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyconvert.archs.base import NameMapper
from tinyconvert.export.ssm import a_log_from_a, a_log_names
from tinyconvert.export.traced import Traced, trace
from tinyconvert.formats.errors import InputError
from tinyconvert.pipeline.experts import FUSED, PER_EXPERT


@dataclass(frozen=True)
class ExportTensor:
    name: str                          # HF state-dict name
    shape: tuple[int, ...]
    sources: tuple[str, ...]           # GGUF tensors it is made from
    build: Callable[[Callable[[str], np.ndarray]], np.ndarray]   # build(load) -> float32 array
    made: Callable[[dict], tuple[int, ...]]   # made(GGUF shapes) -> the shape build() gives


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of tinyconvert.archs.base.permute_qk: rows [h, hd/2, 2] back to [h, 2, hd/2]."""
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def hf_state_shapes(folder) -> dict[str, tuple[int, ...]]:
    """The state dict (name -> shape) of the class folder/config.json names, built on the meta
    device."""
    import torch
    import transformers
    cfg = transformers.AutoConfig.from_pretrained(folder)
    cls = getattr(transformers, cfg.architectures[0])
    with torch.device("meta"):
        model = cls(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _direct(name: str, shape, gname: str, heads: int | None, shift: float) -> ExportTensor:
    def build(load):
        w = load(gname)
        if heads is not None:
            w = unpermute_qk(w, heads)
        if shift:
            w = w - np.float32(shift)       # hf2gguf added it in f32 (exact for bf16 sources)
        return w
    return ExportTensor(name, shape, (gname,), build, lambda shapes: shapes[gname])


def _expert(name: str, shape, gname: str, e: int) -> ExportTensor:
    return ExportTensor(name, shape, (gname,), lambda load: load(gname)[e],
                        lambda shapes: shapes[gname][1:] if shapes[gname][0] > e else ())


def _gate_up(name: str, shape, gate: str, up: str) -> ExportTensor:
    # transformers' fused [E, 2*ff, n_embd], gate rows first (pipeline/experts.py _split_fused)
    return ExportTensor(name, shape, (gate, up),
                        lambda load: np.concatenate([load(gate), load(up)], axis=1),
                        lambda s: (s[gate][0], s[gate][1] + s[up][1], *s[gate][2:])
                        if s[gate][::2] == s[up][::2] else ())


def _one(mapper: NameMapper, cfg, name: str, shape) -> ExportTensor:
    if m := PER_EXPERT.match(name):
        return _expert(name, shape, mapper.gguf_name(f"{m['pre']}.{m['w']}.{m['kind']}"),
                       int(m["e"]))
    if (m := FUSED.match(name)) and len(shape) == 3:
        if m["w"] == "gate_up_proj":
            return _gate_up(name, shape, mapper.gguf_name(f"{m['pre']}.gate_proj.weight"),
                            mapper.gguf_name(f"{m['pre']}.up_proj.weight"))
        return _direct(name, shape, mapper.gguf_name(f"{m['pre']}.down_proj.weight"), None, 0.0)
    gname = mapper.gguf_name(name)
    heads = mapper.permute_heads(name, cfg.n_head, cfg.n_kv_head)
    return _direct(name, shape, gname, heads, mapper.shift(gname))


def _traced(mapper: NameMapper, cfg, t: Traced) -> ExportTensor:
    """An HF tensor the family's own transforms moved (export/traced.py), gathered back from
    the GGUF tensors its parts became, each through the plain inverse first."""
    direct = {p.name: _one(mapper, cfg, p.name, p.shape) for p in t.parts}
    sources = tuple(g for d in direct.values() for g in d.sources)

    def made(shapes):
        ok = all(int(np.prod(d.made(shapes))) == int(np.prod(p.shape))
                 for p, d in zip(t.parts, direct.values()))
        return t.shape if ok else ()
    return ExportTensor(t.name, t.shape, sources,
                        lambda load: t.gather(lambda p: direct[p.name].build(load)), made)


def _a_log(mapper: NameMapper, name: str, shape) -> ExportTensor:
    """Mamba's A_log from the file's A = -exp(A_log) (export/ssm.py); flat order is kept."""
    gname = mapper.gguf_name(name)
    return ExportTensor(name, shape, (gname,),
                        lambda load: a_log_from_a(load(gname)).reshape(shape),
                        lambda s: shape if int(np.prod(s[gname])) == int(np.prod(shape)) else ())


def export_plan(cfg, hf_shapes: dict[str, tuple[int, ...]],
                gguf_shapes: dict[str, tuple[int, ...]]) -> list[ExportTensor]:
    """cfg: the exported config as hf2gguf reads it (tinyconvert.archs.config.ModelConfig)."""
    mapper = NameMapper(cfg.arch, cfg.n_layer, cfg.hf_class)
    wanted = {n: s for n, s in hf_shapes.items() if not mapper.skipped(n) and not (
        n.endswith("lm_head.weight") and (cfg.tied or cfg.arch.drop_output))}
    a_logs = a_log_names(cfg.arch.arch_name, wanted)
    moved = trace(cfg, {n: s for n, s in wanted.items() if n not in a_logs})[1] \
        if cfg.arch.records is not None else {}
    plan, used = [], set()
    for name, shape in wanted.items():
        t = (_a_log(mapper, name, shape) if name in a_logs else
             _traced(mapper, cfg, moved[name]) if name in moved else _one(mapper, cfg, name, shape))
        for g in t.sources:
            if g not in gguf_shapes:
                raise InputError(f"{cfg.hf_class} needs {name!r}, made from GGUF tensor {g!r}, "
                                 f"which the file does not have")
        if (made := tuple(t.made(gguf_shapes))) != tuple(shape):
            raise InputError(f"{cfg.hf_class}'s {name!r} has shape {tuple(shape)}, the GGUF's "
                             f"{', '.join(t.sources)} give {made}")
        used.update(t.sources)
        plan.append(t)
    left = [g for g in gguf_shapes if g not in used]
    if left:
        raise InputError(f"GGUF tensor {left[0]!r} has no place in a {cfg.hf_class} checkpoint "
                         f"(gguf2hf would drop it)")
    return plan
