"""Does the candidate file's vocabulary tokenize like the reference? Kept apart from verify (and
torch) so that the weights check (checks/weights_check.py) runs the same test without a model."""
from __future__ import annotations

from importlib import resources

from tinyconvert.checks.tokenizers.tokenizer import gguf_tokenizer
from tinyconvert.formats.errors import InputError


def default_text() -> str:
    return resources.files("tinyconvert").joinpath("data/eval.txt").read_text(encoding="utf-8")


def vocab_mismatches(ref, cand, text: str, ref_ids: list[int], encoder=None) -> list[str]:
    """Does the candidate file's own vocabulary tokenize the text like the reference tokenizer?
    encoder: the candidate's text_encoder, when already built."""
    try:
        cand_ids = gguf_tokenizer(cand.fields, encoder).encode(text)
    except InputError:
        # not a vocabulary we can rebuild a tokenizer from (SentencePiece): compare its arrays
        return _vocab_arrays_differ(ref, cand)
    if cand_ids == ref_ids:
        return []
    first = next((i for i, (a, b) in enumerate(zip(ref_ids, cand_ids)) if a != b),
                 min(len(ref_ids), len(cand_ids)))
    return [f"candidate vocabulary tokenizes the text differently from token {first} on "
            f"({len(cand_ids)} vs {len(ref_ids)} tokens)"]


def _vocab_arrays_differ(ref, cand) -> list[str]:
    from tinyconvert.formats.tokenizers.vocab import load_vocab
    if ref.kind == "gguf":
        want = {k: v for k, v in ref.fields.items() if k.startswith("tokenizer.ggml.")}
    else:
        v = load_vocab(ref.path, ref.hparams.n_vocab or None)
        want = {"tokenizer.ggml.model": v.model, "tokenizer.ggml.pre": v.pre,
                "tokenizer.ggml.tokens": v.tokens, "tokenizer.ggml.token_type": v.token_types}
    keys = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type")
    return [f"{k} differs from the reference's" for k in keys
            if k in want and not _same(cand.fields.get(k), want[k])]


def _same(a, b) -> bool:
    import numpy as np
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(np.asarray(a), np.asarray(b))
    return a == b
