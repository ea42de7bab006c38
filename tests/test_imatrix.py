"""tinyconvert imatrix: the runtime's accumulation against llama.cpp's own (llama-imatrix's
collect_imatrix reproduced through llama-cpp-python's eval callback, on the activations
llama.cpp computes), dense and MoE; the GGUF file read back by gguf-py; .dat; merging; the
statistics; the CLI and its refusals.

Tolerance, measured on these tiny f32 models (3 chunks of 64 tokens; llama, Qwen2-MoE and
DeepSeek-V2 with latent attention): entry names and token counts (per expert) are identical; sums agree to a relative L2 error of at most 2.4e-4 per entry,
the largest on attn_output / ffn_down and everything after the first attention, because llama.cpp
keeps its KV cache in f16 by default (llama-imatrix does too); entries before any attention
(blk.0.attn_q/k/v) agree to 3e-7 (float32 summation). The bars below are 1e-3 and 1e-6."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.compare import llamacpp_tokenize
from tests.support.imatrix_ref import llamacpp_chunks, llamacpp_imatrix
from tests.test_deepseek import MLA
from tests.test_tiny_models import make_tokenizer
from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
from tinyconvert.cli import app
from tinyconvert.imatrix import files
from tinyconvert.imatrix.compute import compute_imatrix, make_chunks
from tinyconvert.imatrix.merge import merge
from tinyconvert.imatrix.stats import statistics
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.sources import open_source

CHUNK, N_CHUNKS = 64, 3
# inputs computed before any attention ran (so before llama.cpp's f16 KV cache touches them)
BEFORE_ATTENTION = tuple(f"blk.0.{t}.weight" for t in (
    "attn_q", "attn_k", "attn_v", "attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_k_b"))
TEXT = " ".join(tiny.CORPUS[:30])
MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
           shared_expert_intermediate_size=96)
DEEPSEEK = dict(MLA, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
                routed_scaling_factor=1.0, norm_topk_prob=False)
MODELS = {"llama": ("llama", {}), "qwen2moe": ("qwen2moe", MOE),
          "deepseek_v2": ("deepseek_v2", DEEPSEEK)}     # MLA: llama.cpp's absorbed k_b / v_b


@pytest.fixture(scope="module", params=list(MODELS))
def model(request, tmp_path_factory):
    arch, kw = MODELS[request.param]
    d = tmp_path_factory.mktemp(f"imat-{request.param}")
    make_tokenizer(d, "spm")
    tiny.build_model(d, arch, **kw)
    hf2gguf(str(d), d / "f32.gguf", outtype="f32", quiet=True)
    return d


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    d = tmp_path_factory.mktemp("imat-llama")
    make_tokenizer(d, "spm")
    tiny.build_model(d, "llama")
    hf2gguf(str(d), d / "f32.gguf", outtype="f32", quiet=True)
    (d / "calib.txt").write_text(TEXT, encoding="utf-8")
    return d


def test_matches_llamacpp_accumulation(model):
    ours = compute_imatrix(str(model / "f32.gguf"), TEXT, chunk_size=CHUNK, chunks=N_CHUNKS,
                           process_output=True)
    ids = llamacpp_tokenize(model / "f32.gguf", TEXT, special=False)
    assert tokenizer_for(open_source(model / "f32.gguf")).encode(TEXT) == ids   # same tokens
    chunks = llamacpp_chunks(model / "f32.gguf", TEXT, CHUNK, N_CHUNKS)
    assert chunks == make_chunks(ids, 1, CHUNK, N_CHUNKS).ids     # BOS (id 1) in front of each
    ref = llamacpp_imatrix(model / "f32.gguf", chunks, process_output=True)
    assert sorted(ours.entries) == sorted(ref.sums) and "output.weight" in ref.sums
    for name, want in ref.sums.items():
        e = ours.entries[name]
        assert e.counts.tolist() == ref.counts[name].tolist(), name
        rel = np.linalg.norm(e.sums - want) / np.linalg.norm(want)
        before_attention = name.startswith(BEFORE_ATTENTION)
        assert rel < (1e-6 if before_attention else 1e-3), (name, rel)
    assert ours.chunk_count == N_CHUNKS and ours.chunk_size == CHUNK
    if "deepseek" in str(model):        # heads side by side, one count (a dense 3-D matmul)
        assert ours.entries["blk.1.attn_k_b.weight"].sums.shape == (1, 4 * 16)
    if "qwen2moe" in str(model):        # experts kept apart, some seeing more tokens than others
        counts = ours.entries["blk.0.ffn_down_exps.weight"].counts
        assert counts.shape == (4,) and counts.sum() == 2 * CHUNK * N_CHUNKS
        assert len(set(counts.tolist())) > 1


def test_hf_checkpoint_gives_the_gguf_numbers(llama):
    a = compute_imatrix(str(llama), TEXT, chunk_size=CHUNK, chunks=2)
    b = compute_imatrix(str(llama / "f32.gguf"), TEXT, chunk_size=CHUNK, chunks=2)
    assert sorted(a.entries) == sorted(b.entries)
    for n in a.entries:
        np.testing.assert_allclose(a.entries[n].sums, b.entries[n].sums, rtol=1e-6)


def test_gguf_file_as_gguf_py_reads_it(llama, tmp_path):
    import gguf
    im = compute_imatrix(str(llama / "f32.gguf"), TEXT, chunk_size=CHUNK, chunks=2,
                         dataset="calib.txt")
    files.write(im, tmp_path / "im.gguf")
    r = gguf.GGUFReader(tmp_path / "im.gguf")
    kv = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert kv == {"general.type": "imatrix", "imatrix.datasets": ["calib.txt"],
                  "imatrix.chunk_count": 2, "imatrix.chunk_size": CHUNK}
    names = [t.name for t in r.tensors]
    assert names == [f"{n}{s}" for n in sorted(im.entries) for s in (".in_sum2", ".counts")]
    t = {t.name: t for t in r.tensors}
    e = im.entries["blk.1.ffn_down.weight"]
    assert t["blk.1.ffn_down.weight.in_sum2"].shape.tolist() == [160]    # ggml drops ne1 = 1
    np.testing.assert_array_equal(t["blk.1.ffn_down.weight.in_sum2"].data.reshape(-1),
                                  e.sums.reshape(-1))
    assert t["blk.1.ffn_down.weight.counts"].data.tolist() == [2.0 * CHUNK]
    back = files.read(tmp_path / "im.gguf")
    assert back.has_metadata and not back.is_legacy
    for n in im.entries:      # what llama-quantize would hand to the quantizers: sum / count
        want = (e := im.entries[n]).sums.reshape(-1) / np.float32(e.counts[0])
        np.testing.assert_array_equal(back.normalized(n), want)


def test_dat_file_normalizes_like_the_gguf(llama, tmp_path):
    im = compute_imatrix(str(llama / "f32.gguf"), TEXT, chunk_size=CHUNK, chunks=2)
    files.write(im, tmp_path / "im.dat", "dat")
    dat = files.read(tmp_path / "im.dat")
    assert dat.is_legacy and dat.chunk_count == 2 and sorted(dat.entries) == sorted(im.entries)
    for n in im.entries:
        assert dat.entries[n].counts.tolist() == [2]        # ncall = ceil(128 / 64)
        np.testing.assert_allclose(dat.normalized(n), im.normalized(n), rtol=1e-6)


def test_merge_equals_one_run_on_all_chunks(llama, tmp_path):
    kw = dict(chunk_size=CHUNK, chunks=2)
    first = compute_imatrix(str(llama / "f32.gguf"), TEXT, **kw)
    second = compute_imatrix(str(llama / "f32.gguf"), TEXT, from_chunk=2, **kw)
    whole = compute_imatrix(str(llama / "f32.gguf"), TEXT, chunk_size=CHUNK, chunks=4)
    files.write(first, tmp_path / "a.gguf")
    files.write(second, tmp_path / "b.dat", "dat")         # a legacy file merges too
    m = merge([tmp_path / "a.gguf", tmp_path / "b.dat"], chunk_size=CHUNK)
    assert m.chunk_count == 4
    for n, e in whole.entries.items():
        assert m.entries[n].counts.tolist() == e.counts.tolist()
        np.testing.assert_allclose(m.entries[n].sums, e.sums, rtol=1e-5)


def test_statistics_on_known_matrices():
    flat = np.ones((1, 200), dtype=np.float32)
    peaked = flat.copy()
    peaked[0, 7] = 1e6
    im = files.Imatrix({"blk.0.attn_q.weight": files.Entry(flat * 3, np.array([3])),
                        "blk.1.attn_q.weight": files.Entry(peaked, np.array([1])),
                        "blk.1.ffn_up_exps.weight": files.Entry(np.ones((2, 4)), np.array([0, 2]))})
    st = {s.name: s for s in statistics(im)}
    a, b, c = st["blk.0.attn_q.weight"], st["blk.1.attn_q.weight"], st["blk.1.ffn_up_exps.weight"]
    assert a.energy == pytest.approx(200) and a.top10 == pytest.approx(0.1)
    assert a.entropy_norm == pytest.approx(100) and a.cossim is None
    assert b.top1 > 0.99 and b.entropy_norm < 10 and b.zd == pytest.approx(1 / 200)
    assert b.cossim == pytest.approx((1e6 + 199) / np.sqrt((1e12 + 199) * 200))
    assert c.n == 4 and c.energy == pytest.approx(2)        # the expert that saw no token: out


def test_cli_compute_report_merge(llama, tmp_path):
    r = CliRunner().invoke(app, ["imatrix", str(llama / "f32.gguf"), "--text",
                                 str(llama / "calib.txt"), "-o", str(tmp_path / "a.gguf"),
                                 "--chunk-size", "64", "--chunks", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["entries"] == 14 and out["chunk_count"] == 2 and len(out["tensors"]) == 14
    assert {t["kind"] for t in out["tensors"]} >= {"attn_q", "ffn_down"}
    r = CliRunner().invoke(app, ["imatrix", str(tmp_path / "a.gguf"), "--show-statistics",
                                 "--plot", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    assert "ffn_down" in r.output and "top10%" in r.output
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(app, ["imatrix", "--merge", str(tmp_path / "a.gguf"),
                                 str(tmp_path / "a.gguf"), "-o", str(tmp_path / "m.gguf")])
    assert r.exit_code == 0, r.output
    m, a = files.read(tmp_path / "m.gguf"), files.read(tmp_path / "a.gguf")
    assert m.entries["blk.0.ffn_up.weight"].counts.tolist() == [4 * CHUNK]
    np.testing.assert_array_equal(m.normalized("blk.0.ffn_up.weight"),
                                  a.normalized("blk.0.ffn_up.weight"))


BAD = [
    (["--text", "{d}/calib.txt", "-o", "{t}/o.gguf"], "nothing to do"),
    (["{d}/f32.gguf", "--text", "{t}/none.txt", "-o", "{t}/o.gguf"], "no such text file"),
    (["{d}/f32.gguf", "--text", "{d}/calib.txt", "-o", "{t}/o.gguf", "--chunk-size", "8"],
     "too small"),
    (["{d}/f32.gguf", "--text", "{d}/calib.txt", "-o", "{t}/o.gguf", "--chunk-size", "4096"],
     "needs at least 8192"),
    (["{d}/f32.gguf", "--text", "{d}/calib.txt", "-o", "{t}/o.gguf", "--format", "csv"],
     "unknown --format"),
    (["{d}/f32.gguf", "--text", "{d}/calib.txt"], "-o OUT"),
    (["--merge", "{d}/f32.gguf", "-o", "{t}/o.gguf"], "not an importance matrix"),
    (["--merge", "{t}/short.dat", "-o", "{t}/o.gguf"], "truncated"),
    (["{d}/f32.gguf"], "no --text"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_cli_refusals(llama, tmp_path, args, message):
    (tmp_path / "short.dat").write_bytes(b"\x02\x00\x00\x00\x05\x00\x00\x00blk")
    argv = ["imatrix"] + [a.format(d=llama, t=tmp_path) for a in args]
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.gguf").exists()


def test_gguf_bytes_equal_ggml_writer(llama, tmp_path):
    """The file, byte for byte, as ggml's gguf writer makes it from the same entries (MoE-shaped
    and partial entries included)."""
    from tests.support.imatrix_ref import ggml_write_imatrix
    im = compute_imatrix(str(llama / "f32.gguf"), TEXT, chunk_size=CHUNK, chunks=2,
                         dataset="data/calib.txt")
    im.entries["blk.9.ffn_up_exps.weight"] = files.Entry(
        np.arange(12, dtype=np.float32).reshape(3, 4), np.array([5, 0, 7]))
    files.write(im, tmp_path / "ours.gguf")
    ggml_write_imatrix(tmp_path / "ggml.gguf", {n: (e.sums, e.counts) for n, e in im.entries.items()},
                       im.datasets, im.chunk_count, im.chunk_size)
    assert (tmp_path / "ours.gguf").read_bytes() == (tmp_path / "ggml.gguf").read_bytes()
