"""quantize / hf2gguf with an importance matrix: which vector reaches which tensor's quantize
call (the registry's entries wrapped by a spy: every entry of the matrix holds a constant of its
own, per expert for 3-D tensors), llama-quantize's filters and refusals, the mix rules that
depend on having a matrix and the quantize.imatrix.* keys against llama_model_quantize given the
same matrix, and the CLI."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.support import tiny
from tests.support.imatrix_ref import llamacpp_quantize_imatrix
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.imatrix import files
from tinyconvert.imatrix.apply import ImatrixOptions
from tinyconvert.pipeline.hf2gguf import hf2gguf
from tinyconvert.pipeline.recipes.mixes import RECIPES, Options, allows_quantization
from tinyconvert.pipeline.quantize import quantize
from tinyconvert.quant.registry import REGISTRY, QuantType

MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
           shared_expert_intermediate_size=96)
CALIB = " ".join(tiny.CORPUS)


def _model(d, arch, **kw):
    make_tokenizer(d, "spm")
    tiny.build_model(d, arch, **kw)
    hf2gguf(str(d), d / "f32.gguf", outtype="f32", quiet=True)
    (d / "calib.txt").write_text(CALIB, encoding="utf-8")
    return d


@pytest.fixture(scope="module", params=["llama", "qwen2moe"])
def model(request, tmp_path_factory):
    kw = MOE if request.param == "qwen2moe" else {}
    return _model(tmp_path_factory.mktemp(f"imq-{request.param}"), request.param, **kw)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("imq-dense"), "llama")


def _tensors(path) -> dict[str, np.ndarray]:
    f = read_gguf(path)
    return {t.name: f.tensor_bytes(t).view(np.float32).reshape(t.shape) for t in f.tensors}


def _marked(path, out, *, skip=(), wrong=()) -> dict[str, float]:
    """An imatrix whose entry k holds 1 + k + e/16 in every column of expert e (counts 1, so
    the normalised vector is that constant). skip: entries left out; wrong: entries one column
    too long. Returns constant -> 'name/expert'."""
    entries, marks, src = {}, {}, _tensors(path)
    names = [n for n, a in src.items() if allows_quantization(n, a.ndim, Options())
             and n != "output.weight" and n not in skip]
    for k, n in enumerate(sorted(names)):
        n_mat = src[n].shape[0] if src[n].ndim == 3 else 1
        cols = src[n].shape[-1] + (1 if n in wrong else 0)
        vals = np.stack([np.full(cols, 1 + k + e / 16, np.float32) for e in range(n_mat)])
        entries[n] = files.Entry(vals, np.ones(n_mat, dtype=np.int64))
        marks.update({1 + k + e / 16: f"{n}/{e}" for e in range(n_mat)})
    files.write(files.Imatrix(entries, ["marks.txt"], 7, 512), out)
    return marks


@pytest.fixture
def spy(monkeypatch):
    """Every registry type records (rows, imatrix) of each quantize call."""
    calls = []

    def wrap(q: QuantType) -> QuantType:
        def quantize_rows(rows, imatrix=None):
            calls.append((rows.copy(), None if imatrix is None else np.array(imatrix)))
            return q.quantize(rows, imatrix=imatrix)
        return replace(q, quantize=quantize_rows)
    for name, q in list(REGISTRY.items()):
        monkeypatch.setitem(REGISTRY, name, wrap(q))
    return calls


def _received(calls, marks) -> dict:
    """'name/expert' -> the rows quantized with that vector; None -> the bytes of every row
    quantized without one."""
    got: dict = {None: set()}
    for rows, v in calls:
        if v is None:
            got[None].update(r.tobytes() for r in rows)
            continue
        assert np.all(v == v[0]), "a vector that is not one entry's (expert's) own"
        key = marks[float(v[0])]
        got[key] = np.concatenate([got[key], rows]) if key in got else rows
    return got


def _same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return a.shape == b.shape and np.array_equal(a[np.argsort(a[:, 0])], b[np.argsort(b[:, 0])])


def test_each_tensor_gets_its_own_vector(model, tmp_path, spy):
    src = _tensors(model / "f32.gguf")
    marks = _marked(model / "f32.gguf", tmp_path / "im.gguf", skip=("blk.1.attn_k.weight",),
                    wrong=("token_embd.weight",))
    quantize(model / "f32.gguf", tmp_path / "q.gguf", qtype="q4_0", quiet=True,
             imatrix=ImatrixOptions(imatrix=tmp_path / "im.gguf"))
    got = _received(spy, marks)
    for key in marks.values():
        name, e = key.split("/")
        if name == "token_embd.weight":
            assert key not in got          # a wrong-sized token_embd entry: quantized without
            continue
        want = src[name][int(e)] if src[name].ndim == 3 else src[name]
        assert _same_rows(got[key], want), key
    for name in ("blk.1.attn_k.weight", "token_embd.weight", "output.weight"):
        assert all(r.tobytes() in got[None] for r in src[name]), name      # without a vector
    kv = read_gguf(tmp_path / "q.gguf").values()
    assert kv["quantize.imatrix.file"] == str(tmp_path / "im.gguf")
    assert kv["quantize.imatrix.dataset"] == "marks.txt"
    assert kv["quantize.imatrix.entries_count"] == len({k.split("/")[0] for k in marks.values()})
    assert kv["quantize.imatrix.chunks_count"] == 7


@pytest.mark.parametrize("flag", ["include", "exclude"])
def test_include_exclude_weights(dense, tmp_path, spy, flag):
    """Substring filters on entry names: the others' tensors are quantized without."""
    marks = _marked(dense / "f32.gguf", tmp_path / "im.gguf")
    opts = ImatrixOptions(imatrix=tmp_path / "im.gguf", **{f"{flag}_weights": ("ffn_g", "_up")})
    quantize(dense / "f32.gguf", tmp_path / "q.gguf", qtype="q4_0", quiet=True, imatrix=opts)
    with_vector = {k.split("/")[0] for k in _received(spy, marks) if k is not None}
    matched = {"blk.0.ffn_gate.weight", "blk.1.ffn_gate.weight", "blk.0.ffn_up.weight",
               "blk.1.ffn_up.weight"}
    every = {k.split("/")[0] for k in marks.values()}
    assert with_vector == (matched if flag == "include" else every - matched)
    kv = read_gguf(tmp_path / "q.gguf").values()
    assert kv["quantize.imatrix.entries_count"] == len(with_vector)


def test_filtered_to_nothing_is_no_imatrix(dense, tmp_path, spy):
    marks = _marked(dense / "f32.gguf", tmp_path / "im.gguf")
    quantize(dense / "f32.gguf", tmp_path / "q.gguf", qtype="q4_0", quiet=True,
             imatrix=ImatrixOptions(imatrix=tmp_path / "im.gguf", include_weights=("nope",)))
    assert list(_received(spy, marks)) == [None] and spy
    assert not any(k.startswith("quantize.imatrix") for k in read_gguf(tmp_path / "q.gguf").values())


def test_one_step_from_text_uses_the_computed_matrix(dense, tmp_path, spy):
    """hf2gguf --outtype q4_0 --imatrix-text: the matrix computed on the checkpoint reaches the
    quantizer (and --imatrix-out keeps it)."""
    hf2gguf(str(dense), tmp_path / "q.gguf", outtype="q4_0", quiet=True,
            imatrix=ImatrixOptions(imatrix_text=dense / "calib.txt",
                                   imatrix_out=tmp_path / "im.gguf"))
    im = files.read(tmp_path / "im.gguf")
    owner = {r.tobytes(): n for n, a in _tensors(dense / "f32.gguf").items() if a.ndim == 2
             for r in a}
    reached = set()
    for rows, v in spy:
        if v is not None:
            name = owner[rows[0].tobytes()]
            np.testing.assert_array_equal(v, im.normalized(name))
            reached.add(name)
    assert reached == set(im.entries)
    kv = read_gguf(tmp_path / "q.gguf").values()
    assert kv["quantize.imatrix.file"] == str(tmp_path / "im.gguf")
    assert kv["quantize.imatrix.dataset"] == str(dense / "calib.txt")
    assert kv["quantize.imatrix.chunks_count"] == im.chunk_count > 1


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """8 layers of 256-wide rows: the mixes' per-layer rules (n_layer / 8) show."""
    return _model(tmp_path_factory.mktemp("imq-deep"), "llama", hidden_size=256,
                  intermediate_size=512, num_hidden_layers=8, n_kv_head=1)


@pytest.mark.parametrize("mix", ["q4_0", "iq4_nl", "q4_k_m"])
def test_types_and_keys_match_llamacpp_with_a_matrix(deep, tmp_path, mix):
    """With a matrix llama.cpp changes the mixes (q4_0/q5_0: the first n/8 ffn_down become
    q4_1/q5_1; iq4_nl: they stay iq4_nl instead of q5_k). Types and keys against
    llama_model_quantize given the same normalised vectors, and every tensor's bytes (with a
    vector, through the quantizers' imatrix paths)."""
    files_path = tmp_path / "im.gguf"
    marks = _marked(deep / "f32.gguf", files_path)
    im = files.read(files_path)
    vectors = {n: im.normalized(n) for n in im.entries}
    keys = [("quantize.imatrix.file", str(files_path)), ("quantize.imatrix.dataset", "marks.txt"),
            ("quantize.imatrix.entries_count", len(vectors)), ("quantize.imatrix.chunks_count", 7)]
    assert llamacpp_quantize_imatrix(deep / "f32.gguf", tmp_path / "theirs.gguf",
                                     RECIPES[mix][0], vectors, keys) == 0
    quantize(deep / "f32.gguf", tmp_path / "ours.gguf", qtype=mix, quiet=True,
             imatrix=ImatrixOptions(imatrix=files_path))
    a, b = read_gguf(tmp_path / "ours.gguf"), read_gguf(tmp_path / "theirs.gguf")
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    assert {n: t.ggml_type for n, t in ta.items()} == {n: t.ggml_type for n, t in tb.items()}
    for n in ta:
        assert a.tensor_bytes(ta[n]).tobytes() == b.tensor_bytes(tb[n]).tobytes(), n
    for k, _ in keys:
        assert (a.fields[k].vtype, a.value(k)) == (b.fields[k].vtype, b.value(k)), k
    if mix in ("q4_0", "q5_0"):
        assert ta["blk.0.ffn_down.weight"].ggml_type != ta["blk.1.ffn_down.weight"].ggml_type
    assert len(marks) == len(vectors)


def test_a_type_that_needs_a_matrix_is_refused_without_one(deep, tmp_path):
    """llama-quantize refuses IQ2_XXS & co. without a matrix, and with one lacking the tensor."""
    _marked(deep / "f32.gguf", tmp_path / "im.gguf", skip=("blk.0.ffn_down.weight",))
    plain = dict(qtype="q8_0", quiet=True)
    with pytest.raises(InputError, match="needs an importance matrix"):
        quantize(deep / "f32.gguf", tmp_path / "q.gguf", **plain,
                 options=_types(("ffn_down", "iq2_xxs")))
    with pytest.raises(InputError, match="blk.0.ffn_down.weight .* has no entry for it"):
        quantize(deep / "f32.gguf", tmp_path / "q.gguf", **plain,
                 options=_types(("ffn_down", "iq2_xxs")),
                 imatrix=ImatrixOptions(imatrix=tmp_path / "im.gguf"))
    assert not (tmp_path / "q.gguf").exists()


def _types(*pairs):
    return Options(tensor_types=tuple(pairs))


def test_cli_quantize_with_text(dense, tmp_path):
    r = CliRunner().invoke(app, ["quantize", str(dense / "f32.gguf"), "-o", str(tmp_path / "q.gguf"),
                                 "-t", "q4_0", "--imatrix-text", str(dense / "calib.txt"),
                                 "--imatrix-out", str(tmp_path / "im.dat"), "--no-verify",
                                 "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["types"]["q4_0"] == 15
    assert files.read(tmp_path / "im.dat").is_legacy              # --imatrix-out keeps it
    kv = read_gguf(tmp_path / "q.gguf").values()
    assert kv["quantize.imatrix.entries_count"] == 14
    assert kv["quantize.imatrix.file"] == str(tmp_path / "im.dat")


BAD = [
    (["--imatrix", "{t}/im.gguf", "--imatrix-text", "{d}/calib.txt"], "not both"),
    (["--imatrix-out", "{t}/x.gguf"], "needs --imatrix-text"),
    (["--imatrix", "{t}/im.gguf", "--include-weights", "a", "--exclude-weights", "b"],
     "cannot be used together"),
    (["--include-weights", "ffn"], "give --imatrix or --imatrix-text"),
    (["--imatrix", "{t}/none.gguf"], "no such imatrix file"),
    (["--imatrix", "{t}/nometa.gguf"], "missing imatrix metadata"),
    (["--imatrix", "{t}/wrong.gguf"], "imatrix size 65 is different from tensor size 64"),
    (["--imatrix", "{t}/nan.gguf"], "non-finite"),
    (["--imatrix-text", "{t}/short.txt"], "needs at least 1024"),
    (["--imatrix", "{t}/im.gguf", "-b", "8", "--group-size", "64"], "grouped INT8"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_cli_refusals(dense, tmp_path, args, message):
    _marked(dense / "f32.gguf", tmp_path / "im.gguf")
    _marked(dense / "f32.gguf", tmp_path / "wrong.gguf", wrong=("blk.0.attn_q.weight",))
    im = files.read(tmp_path / "im.gguf")
    _strip_key(tmp_path / "im.gguf", tmp_path / "nometa.gguf")
    im.entries["blk.0.ffn_up.weight"].sums[0, 3] = np.inf
    files.write(im, tmp_path / "nan.gguf")
    (tmp_path / "short.txt").write_text("a few words only")
    argv = ["quantize", str(dense / "f32.gguf"), "-o", str(tmp_path / "q.gguf"), "--no-verify"]
    argv += ["-t", "q4_0"] if "-b" not in args else []
    r = CliRunner().invoke(app, argv + [a.format(d=dense, t=tmp_path) for a in args])
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "q.gguf").exists()


def _strip_key(path, out) -> None:
    """The same file without imatrix.chunk_size (an incomplete writer's)."""
    from tinyconvert.formats.gguf_edit import copy_entries, rewrite
    f = read_gguf(path)
    rewrite(f, copy_entries(f, ("imatrix.chunk_size",)), out)


def test_cli_hf2gguf_refuses_a_float_outtype(dense, tmp_path):
    r = CliRunner().invoke(app, ["hf2gguf", str(dense), "-o", str(tmp_path / "x.gguf"),
                                 "--outtype", "f16", "--imatrix-text", str(dense / "calib.txt")])
    assert r.exit_code == 2 and "quantized types" in r.stderr, r.stderr


@pytest.mark.parametrize("how", ["quantize", "hf2gguf"])
def test_tmac_search_takes_the_matrix(dense, tmp_path, how):
    """quantize --tmac / hf2gguf --outtype tmac_* with --imatrix: every T-MAC tensor holds the
    search quantizer's own output for its rows and its entry's vector, and differs from the
    file made without the matrix; F16/F32 tensors are as without."""
    from tinyconvert.pipeline.quantize import TmacOptions
    from tinyconvert.quant.tmac import tmac_types as tt
    rng = np.random.default_rng(0)                # columns of very different importance
    entries = {n: files.Entry(rng.lognormal(0, 1.5, (1, a.shape[-1])).astype(np.float32),
                              np.ones(1, dtype=np.int64))
               for n, a in _tensors(dense / "f32.gguf").items() if a.ndim == 2}
    files.write(files.Imatrix(entries, ["calib.txt"], 1, 512), tmp_path / "im.gguf")
    im = files.read(tmp_path / "im.gguf")
    opts = ImatrixOptions(imatrix=tmp_path / "im.gguf")
    for out, o in (("with.gguf", opts), ("without.gguf", None)):
        if how == "quantize":
            quantize(dense / "f32.gguf", tmp_path / out, bits=4, group_size=64, quiet=True,
                     tmac=TmacOptions(), imatrix=o)
        else:
            hf2gguf(str(dense), tmp_path / out, outtype="tmac_w4g64_1", quiet=True, imatrix=o)
    qt = tt.canonical_type(4, 64, True)          # every row of the tiny model is 64 wide
    src = _tensors(dense / "f32.gguf")
    ours, plain = read_gguf(tmp_path / "with.gguf"), read_gguf(tmp_path / "without.gguf")
    plain_bytes = {t.name: plain.tensor_bytes(t).tobytes() for t in plain.tensors}
    checked = 0
    for t in ours.tensors:
        got = ours.tensor_bytes(t).tobytes()
        if t.ggml_type != qt.ggml_id:
            assert got == plain_bytes[t.name], t.name
            continue
        vector = np.asarray(im.normalized(t.name), np.float32).reshape(-1)
        codes, tails = qt.pack(qt.quantize_rows(src[t.name], imatrix=vector))
        assert got == codes.tobytes() + b"".join(x.tobytes() for x in tails), t.name
        assert got != plain_bytes[t.name], t.name
        checked += 1
    assert checked == sum(t.ggml_type == qt.ggml_id for t in plain.tensors) >= 10, checked
