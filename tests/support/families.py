"""Checks every architecture's tests share: our hf2gguf output against llama.cpp's converter
(tensor bytes and keys), and our quantize against llama-quantize for a mix."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from tests.support.compare import llamacpp_quantize
from tests.support.llamacpp_src import run_converter

MIXES = ["q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"]


def read_gguf_contents(path: Path) -> tuple[dict, dict]:
    """(name -> (type, bytes)) and the keys that are not general.* or GGUF.*."""
    r = gguf.GGUFReader(path)
    tensors = {t.name: (int(t.tensor_type), np.asarray(t.data).tobytes()) for t in r.tensors}
    fields = {k: f.contents() for k, f in r.fields.items()
              if not k.startswith(("general.", "GGUF."))}
    return tensors, fields


def converted_like_llamacpp(folder: Path, tmp: Path, outtype: str, *,
                            raw_config: bool = False) -> tuple[dict, dict]:
    """Converts with both; asserts the same tensor names and bytes; returns both key dicts for
    the caller to compare, with `add_bos_token` dropped where llama.cpp's converter leaves it
    out (ours always says, so llama.cpp's default for the vocabulary kind never decides).
    raw_config: llama.cpp's converter reads config.json as written (llamacpp_src)."""
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    hf2gguf(str(folder), tmp / "ours.gguf", outtype=outtype, quiet=True)
    run_converter(folder, tmp / "theirs.gguf", outtype, raw_config=raw_config)
    (ta, fa), (tb, fb) = read_gguf_contents(tmp / "ours.gguf"), read_gguf_contents(tmp / "theirs.gguf")
    assert sorted(ta) == sorted(tb)
    different = [n for n in ta if ta[n] != tb[n]]
    assert different == [], f"{len(different)} tensors differ, first {different[:3]}"
    if "tokenizer.ggml.add_bos_token" not in fb:
        fa.pop("tokenizer.ggml.add_bos_token", None)
    from tinyconvert.checks.weights_check import check_weights, float_only
    from tinyconvert.formats.gguf_model import open_gguf
    with open_gguf(tmp / "ours.gguf") as f:
        floats = float_only(f)
    if floats:      # the check a float conversion ends with passes it (llama.cpp's file
        # can fail it rightly: its converter leaves out gemma3's sliding_window_pattern)
        report = check_weights(str(folder), tmp / "ours.gguf")
        assert report.passed, report.problems()
    return fa, fb


def quantized_like_llamacpp(f32: Path, tmp: Path, mix: str) -> None:
    from tests.test_quantize import same_file_contents
    from tinyconvert.pipeline.recipes.mixes import RECIPES
    from tinyconvert.pipeline.quantize import quantize
    llamacpp_quantize(f32, tmp / "theirs.gguf", RECIPES[mix][0])
    quantize(f32, tmp / "ours.gguf", qtype=mix, quiet=True)
    same_file_contents(tmp / "ours.gguf", tmp / "theirs.gguf")


def refused(folder: Path, match: str) -> None:
    """hf2gguf refuses the checkpoint with a one-line InputError matching `match`, and leaves
    no output behind."""
    import pytest

    from tinyconvert.formats.errors import InputError
    from tinyconvert.pipeline.hf2gguf import hf2gguf
    with pytest.raises(InputError, match=match):
        hf2gguf(str(folder), folder / "x.gguf", quiet=True)
    assert not (folder / "x.gguf").exists()


def greedy_like_transformers(folder: Path, gguf_path: Path, prompt: str = "The quick brown fox",
                             n: int = 10) -> None:
    """`run` on the GGUF alone (its own tokenizer, the KV cache) gives transformers' greedy
    tokens for the HF checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tinyconvert.checks.generate import generate
    ids = AutoTokenizer.from_pretrained(folder)(prompt, return_tensors="pt")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    want = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, ids.shape[1]:].tolist()
    got = generate(str(gguf_path), prompt, max_tokens=n)
    assert got == want[:len(got)] and len(got) >= n // 2, (got, want)


def route_margin(src, ids: list[int], monkeypatch) -> float:
    """The smallest gap, over tokens and MoE layers, between the k-th and (k+1)-th score experts
    are chosen by (the router logit where the choice is on logits) and, with expert groups,
    between the last kept and the first dropped group: above ~1e-3, float rounding cannot change
    which experts run."""
    from tinyconvert.runtime import moe
    from tinyconvert.runtime.model import prefill_layers
    gaps, original = [], moe.selection

    def spy(hp, logits, bias=None):
        probs, choice = original(hp, logits, bias)
        plain = hp.expert_gating == "softmax" and bias is None and hp.n_expert_groups <= 1
        top = (logits if plain else choice).sort(-1, descending=True).values   # same order
        gaps.append(float((top[:, hp.n_expert_used - 1] - top[:, hp.n_expert_used]).min()))
        if hp.n_expert_groups > 1:
            biased = probs if bias is None else probs + bias
            g = biased.view(len(biased), hp.n_expert_groups, -1).topk(2, -1).values.sum(-1)
            g = g.sort(-1, descending=True).values
            gaps.append(float((g[:, hp.n_group_used - 1] - g[:, hp.n_group_used]).min()))
        return probs, choice
    monkeypatch.setattr(moe, "selection", spy)
    prefill_layers(src.hparams, src.get, ids)
    monkeypatch.setattr(moe, "selection", original)
    return min(gaps)


def top1_agrees_where_clear(ref: np.ndarray, theirs: np.ndarray) -> None:
    """Top-1 agrees wherever the reference's next token is not a near tie (top two logits more
    than 0.02 apart), and such positions are most of the text."""
    top2 = np.sort(ref, -1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.02
    assert (ref.argmax(-1) == theirs.argmax(-1))[clear].all() and clear.mean() > 0.9


def verified_with_transformers_reference(folder: Path, f32: Path, *, max_kld: float = 1e-5) -> dict:
    """`verify --reference-engine transformers` on an f32 file: the HF model as transformers
    computes it (not through our architecture table) against the file as our runtime runs it."""
    from tinyconvert.checks.verify import verify
    report = verify(str(folder), f32, reference_engine="transformers", tokens=96)
    assert report.reference_engine == "transformers" and report.layers == []
    assert report.stats["kld_mean"] < max_kld and report.passed, report.stats
    return report.stats
