"""gguf2hf for the families whose conversion moves tensor elements in family code (GPT-NeoX's and
Falcon's fused qkv regrouping, StableLM 2 12B's stacked head norms, GPT-2's Conv1D transposes,
DeepSeek's kv_b_proj split into k_b and v_b, gpt-oss's interleaved fused experts split and
transposed; its MXFP4 experts dequantized; the SSMs' conv1d squeeze and Mamba2's reshapes),
undone by tracing those same transforms (tinyconvert/export/traced.py): on tiny seeded
checkpoints, HF -> GGUF (f32) -> HF gives back the original tensors exactly (torch.equal, as
transformers loads both folders), and transformers on the exported folder computes what our
runtime computes on the GGUF (the export names the tanh GELU llama.cpp's graphs run). Mamba's
A = -exp(A_log) is a value transform: A_log comes back as the f32 value whose -exp is the
file's A (export/ssm.py), exact for the checkpoints here (transformers' log 1..N)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support import layernorm_models as lm
from tests.support.compare import hf_logits
from tests.support.ssm import build_ssm
from tests.test_deepseek import build_deepseek, yarn
from tests.test_gpt_oss import make as build_gpt_oss
from tests.test_gpt_oss_mxfp4 import make_mxfp4
from tinyconvert.export.gguf2hf import gguf2hf
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source
from tinyconvert.runtime.model import prefill_layers

TEXT = ("The quick brown fox, 1234 jumps! def f(x): return x*2  # café 東京 🙂\n"
        "I've been told they'RE here.   Spaces\tand\ttabs.")
# case -> (builder: tests.support.layernorm_models family or deepseek's case, config values)
CASES = {
    "gptneox": ("gptneox", {}),
    "gptneox-sequential": ("gptneox", dict(use_parallel_residual=False)),
    "stablelm-2-1.6b": ("stablelm", dict(use_qkv_bias=True)),
    "stablelm-2-12b": ("stablelm", dict(use_parallel_residual=True, qk_layernorm=True)),
    "falcon-7b": ("falcon", dict(multi_query=True)),
    "falcon-40b": ("falcon", dict(new_decoder_architecture=True, num_kv_heads=2)),
    "falcon2-11b": ("falcon", dict(new_decoder_architecture=True, num_kv_heads=2,
                                   num_ln_in_parallel_attn=1)),
    "gpt2": ("gpt2", {}),
    "deepseek-v2": ("ds:v2", {}),
    # V3's sigmoid router with groups and YaRN (mscale_all_dim from the yarn_log_multiplier key)
    "deepseek-v3-yarn": ("ds:v3", dict(rope=yarn(1.0, 1.0), max_position_embeddings=128, seed=5)),
    "gpt-oss": ("gpt-oss", {}),
    # OpenAI's MXFP4 experts: the export's dequantized experts equal transformers' own
    # dequantization of the checkpoint (MXFP4 values are exact in f32)
    "gpt-oss-mxfp4": ("gpt-oss-mxfp4", {}),
}
CASES.update({kind: ("ssm:" + kind, {}) for kind in ("mamba", "falcon_mamba", "mamba2")})
BUILDERS = {"gpt-oss": build_gpt_oss, "gpt-oss-mxfp4": make_mxfp4}


def _state(folder) -> dict:
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory, smollm2_hf):
    family, over = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    hf = folder / "hf"
    hf.mkdir()
    if family.startswith("ds:"):
        build_deepseek(hf, smollm2_hf, family[3:], **over)
    elif family.startswith("ssm:"):
        build_ssm(hf, smollm2_hf, family[4:], **over)
    elif family in BUILDERS:
        BUILDERS[family](hf, smollm2_hf, **over)
    else:
        lm.build(hf, family, smollm2_hf, **over)
    hf2gguf(str(hf), folder / "m.gguf", outtype="f32", quiet=True)
    res = gguf2hf(folder / "m.gguf", folder / "out", quiet=True)
    return request.param, hf, folder / "m.gguf", res


def test_round_trip_returns_the_original_tensors_and_computes_the_gguf(exported):
    import torch
    from transformers import AutoTokenizer
    name, hf, gguf_path, res = exported
    a, b = _state(hf), _state(res.path)
    assert sorted(a) == sorted(b), name
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, (name, differ[:5])
    ids = AutoTokenizer.from_pretrained(res.path)(TEXT)["input_ids"]
    assert len(ids) > 30
    src = open_source(gguf_path)
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    theirs = hf_logits(res.path, ids)
    assert np.abs(ours - theirs).max() < 1e-3 * max(1.0, np.abs(ours).max()), name


def test_a_log_gives_back_the_files_a_and_is_exact_where_exp_is_steep():
    """Over trained-looking A_log values: -exp of the recovered A_log is always the file's A bit
    for bit; where |A_log| >= 1 (one f32 A per f32 A_log) it is the original value."""
    from tinyconvert.export.ssm import a_log_from_a, neg_exp_f32
    x = np.random.default_rng(0).uniform(-4.0, 4.0, 20000).astype(np.float32)
    a = neg_exp_f32(x)
    y = a_log_from_a(a)
    assert np.array_equal(neg_exp_f32(y), a)
    steep = np.abs(x) >= 1.0
    assert np.array_equal(y[steep], x[steep])
    assert np.mean(y[~steep] == x[~steep]) > 0.05       # a nearest value, not always the original


def test_traces_read_in_small_blocks_give_the_same_export(tmp_path, smollm2_hf, monkeypatch):
    """Row blocks of a few dozen elements (a big model's blocks split its expert stacks the
    same way): gpt-oss's transposed, interleaved experts still come back exactly."""
    import torch
    from tinyconvert.export import traced
    monkeypatch.setattr(traced, "CHUNK", 40)
    hf = tmp_path / "hf"
    hf.mkdir()
    build_gpt_oss(hf, smollm2_hf)
    hf2gguf(str(hf), tmp_path / "m.gguf", outtype="f32", quiet=True)
    res = gguf2hf(tmp_path / "m.gguf", tmp_path / "out", quiet=True)
    a, b = _state(hf), _state(res.path)
    assert sorted(a) == sorted(b)
    assert not [k for k in a if not torch.equal(a[k], b[k])]


def test_quantized_falcon_exports_the_weights_the_runtime_runs(tmp_path, smollm2_hf):
    """A q8_0 Falcon-40B-style file (its fused qkv quantized in the regrouped order): the f32
    export, through the traced regrouping, computes the runtime's logits on the q8_0 file, and
    its weights are the dequantized ones, not the original checkpoint's."""
    hf = tmp_path / "hf"
    hf.mkdir()
    family, over = CASES["falcon-40b"]
    lm.build(hf, family, smollm2_hf, **over)
    hf2gguf(str(hf), tmp_path / "q.gguf", outtype="q8_0", quiet=True)
    res = gguf2hf(tmp_path / "q.gguf", tmp_path / "out", dtype="f32", quiet=True)
    from transformers import AutoTokenizer
    ids = AutoTokenizer.from_pretrained(res.path)(TEXT)["input_ids"]
    src = open_source(tmp_path / "q.gguf")
    ours = prefill_layers(src.hparams, src.get, ids).double().numpy()
    theirs = hf_logits(res.path, ids)
    assert np.abs(ours - theirs).max() < 2e-3 * max(1.0, np.abs(ours).max())
    a, b = _state(hf), _state(res.path)
    qkv = "transformer.h.0.self_attention.query_key_value.weight"
    assert a[qkv].shape == b[qkv].shape and 0 < (a[qkv] - b[qkv]).abs().max() < 0.05
