"""A GGUF about to be run (verify, run) is checked against itself first: the hyperparameters the
runtime reads are integers in range, and the tensors every block needs are there, so that a
hostile or damaged file is one line naming what is wrong instead of a TypeError from deep inside
the forward pass. Families differ in their tensors; each group below lists the names any family
may use for one role, and a block needs one of each. That holds for the attention + FFN families
listed (literally, not from the registry: a new family joins when its blocks fit these roles;
an SSM or hybrid one would not); for any other only the file-wide checks apply."""
from __future__ import annotations

from pathlib import Path

from tinyconvert.formats.errors import InputError

GLOBAL = ("token_embd.weight", "output_norm.weight")
LAYER_ROLES = (
    ("attn_q", "attn_qkv", "attn_q_a", "attn_q_b"),             # MLA: q_a/q_b
    ("attn_k", "attn_qkv", "attn_kv_a_mqa"),
    ("attn_output",),
    ("ffn_up", "ffn_up_exps"),
    ("ffn_down", "ffn_down_t", "ffn_down_exps"),                 # PowerInfer: ffn_down_t
)
BLOCK_ARCHS = frozenset({"bamboo", "deepseek2", "gemma", "gemma2", "gemma3", "gpt-oss", "granite",
                         "llama", "olmo2", "olmoe", "phi3", "qwen2", "qwen2moe", "qwen3",
                         "qwen3moe", "smollm3"})
POSITIVE = ("block_count", "embedding_length", "attention.head_count")
OPTIONAL = ("attention.head_count_kv", "attention.key_length", "attention.value_length",
            "feed_forward_length", "expert_count", "expert_used_count", "context_length")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_keys(path: Path, fields: dict, arch: str) -> dict:
    got = {}
    # other families may keep per-layer arrays (head counts, FFN sizes) or no heads at all
    keys = POSITIVE + OPTIONAL if arch in BLOCK_ARCHS else ("block_count", "embedding_length")
    for key in keys:
        v = fields.get(f"{arch}.{key}")
        if v is None and (key in OPTIONAL or arch not in BLOCK_ARCHS):
            continue
        if not _is_int(v) or not (v >= 1 if key in POSITIVE else v >= 0):
            raise InputError(f"{path}: {arch}.{key} is {v!r}; the model needs a "
                             f"{'positive ' if key in POSITIVE else ''}integer there")
        got[key] = v
    n_head, n_kv = got.get("attention.head_count"), got.get("attention.head_count_kv")
    if n_head and n_kv is not None and (n_kv == 0 or n_head % n_kv):
        raise InputError(f"{path}: {n_head} attention heads cannot share {n_kv} key/value heads")
    if got.get("expert_used_count", 0) > got.get("expert_count", 0):
        raise InputError(f"{path}: uses {got['expert_used_count']} experts per token of "
                         f"{got.get('expert_count', 0)}")
    return got


def _check_heads(path: Path, got: dict, tensors: dict) -> None:
    """attn_q's rows are n_head heads of key_length (MLA files, with their latent projections,
    size heads their own way)."""
    q = tensors.get("blk.0.attn_q.weight")
    if q is None or len(q.ne) != 2 or "blk.0.attn_kv_a_mqa.weight" in tensors:
        return
    n_head = got["attention.head_count"]
    head_dim = got.get("attention.key_length") or got["embedding_length"] // n_head
    if q.ne[1] != n_head * head_dim:
        raise InputError(f"{path}: blk.0.attn_q has {q.ne[1]} rows, not {n_head} heads of "
                         f"{head_dim}")


def check_runnable(path: Path, fields: dict, tensors: dict) -> None:
    """tensors: name -> TensorInfo (ggml order ne)."""
    arch = fields.get("general.architecture")
    if not isinstance(arch, str):
        raise InputError(f"{path}: general.architecture is {arch!r}, not a name")
    got = _check_keys(path, fields, arch)
    n_layer = got.get("block_count", 0)
    if n_layer > len(tensors):
        raise InputError(f"{path}: {arch}.block_count is {n_layer} but the file has only "
                         f"{len(tensors)} tensors")
    for name in GLOBAL:
        if name not in tensors:
            raise InputError(f"{path}: has no {name}, which the model needs")
    for i in range(n_layer if arch in BLOCK_ARCHS else 0):
        for role in LAYER_ROLES:
            if not any(f"blk.{i}.{t}.weight" in tensors for t in role):
                raise InputError(f"{path}: block {i} has no {' / '.join(role)} tensor")
    if got.get("expert_count") and not any("_exps." in name for name in tensors):
        raise InputError(f"{path}: says {got['expert_count']} experts but has no expert tensors")
    if arch in BLOCK_ARCHS:
        _check_heads(path, got, tensors)
    embd = tensors["token_embd.weight"].ne
    if "embedding_length" in got and embd[0] != got["embedding_length"]:
        raise InputError(f"{path}: token_embd is {embd[0]} wide, but {arch}.embedding_length "
                         f"is {got['embedding_length']}")
    tokens = fields.get("tokenizer.ggml.tokens")
    if tokens is not None and len(embd) > 1 and len(tokens) != embd[1]:
        raise InputError(f"{path}: {len(tokens)} tokens in the vocabulary but token_embd has "
                         f"{embd[1]} rows")
