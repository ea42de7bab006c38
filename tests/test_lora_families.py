"""LoRA adapters on every registered architecture (issue 18): one tiny seeded model per HF class
(tests/support/lora_families.py) with a PEFT adapter on its attention and MLP linear layers,
factors set from a seed so the output changes visibly. The reference is transformers with PEFT's
merge_and_unload:
- hf2gguf --lora (f32) run by our runtime matches it (mean KLD < 1e-5);
- for a representative subset (llama.cpp's loading is the slow part), the f32 base GGUF with our
  lora2gguf adapter, run by llama.cpp, matches it too."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support import lora_families as lf
from tests.support.compare import kld_stats
from tests.test_lora import TEXT, set_factors, with_adapter
from tinyconvert.archs import supported_table
from tinyconvert.pipeline.hf2gguf import hf2gguf

BY_CLASS = {f.hf_class: f for f in lf.FAMILIES}
# llama.cpp runs base + our adapter for these: the Q/K permutation (llama), NeoX rope with
# biases (qwen2), a fused qkv regrouped (gptneox), Conv1D factors (gpt2), MLA (deepseek2), MoE
# with shared experts (qwen2moe), and a state-space model (mamba)
LLAMACPP = ("LlamaForCausalLM", "Qwen2ForCausalLM", "GPTNeoXForCausalLM")


def test_every_registered_class_has_a_case():
    registered = {name for name, _ in supported_table()}
    assert registered == set(BY_CLASS) | set(lf.NO_TRANSFORMERS_CLASS)
    assert set(lf.NO_TRANSFORMERS_CLASS.values()) <= set(BY_CLASS)


def _targets(fam: lf.Family):
    if fam.kind == "gemma3-mm":        # the text model's layers, not the vision tower's
        return rf".*language_model.*\.({'|'.join(fam.targets)})"
    return list(fam.targets)


def _peft(folder, adapter_dir, fam: lf.Family, ids: list[int]):
    """Saves a seeded adapter; returns (base logits, PEFT-merged logits) from transformers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        base = model(torch.tensor([ids])).logits[0].double().numpy()
    lora = LoraConfig(r=4, lora_alpha=fam.alpha, target_modules=_targets(fam),
                      rank_pattern={fam.targets[0]: 2}, alpha_pattern={fam.targets[-1]: 5},
                      fan_in_fan_out=fam.hf_class == "GPT2LMHeadModel")
    peft_model = get_peft_model(model, lora)
    set_factors(peft_model, seed=11)
    peft_model.save_pretrained(adapter_dir)
    merged = peft_model.merge_and_unload()
    with torch.no_grad():
        ref = merged(torch.tensor([ids])).logits[0].double().numpy()
    return base, ref


def _ids(folder) -> list[int]:
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)(TEXT)["input_ids"]


@pytest.fixture(scope="module", params=sorted(BY_CLASS))
def family(request, tmp_path_factory):
    fam = BY_CLASS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    base, adapter = root / "base", root / "adapter"
    base.mkdir()
    lf.build(base, fam)
    ids = _ids(base)
    logits_base, ref = _peft(base, adapter, fam, ids)
    return dict(fam=fam, root=root, base=base, adapter=adapter, ids=ids, ref=ref,
                changed=kld_stats(ref, logits_base)["kld_mean"])


def test_merged_gguf_in_runtime_matches_peft(family):
    """hf2gguf --lora, f32, run by our runtime (verify's candidate path)."""
    from tinyconvert.pipeline.sources import open_source
    from tinyconvert.runtime.model import prefill_layers
    assert family["changed"] > 0.05, family["changed"]          # the adapter shows
    merged = family["root"] / "merged-f32.gguf"
    hf2gguf(str(family["base"]), merged, outtype="f32", quiet=True, lora=[str(family["adapter"])])
    src = open_source(merged)
    ours = prefill_layers(src.hparams, src.get, family["ids"]).double().numpy()
    stats = kld_stats(family["ref"], ours)
    print(family["fam"].hf_class, "merged/runtime", stats, "adapter effect", family["changed"])
    assert stats["kld_mean"] < 1e-5 and stats["top1"] == 1.0, stats


@pytest.mark.parametrize("family", LLAMACPP, indirect=True)
def test_llamacpp_base_with_our_adapter_matches_peft(family):
    from tinyconvert.lora.to_gguf import lora2gguf
    root = family["root"]
    hf2gguf(str(family["base"]), root / "base-f32.gguf", outtype="f32", quiet=True)
    lora2gguf(str(family["adapter"]), root / "adapter.gguf", base=str(family["base"]), quiet=True)
    got = with_adapter(root / "base-f32.gguf", root / "adapter.gguf", family["ids"])
    stats = kld_stats(family["ref"], got)
    print(family["fam"].hf_class, "llama.cpp base+adapter", stats)
    assert stats["kld_mean"] < 1e-5 and stats["top1"] == 1.0, stats
    assert np.isfinite(got).all()
