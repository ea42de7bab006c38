"""LoRA adapters on every registered architecture (issue 18): one tiny seeded model per HF class
(tests/support/lora_families.py) with a PEFT adapter on its attention and MLP linear layers,
factors set from a seed so the output changes visibly. The reference is transformers with PEFT's
merge_and_unload (for per-expert MoE factors, which transformers 5 cannot train, transformers on
the checkpoint merged by hand):
- hf2gguf --lora (f32) run by our runtime matches it (verify --lora, mean KLD < 1e-5);
- for a representative subset (llama.cpp's loading is the slow part), the f32 base GGUF with our
  lora2gguf adapter, run by llama.cpp, matches it too; so do stacked expert factors;
- our adapter files equal llama.cpp's convert_lora_to_gguf.py's (llama, gptneox, MoE experts),
  whose GPT-2 Conv1D factors are transposed where ours are not;
- what llama.cpp would load and ignore (DeepSeek's MLA projections) is refused in one line."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support import lora_families as lf
from tests.support.compare import kld_stats
from tests.support.families import read_gguf_contents
from tests.test_lora import TEXT, set_factors, with_adapter
from tinyconvert.archs import supported_table
from tinyconvert.pipeline.hf2gguf import hf2gguf

BY_CLASS = {f.hf_class: f for f in lf.FAMILIES}
# llama.cpp runs base + our adapter for these (every family with a transform that reaches the
# factors, and one of each other kind): the Q/K permutation (llama), NeoX rope with biases
# (qwen2), fused qkv regrouped (gptneox, falcon), Conv1D factors as they are (gpt2), fused qkv
# and gate_up kept (phi3), MoE with a shared expert (qwen2moe), a multimodal checkpoint's text
# layers under their checkpoint names (gemma3), a state-space model (mamba). llama.cpp loading
# is the slow part; every other family gave mean KLD < 2e-6 the same way when this was written,
# except Gemma 1 / Gemma 3 text-only (llama.cpp's f16 GELU table: 7e-4 and 2e-5) and DeepSeek
# (refused: see below).
LLAMACPP = ("LlamaForCausalLM", "Qwen2ForCausalLM", "GPTNeoXForCausalLM", "FalconForCausalLM",
            "GPT2LMHeadModel", "Phi3ForCausalLM", "Qwen2MoeForCausalLM",
            "Gemma3ForConditionalGeneration", "MambaForCausalLM")


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
                plain=logits_base, changed=kld_stats(ref, logits_base)["kld_mean"])


def test_merged_gguf_in_runtime_matches_peft(family):
    """hf2gguf --lora, f32, run by our runtime: verify --lora --reference-engine transformers,
    whose reference is PEFT's merge_and_unload of the saved adapter."""
    from tinyconvert.checks.verify import verify
    assert family["changed"] > 0.05, family["changed"]          # the adapter shows
    merged = family["root"] / "merged-f32.gguf"
    hf2gguf(str(family["base"]), merged, outtype="f32", quiet=True, lora=[str(family["adapter"])])
    report = verify(str(family["base"]), merged, lora=[str(family["adapter"])], tokens=64,
                    reference_engine="transformers")
    print(family["fam"].hf_class, "merged/runtime", report.stats, "effect", family["changed"])
    assert report.passed and report.stats["kld_mean"] < 1e-5, report.stats


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


@pytest.mark.parametrize("family", ["DeepseekV3ForCausalLM"], indirect=True)
def test_lora_on_weights_llamacpp_ignores_is_refused(family, tmp_path, monkeypatch):
    """llama.cpp's deepseek2 graph multiplies by its MLA projections without LoRA: lora2gguf
    refuses them in one line; written anyway, llama.cpp does not compute the adapted model,
    and the merged file (what the refusal points to) does. LoRA on o_proj works."""
    from typer.testing import CliRunner

    import tinyconvert.lora.to_gguf as to_gguf
    from tests.support.compare import llamacpp_logits
    from tests.test_lora import make_adapter, peft_reference
    from tinyconvert.cli import app
    base, adapter, out = family["base"], family["adapter"], tmp_path / "a.gguf"
    result = CliRunner().invoke(app, ["lora2gguf", str(adapter), "--base", str(base), "-o",
                                      str(out)])
    err = result.stderr.strip()
    assert result.exit_code == 2 and len(err.splitlines()) == 1, result.output
    assert "without applying LoRA" in err and "merge instead" in err and not out.exists()
    monkeypatch.setattr(to_gguf, "refuse_unapplied", lambda *a: None)
    to_gguf.lora2gguf(str(adapter), out, base=str(base), quiet=True)
    hf2gguf(str(base), tmp_path / "base.gguf", outtype="f32", quiet=True)
    ignored = kld_stats(family["ref"], with_adapter(tmp_path / "base.gguf", out, family["ids"]))
    assert ignored["kld_mean"] > 1e-3, ignored
    hf2gguf(str(base), tmp_path / "m.gguf", outtype="f32", quiet=True, lora=[str(adapter)])
    merged = kld_stats(family["ref"], llamacpp_logits(tmp_path / "m.gguf", family["ids"]))
    assert merged["kld_mean"] < 1e-5, merged
    o_proj = tmp_path / "o_proj"                 # what deepseek2 does apply: attn_output
    make_adapter(base, o_proj, seed=4, r=4, lora_alpha=16, target_modules=["o_proj"])
    to_gguf.lora2gguf(str(o_proj), tmp_path / "o.gguf", base=str(base), quiet=True)
    ref = peft_reference(base, o_proj, family["ids"])
    stats = kld_stats(ref, with_adapter(tmp_path / "base.gguf", tmp_path / "o.gguf",
                                        family["ids"]))
    assert stats["kld_mean"] < 1e-5 and kld_stats(ref, family["plain"])["kld_mean"] > 0.01, stats


@pytest.mark.parametrize("family", ["LlamaForCausalLM"], indirect=True)
def test_fan_in_fan_out_where_the_family_has_no_conv1d_is_refused(family, tmp_path):
    """fan_in_fan_out is right only where the family stores the weight transposed (GPT-2);
    with the base's weights the shapes disagree, with its config alone the family's transform
    does (tried on a probe tensor)."""
    import json
    import shutil

    from tinyconvert.formats.errors import InputError
    from tinyconvert.lora.to_gguf import lora2gguf
    bad = tmp_path / "bad"
    shutil.copytree(family["adapter"], bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, "fan_in_fan_out": True}))
    (tmp_path / "cfg").mkdir()
    shutil.copy(family["base"] / "config.json", tmp_path / "cfg" / "config.json")
    for base, match in ((family["base"], "wrong base model"),
                        (tmp_path / "cfg", "does not store this weight that way")):
        with pytest.raises(InputError, match=match):
            lora2gguf(str(bad), tmp_path / "x.gguf", base=str(base), quiet=True)
    assert not (tmp_path / "x.gguf").exists()


# llama.cpp's own LoRA converter on uniformly scaled adapters (it writes one alpha and no
# per-module scaling, so rank_pattern / alpha_pattern would differ by design): the Q/K
# permutation, a fused qkv regrouped, Conv1D
CONVERTER = ("LlamaForCausalLM", "GPTNeoXForCausalLM", "GPT2LMHeadModel")


@pytest.fixture(scope="module")
def both_converters(tmp_path_factory) -> dict:
    """hf_class -> (ours, theirs): read_gguf_contents of our lora2gguf file and of llama.cpp's
    convert_lora_to_gguf.py's, for the same adapter."""
    from tests.support.lora_converter import run_lora_converter
    from tests.test_lora import make_adapter
    from tinyconvert.lora.to_gguf import lora2gguf
    root, jobs = tmp_path_factory.mktemp("converters"), []
    for name in CONVERTER:
        fam, base, adapter = BY_CLASS[name], root / name / "base", root / name / "adapter"
        base.mkdir(parents=True)
        lf.build(base, fam)
        make_adapter(base, adapter, seed=5, r=4, lora_alpha=8, target_modules=list(fam.targets),
                     fan_in_fan_out=name == "GPT2LMHeadModel")
        lora2gguf(str(adapter), root / name / "ours.gguf", base=str(base), quiet=True)
        jobs.append((adapter, base, root / name / "theirs.gguf"))
    moe = root / "experts"                  # per-expert factors, stacked by both
    (moe / "base").mkdir(parents=True)
    lf.build(moe / "base", BY_CLASS["Qwen2MoeForCausalLM"])
    per_expert_adapter(moe / "base", moe / "adapter", down_alpha=8)
    lora2gguf(str(moe / "adapter"), moe / "ours.gguf", base=str(moe / "base"), quiet=True)
    jobs.append((moe / "adapter", moe / "base", moe / "theirs.gguf"))
    run_lora_converter(jobs)
    return {n: (root / n / "ours.gguf", root / n / "theirs.gguf") for n in (*CONVERTER, "experts")}


@pytest.mark.parametrize("name", [*CONVERTER[:2], "experts"])
def test_adapter_equals_llamacpp_converter(both_converters, name):
    """Tensor names, types and bytes, and the adapter keys, equal convert_lora_to_gguf.py's
    (experts: Qwen2-MoE's per-expert factors stacked into ffn_*_exps by both)."""
    (ta, fa), (tb, fb) = map(read_gguf_contents, both_converters[name])
    assert sorted(ta) == sorted(tb) and len(ta) > 8
    assert name != "experts" or "blk.1.ffn_down_exps.weight.lora_b" in ta
    assert [n for n in ta if ta[n] != tb[n]] == []
    assert fa == fb == {"adapter.type": "lora", "adapter.lora.alpha": 8.0}


def test_conv1d_adapter_where_llamacpp_converter_transposes(both_converters):
    """GPT-2's Conv1D factors: llama.cpp's converter transposes them as it does the weight, so
    its lora_a is our B transposed and its lora_b our A transposed; PEFT's factors are already
    in Linear layout, so that product is the transposed update (llama.cpp 0.3.36 crashes
    loading such a file). Ours computes PEFT's model in llama.cpp (LLAMACPP above)."""
    ours, theirs = map(_factors, both_converters["GPT2LMHeadModel"])
    pairs = [n.removesuffix("a") for n in ours if n.endswith(".lora_a")]
    assert sorted(ours) == sorted(theirs) and len(pairs) == 8
    for name in pairs:
        assert np.array_equal(theirs[name + "a"], ours[name + "b"].T), name
        assert np.array_equal(theirs[name + "b"], ours[name + "a"].T), name
        assert not np.array_equal(theirs[name + "a"], ours[name + "a"]), name


def _factors(path) -> dict[str, np.ndarray]:
    import gguf
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}


# --- LoRA on MoE experts: adapters trained on per-expert linear layers (transformers 4) ------

def per_expert_adapter(base, out, *, seed: int = 9, down_alpha: float = 12
                       ) -> dict[str, tuple[np.ndarray, ...]]:
    """A PEFT adapter folder on every expert's gate/up/down (names as on disk, which are the
    per-expert module names transformers 4 trained with) and on q_proj, r 4, alpha 8 with
    down_proj's alpha 12 (alpha_pattern); returns target -> (A, B, PEFT's scaling)."""
    import json

    from safetensors.numpy import load_file, save_file
    rng, tensors, made = np.random.default_rng(seed), {}, {}
    for name, w in load_file(base / "model.safetensors").items():
        if not name.endswith(("experts.0.gate_proj.weight", "proj.weight")) or (
                ".experts." not in name and ".q_proj." not in name):
            continue
        a = (0.1 * rng.standard_normal((4, w.shape[1]))).astype(np.float32)
        b = (0.03 * rng.standard_normal((w.shape[0], 4))).astype(np.float32)
        module = name.removesuffix(".weight")
        tensors[f"base_model.model.{module}.lora_A.weight"] = a
        tensors[f"base_model.model.{module}.lora_B.weight"] = b
        made[name] = (a, b, (down_alpha if ".down_proj" in name else 8) / 4)
    out.mkdir()
    save_file(tensors, out / "adapter_model.safetensors")
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 4, "lora_alpha": 8, "alpha_pattern": {"down_proj": down_alpha},
        "target_modules": ["gate_proj", "up_proj", "down_proj", "q_proj"]}))
    return made


def merged_by_hand(base, out, made) -> None:
    """The base checkpoint with W += scaling * B @ A on each target (PEFT's merge)."""
    import shutil

    from safetensors.numpy import load_file, save_file
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("*.gguf"))
    w = load_file(base / "model.safetensors")
    for name, (a, b, s) in made.items():
        w[name] = (w[name] + s * (b.astype(np.float64) @ a)).astype(np.float32)
    save_file(w, out / "model.safetensors", metadata={"format": "pt"})


@pytest.fixture(scope="module")
def moe_lora(tmp_path_factory):
    from tests.support.compare import hf_logits
    root = tmp_path_factory.mktemp("moe-lora")
    base = root / "base"
    base.mkdir()
    lf.build(base, BY_CLASS["Qwen2MoeForCausalLM"])
    made = per_expert_adapter(base, root / "adapter")
    assert sum(".experts." in n for n in made) == 2 * 4 * 3        # layers x experts x w
    merged_by_hand(base, root / "merged-hf", made)
    ids = _ids(base)
    return dict(root=root, base=base, adapter=root / "adapter", ids=ids,
                ref=hf_logits(root / "merged-hf", ids), plain=hf_logits(base, ids))


def test_expert_lora_in_llamacpp_and_merged(moe_lora):
    """lora2gguf stacks the experts' factors: llama.cpp's base + adapter computes the model
    merged by hand (transformers on it); hf2gguf --lora in our runtime does too."""
    from tinyconvert.lora.to_gguf import lora2gguf
    from tinyconvert.pipeline.sources import open_source
    from tinyconvert.runtime.model import prefill_layers
    root, ids, ref = moe_lora["root"], moe_lora["ids"], moe_lora["ref"]
    assert kld_stats(ref, moe_lora["plain"])["kld_mean"] > 0.05
    hf2gguf(str(moe_lora["base"]), root / "base.gguf", outtype="f32", quiet=True)
    lora2gguf(str(moe_lora["adapter"]), root / "adapter.gguf", base=str(moe_lora["base"]),
              quiet=True)
    stats = kld_stats(ref, with_adapter(root / "base.gguf", root / "adapter.gguf", ids))
    assert stats["kld_mean"] < 1e-5 and stats["top1"] == 1.0, stats
    hf2gguf(str(moe_lora["base"]), root / "m.gguf", outtype="f32", quiet=True,
            lora=[str(moe_lora["adapter"])])
    src = open_source(root / "m.gguf")
    stats = kld_stats(ref, prefill_layers(src.hparams, src.get, ids).double().numpy())
    assert stats["kld_mean"] < 1e-5 and stats["top1"] == 1.0, stats


def test_expert_lora_on_some_experts_is_refused(moe_lora, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    from tinyconvert.formats.errors import InputError
    from tinyconvert.lora.to_gguf import lora2gguf
    bad = tmp_path / "bad"
    shutil.copytree(moe_lora["adapter"], bad)
    w = load_file(bad / "adapter_model.safetensors")
    save_file({k: v for k, v in w.items() if ".experts.3." not in k},
              bad / "adapter_model.safetensors")
    with pytest.raises(InputError, match="not on expert 3"):
        lora2gguf(str(bad), tmp_path / "x.gguf", base=str(moe_lora["base"]), quiet=True)
    assert not (tmp_path / "x.gguf").exists()
