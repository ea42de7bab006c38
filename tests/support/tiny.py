"""Tiny seeded checkpoints for tests: transformers model classes from small configs, with weights
of a realistic scale (std ~0.08, norms perturbed) so that a wrong permute or a swapped tensor shows,
and tokenizers trained on the spot (sentencepiece for tokenizer.model, `tokenizers` for a
byte-level BPE tokenizer.json)."""
from __future__ import annotations

import io
import json
from pathlib import Path

CHAT_TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
                 "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog while 42 cats watch from 1999 windows.",
    "def tokenize(text: str) -> list[int]:\n    return [ord(c) for c in text]  # 3.14159\n",
    "Il était une fois une café à Paris; naïve façade, über-große Bäume, señor niño.",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "Emoji 🙂🚀 and symbols: <= >= != == && || ++ -- ** // %% $$ ## @@ ~~",
    "I've been told he's there; 'RE you sure? We'Ve a'lL done it. DON'T SHOUT, don't.",
    "    indented    with    spaces\n\n\n\ttabs\t\tand\r\nwindows newlines   trailing   ",
    "Numbers: 1234567890 12,345.67 0.001 1e-9 -42 +7 3..3 3...3 100% 2024-11-23",
    "Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم! שלום עולם! नमस्ते दुनिया!",
    "function add(a, b) { return a + b; } // JavaScript\nSELECT * FROM t WHERE x > 10;",
] * 20


def train_bpe(folder: Path, pre: list, *, vocab_size: int = 400, ignore_merges: bool = False,
              extra_tokens: tuple[str, ...] = (), bos: str | None = None) -> None:
    """A byte-level BPE tokenizer.json with the given pre-tokenizer steps (tokenizers objects)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    if extra_tokens:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra_tokens])
    tok.save(str(folder / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos,
           "eos_token": "<|im_end|>", "unk_token": None, "pad_token": "<|endoftext|>",
           "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE,
           "add_bos_token": bos is not None}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


def train_spm(folder: Path, *, vocab_size: int = 1000, user_symbols: tuple[str, ...] = (),
              dummy_prefix: bool = True, tokenizer_class: str = "LlamaTokenizer") -> None:
    """A Llama-style SentencePiece BPE tokenizer.model (byte fallback, digits split, spaces kept);
    dummy_prefix=False and GemmaTokenizer for Gemma's kind."""
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, character_coverage=1.0,
        remove_extra_whitespaces=False, normalization_rule_name="identity",
        allow_whitespace_only_pieces=True, user_defined_symbols=list(user_symbols),
        add_dummy_prefix=dummy_prefix,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    cfg = {"tokenizer_class": tokenizer_class, "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
           "legacy": False, "clean_up_tokenization_spaces": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


def vocab_size(folder: Path) -> int:
    if (folder / "tokenizer.model").exists():
        import sentencepiece as spm
        return spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).vocab_size()
    tj = json.loads((folder / "tokenizer.json").read_text())
    return max([*tj["model"]["vocab"].values(), *(t["id"] for t in tj["added_tokens"])]) + 1


ARCH_CLASSES = {"llama": ("LlamaConfig", "LlamaForCausalLM"),
                "mistral": ("MistralConfig", "MistralForCausalLM"),
                "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
                "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
                "gemma": ("GemmaConfig", "GemmaForCausalLM"),
                "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),
                "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
                "olmo2": ("Olmo2Config", "Olmo2ForCausalLM"),
                "olmo3": ("Olmo3Config", "Olmo3ForCausalLM"),
                "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM"),
                "granite": ("GraniteConfig", "GraniteForCausalLM"),
                "mixtral": ("MixtralConfig", "MixtralForCausalLM"),
                "qwen3moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM"),
                "qwen2moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM"),
                "olmoe": ("OlmoeConfig", "OlmoeForCausalLM"),
                "phi3": ("Phi3Config", "Phi3ForCausalLM"),
                "deepseek_v2": ("DeepseekV2Config", "DeepseekV2ForCausalLM"),
                "deepseek_v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM"),
                "gpt_oss": ("GptOssConfig", "GptOssForCausalLM")}


def build_model(folder: Path, arch: str, *, seed: int = 0, dtype: str = "float32",
                tie: bool = False, rope: dict | None = None, head_dim: int | None = None,
                n_kv_head: int = 2, n_vocab: int | None = None, sharpen: float = 1.0,
                scales: dict[str, float] | None = None, **extra) -> None:
    """Saves a seeded tiny model into a folder that already holds its tokenizer. sharpen scales
    the output rows: at 64 dims std-0.08 rows give logits of std ~0.6 (top probability under
    1%); times 5 they are peaked as a real model's, so KLD bars and top-1 checks bite.
    scales: parameter-name substring -> factor (an MoE router scaled up routes decisively)."""
    import torch
    import transformers
    cfg_cls, model_cls = (getattr(transformers, n) for n in ARCH_CLASSES[arch])
    rope = dict(rope or {"rope_type": "default"})
    rope.setdefault("rope_theta", 10000.0)
    kw = dict(vocab_size=n_vocab or vocab_size(folder), hidden_size=64, intermediate_size=160,
              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=n_kv_head,
              max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=tie,
              rope_parameters=rope, initializer_range=0.08, bos_token_id=1, eos_token_id=2)
    if head_dim is not None:
        kw["head_dim"] = head_dim
    kw.update(extra)
    config = cfg_cls(**kw)
    torch.manual_seed(seed)
    model = model_cls(config)
    perturb(model, sharpen=sharpen, scales=scales)
    model.to(getattr(torch, dtype)).save_pretrained(folder)


def perturb(model, *, sharpen: float = 1.0, scales: dict[str, float] | None = None,
            norm_names: tuple[str, ...] = ("norm",)) -> None:
    """Realistic, non-trivial norm weights (1 + N(0, 0.2); parameters whose names contain one
    of norm_names) and biases (N(0, 0.1)); output rows times sharpen; named parameters scaled."""
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(n in name for n in norm_names) and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
        model.get_output_embeddings().weight.mul_(sharpen)
        for name, p in model.named_parameters():
            for part, k in (scales or {}).items():
                if part in name:
                    p.mul_(k)
