"""LoRA adapters (issue 18) on tiny seeded llama and qwen2 models with PEFT adapters of
non-trivial ranks and alphas (per-module rank_pattern / alpha_pattern, rsLoRA in one case,
attention-only and attention+MLP targets), factors set from a seed so that the adapter visibly
changes the output. The reference is always transformers with PEFT's own merge_and_unload:
- llama.cpp runs the f32 base GGUF with our adapter GGUF (its LoRA loading) and matches it;
- the GGUF merged while converting (hf2gguf --lora) matches it in llama.cpp and in verify;
- the same checks fail for an adapter scaled the naive way or without the Q/K permutation;
- what a GGUF adapter cannot hold (DoRA, modules_to_save) is refused by lora2gguf in one line
  and merged right by hf2gguf --lora; tokens added while fine-tuning are refused."""
from __future__ import annotations

import json
import shutil
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.compare import kld_stats, llamacpp_logits
from tests.test_tiny_models import make_tokenizer
from tinyconvert.checks.llamacpp import open_llama
from tinyconvert.cli import app
from tinyconvert.checks.verify import verify
from tinyconvert.formats.errors import InputError
from tinyconvert.lora.to_gguf import lora2gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf

TEXT = ("The quick brown fox, 1234 jumps! def f(x): return x*2  # café 東京 🙂\n"
        "I've been told they'RE here.   Spaces\tand\ttabs. Numbers: 12,345.67 and 2024-11-23.")
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
CASES = {
    # llama: the Q/K permutation applies to B; rsLoRA and per-module rank and alpha
    "llama-attn-rslora": ("llama", dict(r=8, lora_alpha=16, target_modules=ATTN,
                                        rank_pattern={"k_proj": 4}, alpha_pattern={"o_proj": 6},
                                        use_rslora=True)),
    # qwen2: no permutation (NeoX rope), attention and MLP, a rank and an alpha per module
    "qwen2-attn-mlp": ("qwen2", dict(r=4, lora_alpha=24, target_modules=ATTN + [
        "gate_proj", "up_proj", "down_proj"], rank_pattern={"down_proj": 2},
        alpha_pattern={"up_proj": 5})),
    # gpt-neox: the fused qkv's rows are regrouped by the family's own record transform, on B;
    # tanh GELU (llama.cpp's form), so that transformers is the exact reference
    "gptneox-fused-qkv": ("gptneox", dict(r=4, lora_alpha=8, target_modules=[
        "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
        alpha_pattern={"dense_4h_to_h": 3})),
}


def set_factors(model, seed: int) -> None:
    """A ~ N(0, 0.1), B ~ N(0, 0.03) (PEFT would start B at zero: no visible change)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (0.1 if "lora_A" in name else 0.03))
            elif "lora_magnitude_vector" in name:
                p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g))


def make_adapter(base, out, seed: int = 1, **lora) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(**lora))
    set_factors(peft_model, seed)
    peft_model.save_pretrained(out)


def peft_reference(base, adapter, ids, scale: float = 1.0) -> np.ndarray:
    """transformers + PEFT's merge_and_unload: what base + adapter computes."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                      adapter)
    if scale != 1.0:
        for m in model.modules():
            if hasattr(m, "scaling") and isinstance(m.scaling, dict):
                m.scaling = {k: v * scale for k, v in m.scaling.items()}
    model = model.merge_and_unload()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def ids_of(folder) -> list[int]:
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)(TEXT)["input_ids"]


def with_adapter(base_gguf, adapter_gguf, ids, scale: float = 1.0) -> np.ndarray:
    """llama.cpp's logits for the base GGUF with a GGUF adapter loaded beside it."""
    n = max(64, len(ids))
    llm = open_llama(base_gguf, n_ctx=n, n_batch=n, logits_all=True, verbose=False,
                     n_threads=2, lora_path=str(adapter_gguf), lora_scale=scale)
    llm.eval(ids)
    out = np.array(llm.scores[: len(ids)], dtype=np.float64)
    llm.close()
    return out


def build_base(folder, arch: str) -> None:
    """A tiny byte-level BPE vocabulary (a few hundred tokens) keeps every run cheap."""
    make_tokenizer(folder, {"llama": "gpt-2", "qwen2": "qwen2", "gptneox": "gpt-2"}[arch])
    if arch != "gptneox":
        tiny.build_model(folder, arch, sharpen=5.0)
        return
    import torch
    import transformers

    from tests.support import layernorm_models as lm
    cfg_name, model_name, kw = lm.BASE[arch]          # the LayerNorm families' tiny GPT-NeoX
    config = getattr(transformers, cfg_name)(**{**kw, "hidden_act": "gelu_pytorch_tanh"},
                                             vocab_size=tiny.vocab_size(folder),
                                             initializer_range=0.08, bos_token_id=1,
                                             eos_token_id=2)
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(config)
    tiny.perturb(model, sharpen=5.0, norm_names=lm.NORMS)
    model.save_pretrained(folder)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    arch, lora = CASES[request.param]          # (indirect: the same instance, not a rebuild)
    root = tmp_path_factory.mktemp(request.param)
    base, adapter = root / "base", root / "adapter"
    base.mkdir()
    build_base(base, arch)
    make_adapter(base, adapter, **lora)
    hf2gguf(str(base), root / "base-f32.gguf", outtype="f32", quiet=True)
    lora2gguf(str(adapter), root / "adapter.gguf", base=str(base), quiet=True)
    hf2gguf(str(base), root / "merged-f32.gguf", outtype="f32", quiet=True, lora=[str(adapter)])
    ids = ids_of(base)
    return dict(name=request.param, root=root, base=base, adapter=adapter, ids=ids,
                ref=peft_reference(base, adapter, ids))


def test_llamacpp_base_with_our_adapter_matches_peft(case):
    ids, ref = case["ids"], case["ref"]
    alone = kld_stats(ref, llamacpp_logits(case["root"] / "base-f32.gguf", ids))
    assert alone["kld_mean"] > 0.05, alone            # the adapter changes the output visibly
    stats = kld_stats(ref, with_adapter(case["root"] / "base-f32.gguf",
                                        case["root"] / "adapter.gguf", ids))
    print(case["name"], "base+adapter", stats, "base alone", alone)
    assert stats["kld_mean"] < 1e-5 and stats["top1"] == 1.0, stats


def test_merged_gguf_matches_peft_in_llamacpp_and_verify(case):
    merged = case["root"] / "merged-f32.gguf"
    stats = kld_stats(case["ref"], llamacpp_logits(merged, case["ids"]))
    assert stats["kld_mean"] < 1e-5 and stats["top1"] == 1.0, stats
    for engine in ("transformers", "runtime"):     # PEFT's merge; ours, on the fly
        report = verify(str(case["base"]), merged, lora=[str(case["adapter"])], tokens=64,
                        reference_engine=engine)
        assert report.passed and report.stats["kld_mean"] < 1e-5, (engine, report.stats)
    plain = verify(str(case["base"]), merged, tokens=64)     # the base alone is not the reference
    assert not plain.passed and plain.stats["kld_mean"] > 0.05, plain.stats


def naive_scaling(config, module, rank):
    """The usual hand-made mistake: lora_alpha / r for every module (no rsLoRA, no patterns)."""
    return config["lora_alpha"] / rank


def test_negative_controls_fail_the_same_checks(case, tmp_path, monkeypatch):
    """Naive scaling (every case has per-module alphas), for llama the factors without the Q/K
    permutation, for GPT-NeoX B without its fused qkv regrouping: llama.cpp's base + adapter
    and verify both see the difference."""
    import tinyconvert.lora.adapter as adapter_mod
    import tinyconvert.lora.to_gguf as to_gguf
    controls = [("scaling", adapter_mod, "_scaling", naive_scaling)]
    if case["name"].startswith("llama"):
        controls.append(("permutation", to_gguf, "permute_qk", lambda w, heads: w))
    if case["name"].startswith("gptneox"):
        controls.append(("qkv-regrouping", to_gguf, "_family_rows", lambda cfg, t, b: b))
    for what, module, attr, fake in controls:
        with monkeypatch.context() as m:
            m.setattr(module, attr, fake)
            lora2gguf(str(case["adapter"]), tmp_path / f"{what}.gguf", base=str(case["base"]),
                      quiet=True)
            if what == "scaling":
                hf2gguf(str(case["base"]), tmp_path / "merged.gguf", outtype="f32", quiet=True,
                        lora=[str(case["adapter"])])
        stats = kld_stats(case["ref"], with_adapter(case["root"] / "base-f32.gguf",
                                                    tmp_path / f"{what}.gguf", case["ids"]))
        assert stats["kld_mean"] > 1e-3, (what, stats)
    report = verify(str(case["base"]), tmp_path / "merged.gguf", lora=[str(case["adapter"])],
                    tokens=64, reference_engine="transformers")
    assert not report.passed and report.stats["kld_mean"] > 1e-3, report.stats


def test_lora_scale_in_llamacpp_and_merge(case, tmp_path):
    """--lora-scale 0.5 merges half the update; llama.cpp's own lora_scale agrees."""
    ids = case["ids"]
    ref = peft_reference(case["base"], case["adapter"], ids, scale=0.5)
    hf2gguf(str(case["base"]), tmp_path / "half.gguf", outtype="f32", quiet=True,
            lora=[str(case["adapter"])], lora_scale=[0.5])
    for got in (llamacpp_logits(tmp_path / "half.gguf", ids),
                with_adapter(case["root"] / "base-f32.gguf", case["root"] / "adapter.gguf", ids,
                             scale=0.5)):
        stats = kld_stats(ref, got)
        assert stats["kld_mean"] < 1e-5, stats
    assert kld_stats(case["ref"], ref)["kld_mean"] > 0.01          # the scale mattered


def test_merge_streams_into_a_mix(case, tmp_path):
    """hf2gguf --lora --outtype q4_k_m is the merged f32 file quantized by our quantizer (which
    matches llama-quantize byte for byte elsewhere): the merge comes before every encoding."""
    from tests.test_quantize import same_file_contents
    from tinyconvert.pipeline.quantize import quantize
    hf2gguf(str(case["base"]), tmp_path / "one-pass.gguf", outtype="q4_k_m", quiet=True,
            lora=[str(case["adapter"])])
    quantize(case["root"] / "merged-f32.gguf", tmp_path / "two-pass.gguf", qtype="q4_k_m",
             quiet=True)
    same_file_contents(tmp_path / "one-pass.gguf", tmp_path / "two-pass.gguf")


# --- what a GGUF adapter cannot hold: refused by lora2gguf, merged by hf2gguf --lora ----------

EXTRAS = {
    "dora": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                 use_dora=True),
    "modules_to_save": dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj"],
                            modules_to_save=["lm_head"]),
    "embedding": dict(r=4, lora_alpha=8, target_modules=["embed_tokens", "o_proj"]),
}


@pytest.fixture(scope="module")
def llama_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("llama-base")
    build_base(base, "llama")
    return base


@pytest.fixture(scope="module", params=sorted(EXTRAS))
def extra(request, llama_base, tmp_path_factory):
    adapter = tmp_path_factory.mktemp(request.param)
    make_adapter(llama_base, adapter, seed=3, **EXTRAS[request.param])
    if request.param == "modules_to_save":           # a trained lm_head, not PEFT's copy
        from safetensors.numpy import load_file, save_file
        w = load_file(adapter / "adapter_model.safetensors")
        w["base_model.model.lm_head.weight"] *= 1.3
        save_file(w, adapter / "adapter_model.safetensors")
    return request.param, adapter


def test_lora2gguf_refuses_what_llamacpp_cannot_apply(extra, llama_base, tmp_path):
    name, adapter = extra
    out = tmp_path / "a.gguf"
    result = CliRunner().invoke(app, ["lora2gguf", str(adapter), "--base", str(llama_base),
                                      "-o", str(out)])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "merge instead: hf2gguf MODEL --lora ADAPTER" in err
    assert not out.exists()


def test_merge_handles_what_lora2gguf_refuses(extra, llama_base, tmp_path):
    name, adapter = extra
    hf2gguf(str(llama_base), tmp_path / "m.gguf", outtype="f32", quiet=True, lora=[str(adapter)])
    ids = ids_of(llama_base)
    ref = peft_reference(llama_base, adapter, ids)
    assert kld_stats(ref, llamacpp_logits(tmp_path / "m.gguf", ids))["kld_mean"] < 1e-5
    report = verify(str(llama_base), tmp_path / "m.gguf", lora=[str(adapter)], tokens=64)
    assert report.passed and report.stats["kld_mean"] < 1e-5, report.stats


def test_added_tokens_are_refused(llama_base, tmp_path):
    """An adapter whose tokenizer or embeddings grew during fine-tuning is refused in one line."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(llama_base)
    tok.add_tokens(["<|tool_call|>"])
    model = AutoModelForCausalLM.from_pretrained(llama_base, dtype=torch.float32)
    model.resize_token_embeddings(len(tok))
    grown = tmp_path / "grown"
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"],
                                     modules_to_save=["embed_tokens", "lm_head"])).save_pretrained(grown)
    with_tok = tmp_path / "with-tokenizer"
    make_adapter(llama_base, with_tok, r=2, lora_alpha=4, target_modules=["q_proj"])
    tok.save_pretrained(with_tok)
    for adapter in (grown, with_tok):
        code, err = _cli(["hf2gguf", str(llama_base), "-o", str(tmp_path / "x.gguf"),
                          "--lora", str(adapter), "--no-verify"])
        assert code == 2 and "tokens added while fine-tuning" in err, err
        assert not (tmp_path / "x.gguf").exists()


# --- the command line ----------------------------------------------------------------------

def _cli(args):
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stderr.strip()


LLAMA_ONLY = pytest.mark.parametrize("case", ["llama-attn-rslora"], indirect=True)


@LLAMA_ONLY      # the commands once; the math above for each case
def test_cli_lora2gguf_and_merge(case, tmp_path):
    result = CliRunner().invoke(app, ["lora2gguf", str(case["adapter"]), "--base",
                                      str(case["base"]), "-o", str(tmp_path / "a.gguf"),
                                      "--outtype", "f16", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["pairs"] == 8 and info["alpha"] == 16 and info["arch"] == "llama"
    stats = kld_stats(case["ref"], with_adapter(case["root"] / "base-f32.gguf",
                                                tmp_path / "a.gguf", case["ids"]))
    assert stats["kld_mean"] < 1e-4, stats                       # f16 factors
    result = CliRunner().invoke(app, ["hf2gguf", str(case["base"]), "-o", str(tmp_path / "m.gguf"),
                                      "--outtype", "f16", "--lora", str(case["adapter"]),
                                      "--json"])
    assert result.exit_code == 0, result.output              # its own check, with the adapter
    assert json.loads(result.stdout.strip().splitlines()[-1])["verify"]["passed"]
    result = CliRunner().invoke(app, ["verify", str(case["base"]), str(tmp_path / "m.gguf"),
                                      "--lora", str(case["adapter"]), "--tokens", "32"])
    assert result.exit_code == 0 and "PASS" in result.stdout, result.output


@LLAMA_ONLY
def test_cli_bad_input_is_one_line(case, tmp_path):
    base, adapter, out = str(case["base"]), str(case["adapter"]), str(tmp_path / "o.gguf")
    bad = [
        (["lora2gguf", adapter, "--base", base, "-o", out, "--outtype", "q4_k"], "--outtype"),
        (["lora2gguf", base, "--base", base, "-o", out], "adapter_config.json"),
        (["lora2gguf", adapter, "--base", str(tmp_path), "-o", out], "config.json"),
        (["hf2gguf", base, "-o", out, "--lora", adapter, "--lora-scale", "1",
          "--lora-scale", "2"], "--lora-scale"),
        (["hf2gguf", base, "-o", out, "--lora-scale", "2"], "--lora-scale goes with --lora"),
        (["verify", str(case["root"] / "base-f32.gguf"), str(case["root"] / "merged-f32.gguf"),
          "--lora", adapter], "not a GGUF file"),
    ]
    for args, match in bad:
        code, err = _cli(args)
        assert code == 2 and len(err.splitlines()) == 1 and match in err, (args, err)
        assert not (tmp_path / "o.gguf").exists()


@LLAMA_ONLY
def test_adapter_for_another_base_is_refused(case, tmp_path):
    """Factors that do not fit the base checkpoint's shapes (the wrong base) are refused."""
    from safetensors.numpy import load_file, save_file
    bad = tmp_path / "bad"
    shutil.copytree(case["adapter"], bad)
    w = load_file(bad / "adapter_model.safetensors")
    name = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"
    w[name] = np.concatenate([w[name], w[name]])
    save_file(w, bad / "adapter_model.safetensors")
    with pytest.raises(InputError, match="wrong base model"):
        hf2gguf(str(case["base"]), tmp_path / "x.gguf", outtype="f32", quiet=True,
                lora=[str(bad)])
    with pytest.raises(InputError, match="wrong base model"):
        lora2gguf(str(bad), tmp_path / "x.gguf", base=str(case["base"]), quiet=True)
    assert not (tmp_path / "x.gguf").exists()


@LLAMA_ONLY
def test_lora2gguf_needs_only_the_base_config(case, tmp_path):
    """--base with config.json alone (no weights, no tokenizer) gives the same file."""
    (tmp_path / "cfg").mkdir()
    shutil.copy(case["base"] / "config.json", tmp_path / "cfg" / "config.json")
    lora2gguf(str(case["adapter"]), tmp_path / "a.gguf", base=str(tmp_path / "cfg"), quiet=True)
    assert (tmp_path / "a.gguf").read_bytes() == (case["root"] / "adapter.gguf").read_bytes()


@LLAMA_ONLY
def test_two_adapters_with_their_own_scales(case, tmp_path):
    """--lora twice with --lora-scale per adapter: the merged file (run by llama.cpp) matches
    transformers with both adapters merged by PEFT at those scales."""
    second = tmp_path / "second"
    make_adapter(case["base"], second, seed=5, r=2, lora_alpha=6,
                 target_modules=["v_proj", "down_proj"])
    loras, scales = [str(case["adapter"]), str(second)], [0.5, 1.5]
    hf2gguf(str(case["base"]), tmp_path / "two.gguf", outtype="f32", quiet=True, lora=loras,
            lora_scale=scales)
    report = verify(str(case["base"]), tmp_path / "two.gguf", lora=loras, lora_scale=scales,
                    tokens=64, reference_engine="transformers", engine="llama.cpp")
    assert report.passed and report.stats["kld_mean"] < 1e-5, report.stats
    one = verify(str(case["base"]), tmp_path / "two.gguf", lora=loras[:1], lora_scale=[0.5],
                 tokens=64, reference_engine="transformers")
    assert not one.passed and one.stats["kld_mean"] > 1e-3, one.stats    # the second counts
