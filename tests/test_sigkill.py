"""A conversion killed with SIGKILL at random moments leaves the target either absent or
complete: byte for byte the file an uninterrupted run writes (the temporary file is renamed into
place only once written and fsynced). The hidden `.NAME.*.part` temporary may stay behind after
a SIGKILL, which no process can clean up after itself; it never has the target's name."""
from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_tiny_models import make_tokenizer

KILLS = 6
N_EMBD, N_FF, N_LAYER, N_HEAD = 768, 2048, 4, 8       # ~28M parameters: the write takes a while


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from safetensors.numpy import save_file
    d = tmp_path_factory.mktemp("killme")
    make_tokenizer(d, "gpt-2")
    n_vocab = len(json.loads((d / "tokenizer.json").read_text())["model"]["vocab"]) + 3
    rng = np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.05)
    t = {"model.embed_tokens.weight": w(n_vocab, N_EMBD), "lm_head.weight": w(n_vocab, N_EMBD),
         "model.norm.weight": np.ones(N_EMBD, np.float32)}
    for i in range(N_LAYER):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": np.ones(N_EMBD, np.float32),
                  p + "post_attention_layernorm.weight": np.ones(N_EMBD, np.float32),
                  **{p + f"self_attn.{k}_proj.weight": w(N_EMBD, N_EMBD) for k in "qkvo"},
                  p + "mlp.gate_proj.weight": w(N_FF, N_EMBD),
                  p + "mlp.up_proj.weight": w(N_FF, N_EMBD),
                  p + "mlp.down_proj.weight": w(N_EMBD, N_FF)})
    save_file(t, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "hidden_size": N_EMBD, "intermediate_size": N_FF,
        "num_hidden_layers": N_LAYER, "num_attention_heads": N_HEAD, "num_key_value_heads": N_HEAD,
        "vocab_size": n_vocab, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu"}))
    return d


def convert(model, out):
    return subprocess.Popen([sys.executable, "-m", "tinyconvert", "hf2gguf", str(model), "-o",
                             str(out), "--outtype", "f16", "--no-verify", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_for_part(folder, proc) -> float:
    """Polls until the temporary output appears (the write has begun); returns the time."""
    while not any(p.name.endswith(".part") for p in folder.iterdir()):
        assert proc.poll() is None, "finished before its temporary file was seen"
        time.sleep(0.002)
    return time.perf_counter()


def test_sigkill_leaves_target_absent_or_complete(model, tmp_path):
    ref = tmp_path / "ref" / "m.gguf"
    ref.parent.mkdir()
    proc = convert(model, ref)
    started = wait_for_part(ref.parent, proc)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    writing = time.perf_counter() - started          # from the first byte to the rename
    want = sha(ref)
    rnd = random.Random(19)
    outcomes = {"absent": 0, "complete": 0}
    midway = 0                                       # kills before the rename had happened
    for k in range(KILLS):
        out = tmp_path / f"k{k}" / "m.gguf"
        out.parent.mkdir()
        proc = convert(model, out)
        wait_for_part(out.parent, proc)
        time.sleep(rnd.uniform(0.0, 0.6) * writing)      # inside the write (timing varies)
        midway += not out.exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if out.exists():
            assert sha(out) == want, f"kill {k}: the target exists but is not the whole file"
            outcomes["complete"] += 1
        else:
            outcomes["absent"] += 1
        leftovers = [p.name for p in out.parent.iterdir() if p.name != "m.gguf"]
        assert all(p.startswith(".m.gguf.") and p.endswith(".part") for p in leftovers), leftovers
    print(f"SIGKILL outcomes over {KILLS} kills during a {writing:.2f}s write: {outcomes}, "
          f"{midway} before the rename")
    assert midway >= 1, "no kill landed inside the write: the test tested nothing"
