"""A tokenizer rebuilt from a GGUF file alone gives exactly llama.cpp's ids (llama-cpp-python's
tokenize on a vocab-only load) on hard text: every vocabulary file llama.cpp ships for its own
tokenizer tests (SPM, BPE, WPM and UGM), every pre-tokenizer name llama.cpp knows, a SentencePiece model trained here and
our own conversion of SmolLM2, and the raw-UTF-8 BPE kinds on Gemma 4's vocabulary."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from tests.support import tiny
from tests.support.llamacpp_src import vocab_files
from tinyconvert.checks.llamacpp import open_llama
from tinyconvert.checks.tokenizers.tokenizer import gguf_tokenizer
from tinyconvert.edit.metaedit import apply_edits, make_set
from tinyconvert.formats import gguf_file as gf
from tinyconvert.formats.tokenizers.llamacpp_pre import NAMES
from tinyconvert.pipeline.hf2gguf import hf2gguf

HARD = (
    "", " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", " \n \t\t \n", "\r\n\r\n", "a\rb",
    "a  b   c    d     e", "   leading spaces", "trailing spaces   ", "x \n y\t\tz",
    "1 12 123 1234 12345 123456 1234567 12345678 123456789", "3.14159 1,000,000 0.5e-10 -42",
    "🦙🚀 😶\u200d🌫️ ✅ 👍🏽 🇫🇷", "我想在apple工作1314151天～", "こんにちは世界。カタカナ 안녕하세요",
    "Äpfel naïve café résumé Ω ſ ǅ ß ÆØÅ", "e\u0301 a\u0308 n\u0303 ं क्षि", "нещо на Български",
    "def f(x):\n\treturn x**2  # square\n\nif __name__ == '__main__':\n    print(f(3))\n",
    "I've 'RE 'm 'll 'D we'Ve a'lL DON'T", "HelloWorld XMLHttpRequest camelCase snake_case",
    "path/to/file.txt C:\\dir\\f.exe https://example.com/a?b=c&d=e",
    "$$$ +++ <=> ^^ ~~ || `` ... !!! ??? ---- ==== ''''''\"\"\"", "x\u00a0y\u3000z\u2028w\u0085v",
    "<s>hello</s> <|endoftext|><|im_start|>user\nhi<|im_end|> <unk> <|end|> [PAD] <mask>",
    "<|im_start|>assistant\n", " <|endoftext|>  a", "\x1c\x1d\x1e\x1f\x0b\x0c", "ǅungla Ǉ",
    "\u2581leading block \u2581\u2581 x", "<0x41> <0xFF>", "🦙" * 5 + "a" * 40,
    # digit groups glued to the text before them (afmoe, tiny_aya), Han next to kana, Hangul, Thai,
    # compatibility ideographs and CJK extensions (kimi-k2, youtu, afmoe), marks and modifiers
    "ab 1234 x  56 y\t7890123 ４５６", "  99999\n\n12", "a  1", "x \n 1234",
    "漢字かな交じり文ｶﾀｶﾅ 한국어 ㄱㄴ ㄅㄆ ไทย", "\uf900\U00020000\U0002a700 中文，标点！“引号”…—",
    "ʰʲ ˈwɔːtə 'tis o'clock ǅa", "a\u0301b\u0308 \u0301x",
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return vocab_files(tmp_path_factory.mktemp("llamacpp"))


def _inputs(path):
    inp = path.with_name(path.name + ".inp")
    return inp.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n") if inp.is_file() \
        else []


def assert_tokenizes_like_llamacpp(path, texts=HARD, decode_texts=()) -> int:
    """Ours and llama.cpp's ids for every text, with and without BOS/EOS, and the text our ids of
    each decode_text decode to; returns the count."""
    ours = gguf_tokenizer(gf.read_gguf(path).values())
    llm = open_llama(path, vocab_only=True, verbose=False)
    try:
        for text in texts:
            for add in (True, False):
                want = llm.tokenize(text.encode("utf-8"), add_bos=add, special=True)
                assert ours.encode(text, add_special=add) == want, (path.name, add, text[:40])
        for text in decode_texts:
            ids = ours.encode(text, add_special=False)
            assert ours.decode(ids) == llm.detokenize(ids).decode("utf-8"), text
    finally:
        llm.close()
    return len(texts)


# Every vocabulary file llama.cpp ships (models/ggml-vocab-*.gguf), and whether we rebuild it.
SHIPPED = {
    "aquila": "gpt2 (no pre: default)", "baichuan": "llama", "command-r": "gpt2",
    "deepseek-coder": "gpt2", "deepseek-llm": "gpt2", "falcon": "gpt2", "gpt-2": "gpt2",
    "gpt-neox": "gpt2 (no pre: default)", "llama-bpe": "gpt2", "llama-spm": "llama",
    "mpt": "gpt2", "phi-3": "llama", "qwen2": "gpt2", "qwen35": "gpt2", "refact": "gpt2",
    "starcoder": "gpt2", "bert-bge": "bert (WPM)", "nomic-bert-moe": "t5 (UGM)",
    "gemma-4": "gemma4 (BPE on raw UTF-8 with escaped spaces)",
}


def test_every_shipped_vocabulary_is_accounted_for(models):
    shipped = {p.name.removeprefix("ggml-vocab-").removesuffix(".gguf")
               for p in models.glob("ggml-vocab-*.gguf")}
    assert shipped == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_vocabulary_tokenizes_like_llamacpp(models, name):
    path = models / f"ggml-vocab-{name}.gguf"
    assert assert_tokenizes_like_llamacpp(path, HARD + tuple(_inputs(path))) >= len(HARD)


@pytest.fixture(scope="module")
def gpt2_vocab(models):
    return models / "ggml-vocab-gpt-2.gguf"


def _groups() -> dict[str, list[str]]:
    """Names by the behaviour we give them; our tokenizer is built once per behaviour."""
    groups: dict = {}
    for name, pre in sorted(NAMES.items()):
        groups.setdefault(pre, []).append(name)
    return {names[0]: names for names in groups.values()}


@pytest.mark.parametrize("group", sorted(_groups()))
def test_every_pre_tokenizer_name_splits_like_llamacpp(tmp_path, gpt2_vocab, group):
    """The GPT-2 vocabulary under each name llama.cpp knows: the splits decide which merges can
    happen, so any difference in the regexes, ignore_merges or BOS shows in the ids."""
    names = _groups()[group]
    base = gf.read_gguf(gpt2_vocab)
    ours = gguf_tokenizer(dict(base.values(), **{"tokenizer.ggml.pre": group}))
    for name in names:
        out = tmp_path / f"{name}.gguf"
        apply_edits(gpt2_vocab, [make_set(base, "tokenizer.ggml.pre", name)], out)
        llm = open_llama(out, vocab_only=True, verbose=False)
        try:
            for text in HARD:
                for add in (True, False):
                    want = llm.tokenize(text.encode("utf-8"), add_bos=add, special=True)
                    assert ours.encode(text, add_special=add) == want, (name, add, text[:40])
        finally:
            llm.close()


def _relabelled_like_llamacpp(tmp_path, vocab, name):
    base = gf.read_gguf(vocab)
    ours = gguf_tokenizer(dict(base.values(), **{"tokenizer.ggml.pre": name}))
    out = tmp_path / f"{name}.gguf"
    apply_edits(vocab, [make_set(base, "tokenizer.ggml.pre", name)], out)
    llm = open_llama(out, vocab_only=True, verbose=False)
    try:
        for text in HARD:
            for add in (True, False):
                want = llm.tokenize(text.encode("utf-8"), add_bos=add, special=True)
                assert ours.encode(text, add_special=add) == want, (name, add, text[:40])
    finally:
        llm.close()


@pytest.mark.parametrize("name", ["tiny_aya", "youtu", "afmoe", "kimi-k2"])
def test_hand_written_splitters_on_a_vocabulary_with_digit_and_space_tokens(tmp_path, models,
                                                                            name):
    """llama.cpp's own splitters for these names (digit groups glued to the text before them,
    Han runs, script ranges) on Llama 3's vocabulary, whose multi-space and 3-digit tokens show
    every split the GPT-2 vocabulary would merge the same either way."""
    _relabelled_like_llamacpp(tmp_path, models / "ggml-vocab-llama-bpe.gguf", name)


def test_spm_trained_here_with_byte_fallback_and_user_symbols(tmp_path):
    tiny.train_spm(tmp_path, user_symbols=("<tool>", "[[x]]", "<|im_end|>"))
    tiny.build_model(tmp_path, "llama")
    out = tmp_path / "m.gguf"
    hf2gguf(str(tmp_path), out, outtype="f32", quiet=True)
    assert gguf.GGUFReader(out).fields["tokenizer.ggml.model"].contents() == "llama"
    assert_tokenizes_like_llamacpp(out, HARD + ("a<tool>b [[x]] c<|im_end|>", "<tool> <tool>"))


def test_smollm2_conversion_is_smollm_and_tokenizes_like_llamacpp(tmp_path, smollm2_hf):
    out = tmp_path / "smollm2.gguf"
    hf2gguf(str(smollm2_hf), out, outtype="f16", quiet=True)
    assert gf.read_gguf(out).value("tokenizer.ggml.pre") == "smollm"
    assert_tokenizes_like_llamacpp(out)


@pytest.fixture(scope="module")
def llama2_pair(tmp_path_factory):
    """One Llama-2-style checkpoint twice: with its SentencePiece tokenizer.model, and with only
    the tokenizer.json transformers converts it to (plus an added special token in both)."""
    import shutil

    from transformers import AutoTokenizer
    spm_dir, folder = tmp_path_factory.mktemp("spm"), tmp_path_factory.mktemp("llama2json")
    tiny.train_spm(spm_dir)
    tiny.build_model(spm_dir, "llama")
    for path in spm_dir.iterdir():
        if path.name.startswith(("config", "model", "generation")):
            shutil.copy(path, folder / path.name)
    tok = AutoTokenizer.from_pretrained(spm_dir, from_slow=True)
    tok.save_pretrained(folder)
    assert not (folder / "tokenizer.model").exists()
    return spm_dir, folder


def test_llama2_tokenizer_json_only_converts_to_spm_like_llamacpp(tmp_path, llama2_pair,
                                                                    llamacpp_root):
    """The vocabulary keys equal llama.cpp's converter's (scores aside: ours order the merges),
    and llama.cpp tokenizes our file as it tokenizes the same model converted from its
    tokenizer.model by llama.cpp's converter."""
    from tests.support.llamacpp_src import run_converter
    spm_dir, json_dir = llama2_pair
    ours, theirs, from_model = (tmp_path / n for n in ("ours.gguf", "theirs.gguf", "model.gguf"))
    hf2gguf(str(json_dir), ours, outtype="f32", quiet=True)
    run_converter(json_dir, theirs, "f32")
    run_converter(spm_dir, from_model, "f32")
    a, b = gf.read_gguf(ours), gf.read_gguf(theirs)

    def keys(f):
        return sorted(k for k in f.fields if k.startswith("tokenizer.") and not k.endswith("scores"))
    assert keys(a) == keys(b)
    for key in keys(b):
        assert np.array_equal(np.asarray(a.value(key)), np.asarray(b.value(key))), key
    with_json = open_llama(ours, vocab_only=True, verbose=False)
    with_model = open_llama(from_model, vocab_only=True, verbose=False)
    try:
        for text in HARD + tuple(tiny.CORPUS[:10]):
            got = with_json.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            assert got == with_model.tokenize(text.encode("utf-8"), add_bos=True, special=True), \
                text[:40]
    finally:
        with_json.close()
        with_model.close()


# Gemma 4's vocabulary (BPE over raw UTF-8) relabelled as the other files llama.cpp runs without
# byte encoding: (tokenizer.ggml.model, pre, add_bos_token). add_bos_token false shows Gemma 4's
# forced BOS; sarvam-moe keeps the file's choice.
RAW_RELABELS = {
    "gpt2 granite-embed-multi-311m": ("gpt2", "granite-embed-multi-311m", "false"),
    "gpt2 sarvam-moe": ("gpt2", "sarvam-moe", "false"),
    "whitespace": ("whitespace", "whitespace", "true"),
    "whitespace lowercase": ("whitespace", "whitespace", "true", True),
}


@pytest.mark.parametrize("case", sorted(RAW_RELABELS))
def test_raw_utf8_bpe_names_tokenize_like_llamacpp(tmp_path, models, case):
    model, pre, add_bos, *lower = RAW_RELABELS[case]
    src = models / "ggml-vocab-gemma-4.gguf"
    base = gf.read_gguf(src)
    edits = [make_set(base, "tokenizer.ggml.model", model), make_set(base, "tokenizer.ggml.pre", pre),
             make_set(base, "tokenizer.ggml.add_bos_token", add_bos)]
    if lower:
        edits.append(make_set(base, "tokenizer.ggml.normalizer.lowercase", "true", "bool"))
    out = tmp_path / "raw.gguf"
    apply_edits(src, edits, out)
    # and back to text, as llama.cpp detokenizes; the whitespace model only in ASCII: llama.cpp
    # reads its tokens as byte-level BPE text there, which garbles other characters
    decode = ("Hello world x",) if model == "whitespace" else (
        " Hello  world\n\n x", "é ☃ 🦙 中文\u3000", "\t\u2581a")
    assert_tokenizes_like_llamacpp(out, HARD + ("Hello WORLD  İstanbul ÀÉ\u3000x\u00a0y",), decode)


def test_gpt2_whitespace_and_wordpiece_only_names_are_refused_in_one_line(models):
    from tinyconvert.formats.errors import InputError
    fields = gf.read_gguf(models / "ggml-vocab-gpt-2.gguf").values()
    for pre in ("whitespace", "jina-v2-en", "bert-bge-large"):
        with pytest.raises(InputError, match=pre):
            gguf_tokenizer(dict(fields, **{"tokenizer.ggml.pre": pre}))


@pytest.mark.parametrize("pre", ["jina-v2-en", "bert-bge-large"])
def test_wordpiece_only_names_on_a_wordpiece_vocabulary(tmp_path, models, pre):
    """llama.cpp's converter writes these names on BERT (WordPiece) files, where the pre name
    changes nothing."""
    src = models / "ggml-vocab-bert-bge.gguf"
    out = tmp_path / "wpm.gguf"
    apply_edits(src, [make_set(gf.read_gguf(src), "tokenizer.ggml.pre", pre)], out)
    assert_tokenizes_like_llamacpp(out)


@pytest.mark.parametrize("model,pre", [("gemma4", "gemma4"), ("gpt2", "sarvam-moe")])
def test_a_newline_run_that_is_a_token_but_no_merge(tmp_path, models, model, pre):
    """A small SentencePiece-style BPE vocabulary where "\\n\\n\\n" is a token that no merge
    reaches: llama.cpp takes such a run whole for Gemma 4 only; missing bytes are dropped."""
    import json
    src = models / "ggml-vocab-gemma-4.gguf"
    base = gf.read_gguf(src)
    words = ["a", "b", "\u2581", "\n", "ab", "\u2581a", "\n\n", "\n\n\n", "\u2581\u2581"]
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{b:02X}>" for b in range(200)]
    tokens += words
    types = [3] * 5 + [6] * 200 + [1] * len(words)
    merges = ["a b", "\u2581 a", "\n \n", "\u2581 \u2581"]
    edits = [make_set(base, k, json.dumps(v), from_json=True) for k, v in (
        ("tokenizer.ggml.tokens", tokens), ("tokenizer.ggml.token_type", types),
        ("tokenizer.ggml.scores", [0.0] * len(tokens)), ("tokenizer.ggml.merges", merges))]
    edits += [make_set(base, "tokenizer.ggml.model", model),
              make_set(base, "tokenizer.ggml.pre", pre)]
    out = tmp_path / "small.gguf"
    apply_edits(src, edits, out)
    texts = ("\n\n\n", "ab\n\n\nab", "\n" * 7, " a  ab\n\n\n\n b", "é ☃ 🦙 x", "<eos>\n\n\n<bos>")
    assert_tokenizes_like_llamacpp(out, texts)
