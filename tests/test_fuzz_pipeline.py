"""Hostile inputs through whole commands, not only the header readers: mutated safetensors
checkpoints, config.json and tokenizer files through hf2gguf (the whole conversion plan), and
mutated GGUFs through quantize, verify and set-metadata. Every case either succeeds or fails
with exit 2 and one line on stderr; never another exit code, a traceback or a hang; the input is
untouched and a failed command leaves no output behind. (verify may also exit 1 with its
FAIL verdict: a mutated file that reads fine but computes something else.) Hypothesis drives the mutations with
fixed example counts (derandomized), so the whole file stays well under a minute."""
from __future__ import annotations

import copy
import hashlib
import json
import struct
import time
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.support import tiny
from tests.test_hostile_files import apply, mutations
from tests.test_tiny_models import make_tokenizer
from tinyconvert.cli import app
from tinyconvert.formats.gguf_file import read_gguf
from tinyconvert.pipeline.hf2gguf import hf2gguf

CASES: dict[str, Counter] = defaultdict(Counter)     # kind -> exit code -> cases
MAX_SECONDS = 30.0
MAX_RSS_GIB = 4.0           # the whole process: torch, transformers and every case
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "tokenizer.model")


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


class Files(dict):
    """The originals; a short repr keeps hypothesis' failure reports readable."""
    def __repr__(self) -> str:
        return "<original files>"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny llama with a byte-level BPE tokenizer, one with a SentencePiece model, and the
    first one's f16 GGUF."""
    bpe = tmp_path_factory.mktemp("bpe")
    make_tokenizer(bpe, "gpt-2")
    tiny.build_model(bpe, "llama")
    spm = tmp_path_factory.mktemp("spm")
    make_tokenizer(spm, "spm")
    tiny.build_model(spm, "llama")
    gguf_path = bpe.parent / "base.gguf"
    hf2gguf(str(bpe), gguf_path, outtype="f16", quiet=True)
    return Files(bpe={f: (bpe / f).read_bytes() for f in FILES if (bpe / f).exists()},
                 spm={f: (spm / f).read_bytes() for f in FILES if (spm / f).exists()},
                 gguf=gguf_path.read_bytes(), gguf_header=read_gguf(gguf_path).data_start)


def digest(paths) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def run(kind: str, args: list[str], inputs: list, out_dir) -> int:
    """One command on hostile input, with every promise checked."""
    before = digest(inputs)
    t = time.perf_counter()
    r = CliRunner().invoke(app, args)
    seconds = time.perf_counter() - t
    assert seconds < MAX_SECONDS, f"{kind}: {seconds:.1f}s"
    if kind == "verify" and r.exit_code == 3:       # the verdict on a file that reads but differs
        assert r.stderr == "" and "verify: FAIL" in r.stdout, r.stderr
    else:
        assert r.exit_code in (0, 2), f"{kind}: exit {r.exit_code}: {r.stderr.strip()}"
    assert "Traceback" not in r.stderr
    if r.exit_code == 2:
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        assert list(out_dir.iterdir()) == [], f"{kind}: output left behind: {r.stderr}"
    for p in out_dir.iterdir():
        p.unlink()
    assert digest(inputs) == before, f"{kind}: input changed"
    CASES[kind][r.exit_code] += 1
    return r.exit_code


def convert(kind: str, tmp, files: dict[str, bytes]) -> int:
    """hf2gguf on a checkpoint folder made of these files."""
    model, out = tmp / "model", tmp / "out"
    model.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    for p in model.iterdir():
        p.unlink()
    for name, data in files.items():
        (model / name).write_bytes(data)
    return run(kind, ["hf2gguf", str(model), "-o", str(out / "x.gguf"), "--outtype", "f16",
                      "--no-verify", "-q"], list(model.iterdir()), out)


# --- values a hostile JSON file may hold where a number, string, list or object belongs ---
HOSTILE = st.sampled_from([None, -1, 0, 1, 2, 3, 7, 64, 2**31, 2**32, 2**63, 2**64, 1e308, 1.5,
                           -0.0, "x", "", "7", [], [1], ["a", "b"], {}, {"type": "linear"},
                           True, False])
INDEX = st.integers(0, 10**6)


def _pick(seq, i):
    return seq[i % len(seq)] if seq else None


# --- safetensors: structured edits of the header, plus raw byte edits ---
ST_OPS = st.lists(st.one_of(
    st.tuples(st.just("shape"), INDEX, INDEX, HOSTILE),
    st.tuples(st.just("offsets"), INDEX, INDEX, HOSTILE),
    st.tuples(st.just("dtype"), INDEX, st.sampled_from(["F16", "BF16", "I64", "U8", "F8_E4M3",
                                                        "XX", 5, None]), st.just(0)),
    st.tuples(st.just("drop"), INDEX, st.just(0), st.just(0)),
    st.tuples(st.just("rename"), INDEX, st.sampled_from(
        ["model.layers.7.mlp.up_proj.weight", "lm_head.weight", "", "model.norm.weight",
         "model.layers.0.self_attn.q_proj.weight", "__metadata__"]), st.just(0)),
    st.tuples(st.just("permute"), INDEX, st.just(0), st.just(0)),       # same size, new shape
    st.tuples(st.just("bytes"), INDEX, st.integers(0, 255), st.just(0)),
), min_size=1, max_size=3)


def mutate_safetensors(data: bytes, ops) -> bytes:
    n = struct.unpack_from("<Q", data)[0]
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    names = sorted(k for k in header if k != "__metadata__")
    raw = []
    for kind, i, a, b in ops:
        name = _pick(names, i)
        e = header.get(name)
        if not isinstance(e, dict):
            continue
        if kind in ("shape", "offsets"):
            key = "shape" if kind == "shape" else "data_offsets"
            if isinstance(e.get(key), list) and e[key]:
                e[key][a % len(e[key])] = b
        elif kind == "dtype":
            e["dtype"] = a
        elif kind == "drop":
            header.pop(name)
        elif kind == "rename":
            header[a] = header.pop(name)
        elif kind == "permute" and isinstance(e.get("shape"), list):
            e["shape"] = e["shape"][::-1]
        elif kind == "bytes":
            raw.append(("flip", i, a))
    head = json.dumps(header).encode()
    return apply(struct.pack("<Q", len(head)) + head + body, raw, 8 + len(head)) if raw \
        else struct.pack("<Q", len(head)) + head + body


@fuzz(120)
@given(ops=ST_OPS)
def test_mutated_safetensors_through_hf2gguf(base, tmp_path_factory, ops):
    files = dict(base["bpe"])
    files["model.safetensors"] = mutate_safetensors(files["model.safetensors"], ops)
    convert("safetensors", tmp_path_factory.mktemp("st"), files)


# --- config.json: keys set to hostile values, deleted, or the file cut short ---
CONFIG_KEYS = ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "vocab_size", "max_position_embeddings", "head_dim",
               "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters",
               "tie_word_embeddings", "hidden_act", "architectures", "text_config",
               "num_local_experts", "num_experts_per_tok", "quantization_config", "torch_dtype",
               "bos_token_id", "eos_token_id", "pad_token_id", "sliding_window", "model_type"]
CONFIG_OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from(CONFIG_KEYS), HOSTILE),
    st.tuples(st.just("arch"), st.just("architectures"), st.sampled_from(
        [["Qwen3ForCausalLM"], ["MixtralForCausalLM"], ["GemmaForCausalLM"], ["Phi3ForCausalLM"],
         ["DeepseekV3ForCausalLM"], ["GptOssForCausalLM"], ["Gemma3ForConditionalGeneration"]])),
    st.tuples(st.just("rope"), st.just("rope_scaling"), st.fixed_dictionaries(
        {"rope_type": st.sampled_from(["linear", "yarn", "llama3", "dynamic", 5, None])},
        optional={"factor": HOSTILE, "original_max_position_embeddings": HOSTILE,
                  "low_freq_factor": HOSTILE, "high_freq_factor": HOSTILE})),
    st.tuples(st.just("delete"), st.sampled_from(CONFIG_KEYS), st.just(None)),
    st.tuples(st.just("cut"), st.just(""), INDEX),
), min_size=1, max_size=3)


def mutate_config(data: bytes, ops) -> bytes:
    cfg = json.loads(data)
    cut = None
    for kind, key, value in ops:
        if kind in ("set", "arch", "rope"):
            cfg[key] = copy.deepcopy(value)
        elif kind == "delete":
            cfg.pop(key, None)
        else:
            cut = value
    out = json.dumps(cfg).encode()
    return out[:cut % len(out)] if cut is not None else out


@fuzz(120)
@given(ops=CONFIG_OPS)
def test_mutated_config_through_hf2gguf(base, tmp_path_factory, ops):
    files = dict(base["bpe"])
    files["config.json"] = mutate_config(files["config.json"], ops)
    convert("config.json", tmp_path_factory.mktemp("cfg"), files)


# --- tokenizer files: tokenizer.json, tokenizer_config.json, tokenizer.model ---
TJ_OPS = st.lists(st.one_of(
    st.tuples(st.just("vocab"), INDEX, HOSTILE),
    st.tuples(st.just("merge"), INDEX, HOSTILE),
    st.tuples(st.just("added_id"), INDEX, HOSTILE),
    st.tuples(st.just("added_content"), INDEX, HOSTILE),
    st.tuples(st.just("top"), st.sampled_from(["model", "pre_tokenizer", "normalizer",
                                               "added_tokens", "post_processor", "decoder"]),
              HOSTILE),
    st.tuples(st.just("model_type"), st.just(0), st.sampled_from(["BPE", "WordPiece", "Unigram",
                                                                  None, 3])),
), min_size=1, max_size=3)
TC_OPS = st.lists(st.tuples(st.sampled_from(
    ["bos_token", "eos_token", "pad_token", "unk_token", "chat_template", "add_bos_token",
     "add_eos_token", "added_tokens_decoder", "add_prefix_space", "clean_up_tokenization_spaces"]),
    st.one_of(HOSTILE, st.just({"5": {"content": 7}}), st.just({"99999": {"content": "<x>"}}),
              st.just({"x": {}}), st.just({"content": "<|im_end|>"}))), min_size=1, max_size=3)


def mutate_tokenizer_json(data: bytes, ops) -> bytes:
    tj = json.loads(data)
    model = tj.get("model", {})
    for kind, i, value in ops:
        if kind == "vocab" and isinstance(model.get("vocab"), dict) and model["vocab"]:
            model["vocab"][_pick(sorted(model["vocab"]), i)] = value
        elif kind == "merge" and isinstance(model.get("merges"), list) and model["merges"]:
            model["merges"][i % len(model["merges"])] = value
        elif kind in ("added_id", "added_content") and isinstance(tj.get("added_tokens"), list) \
                and tj["added_tokens"]:
            tj["added_tokens"][i % len(tj["added_tokens"])][kind[6:]] = value
        elif kind == "top":
            tj[i] = value
        elif kind == "model_type" and isinstance(model, dict):
            model["type"] = value
    return json.dumps(tj).encode()


def mutate_tokenizer_config(data: bytes, ops) -> bytes:
    cfg = json.loads(data)
    for key, value in ops:
        cfg[key] = copy.deepcopy(value)
    return json.dumps(cfg).encode()


@fuzz(70)
@given(tj=TJ_OPS, tc=st.none() | TC_OPS)
def test_mutated_bpe_tokenizer_through_hf2gguf(base, tmp_path_factory, tj, tc):
    files = dict(base["bpe"])
    files["tokenizer.json"] = mutate_tokenizer_json(files["tokenizer.json"], tj)
    if tc is not None:
        files["tokenizer_config.json"] = mutate_tokenizer_config(files["tokenizer_config.json"],
                                                                 tc)
    convert("tokenizer.json", tmp_path_factory.mktemp("tj"), files)


@fuzz(60)
@given(ops=mutations("tokenizer.model"), tc=st.none() | TC_OPS)
def test_mutated_spm_tokenizer_through_hf2gguf(base, tmp_path_factory, ops, tc):
    files = dict(base["spm"])
    files["tokenizer.model"] = apply(files["tokenizer.model"], ops, len(files["tokenizer.model"]))
    if tc is not None:
        files["tokenizer_config.json"] = mutate_tokenizer_config(files["tokenizer_config.json"],
                                                                 tc)
    convert("tokenizer.model", tmp_path_factory.mktemp("tm"), files)


# --- GGUF files through quantize, set-metadata and verify ---
def mutated_gguf(base, tmp, ops):
    path, out = tmp / "in.gguf", tmp / "out"
    path.write_bytes(apply(base["gguf"], ops, base["gguf_header"]))
    out.mkdir()
    return path, out


@fuzz(100)
@given(ops=mutations("gguf"))
def test_mutated_gguf_through_quantize(base, tmp_path_factory, ops):
    path, out = mutated_gguf(base, tmp_path_factory.mktemp("q"), ops)
    run("quantize", ["quantize", str(path), "-o", str(out / "q.gguf"), "-t", "q8_0",
                     "--no-verify", "-q"], [path], out)


@fuzz(100)
@given(ops=mutations("gguf"), in_place=st.booleans())
def test_mutated_gguf_through_set_metadata(base, tmp_path_factory, ops, in_place):
    path, out = mutated_gguf(base, tmp_path_factory.mktemp("m"), ops)
    if not in_place:
        run("set-metadata", ["set-metadata", str(path), "general.name", "fuzz", "-o",
                             str(out / "m.gguf")], [path], out)
        return
    before = path.read_bytes()
    r = CliRunner().invoke(app, ["set-metadata", str(path), "general.name", "a much longer name"])
    assert r.exit_code in (0, 2), r.stderr
    if r.exit_code == 2:                      # refused: the file is exactly as it was
        assert path.read_bytes() == before and r.stderr.count("\n") == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["in.gguf", "out"]    # no temporary
    CASES["set-metadata in place"][r.exit_code] += 1


@fuzz(40)
@given(ops=mutations("gguf"))
def test_mutated_gguf_through_verify(base, tmp_path_factory, ops):
    tmp = tmp_path_factory.mktemp("v")
    ref = tmp / "ref.gguf"
    ref.write_bytes(base["gguf"])
    path, out = mutated_gguf(base, tmp, ops)
    run("verify", ["verify", str(ref), str(path), "--tokens", "8"], [ref, path], out)


def test_case_counts_reported():
    """Printed with -s (and in the summary when a count falls short)."""
    import resource
    report = {k: dict(v) for k, v in sorted(CASES.items())}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20        # KiB -> GiB
    print(f"fuzzed command cases (kind: exit code -> count): {report}; peak RSS {peak:.2f} GiB")
    assert peak < MAX_RSS_GIB, "a hostile case allocated far more than the tiny models need"
    want = {"safetensors": 120, "config.json": 120, "tokenizer.json": 70, "tokenizer.model": 60,
            "quantize": 100, "verify": 40}
    for kind, n in want.items():
        assert sum(CASES[kind].values()) >= n, report
    assert sum(CASES["set-metadata"].values()) + sum(CASES["set-metadata in place"].values()) \
        >= 100, report
