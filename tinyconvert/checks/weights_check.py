"""The weights check: a float file (every tensor f32/f16/bf16) checked without running a model.

Such a file holds the reference's weights up to one rounding, so instead of running both models
(verify: torch, two forward passes) it checks that the file is the reference, part by part:

1. every key the converter derives from config.json (or, for a GGUF reference, every
   `<arch>.*` key) has the same value, and the runtime's hyperparameters read from the file equal
   those llama.cpp would read from the converter's keys (`hparams_from_config(as_llamacpp)`);
2. the same tensors, names and shapes; each tensor's sampled rows (weights_sample.py) are
   bit-for-bit the reference's rows, read through the plan verify's reference uses (transforms
   applied), rounded to the file's type;
3. the file's vocabulary tokenizes verify's text as the reference tokenizer does, its vocabulary
   arrays equal the reference's, and the chat checks pass (checks/tokenizers/chat.py).

KL divergence is not measured (`tinyconvert verify` does that)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields as dc_fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tinyconvert.checks.weights_sample import FLOAT_IDS, RefTensor, compare_tensor, stored_rows
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.gguf_model import open_gguf


@dataclass
class WeightsReport:
    types: dict[str, int]                # the file's tensor types -> count
    n_tensors: int
    n_sampled: int                       # tensors compared on a sample of rows (others whole)
    n_elements: int                      # elements compared in all
    mismatches: list[str]                # keys, hyperparameters, tensors
    vocab_mismatches: list[str]
    chat: list = field(default_factory=list)   # checks/tokenizers/chat.py findings (HF references)

    @property
    def passed(self) -> bool:
        return not self.mismatches and not self.vocab_mismatches and not any(
            f.fails for f in self.chat)

    def problems(self) -> list[str]:
        return self.mismatches + self.vocab_mismatches + [
            f"chat {f.check}: {f.message}" for f in self.chat if f.fails]

    def summary_line(self) -> str:
        types = "/".join(sorted(self.types))
        if not self.passed:
            return (f"check: FAIL the file is not the source at {types}: "
                    f"{(self.problems() or ['?'])[0]}")
        how = "sampled rows" if self.n_sampled else "every element"
        return (f"check: weights match the source at {types} ({self.n_tensors} tensors, {how}), "
                f"hyper-parameters and tokenizer agree, chat template same; run "
                f"'tinyconvert verify' for KL divergence")

    def as_json(self) -> dict:
        return {"check": "weights", "passed": self.passed, "kld_measured": False,
                "types": self.types, "tensors": self.n_tensors,
                "tensors_sampled": self.n_sampled, "elements_compared": self.n_elements,
                "mismatches": self.mismatches, "vocab_mismatches": self.vocab_mismatches,
                "chat": [f.as_json() for f in self.chat]}


def float_only(model) -> bool:
    """Every tensor of an opened GGUF is f32/f16/bf16."""
    return all(t.ggml_type in FLOAT_IDS for t in model.tensors)


def _hf_reference(folder: Path, loras) -> SimpleNamespace:
    from tinyconvert.archs.config import gguf_fields
    from tinyconvert.pipeline.write.encode import to_f32
    from tinyconvert.pipeline.sources import hf_plan, hparams_from_config
    cfg, planned = hf_plan(folder, loras)

    def rows(p):
        def read(r0, r1):
            x = p.read_rows(r0, r1)
            if p.src_dtype == "TMAC":
                return x.dequantize()
            if p.src_dtype == "RAW":
                return p.qtype.dequantize(x)
            return to_f32(x, p.src_dtype)
        return read
    return SimpleNamespace(
        kind="hf", path=folder, keys=gguf_fields(cfg), fields=None,
        hparams=hparams_from_config(cfg), llamacpp=hparams_from_config(cfg, as_llamacpp=True),
        tensors={n: RefTensor(p.shape, rows(p), p.align) for n, p in planned.items()})


def _gguf_reference(path: Path) -> SimpleNamespace:
    from tinyconvert.runtime.hparams import from_gguf_fields
    model = open_gguf(path)
    fields = model.values()
    arch = fields.get("general.architecture", "")
    hp = from_gguf_fields(fields, model.magic)
    return SimpleNamespace(
        kind="gguf", path=path, fields=fields, hparams=hp, llamacpp=hp,
        keys={k: v for k, v in fields.items() if k.startswith(f"{arch}.")},
        tensors={t.name: RefTensor(t.shape, _gguf_rows(model, t)) for t in model.tensors})


def _gguf_rows(model, t):
    def read(r0, r1):
        from tinyconvert.quant import qtype_by_id
        deq = qtype_by_id(t.ggml_type).dequantize
        raw = model.tensor_bytes(t).reshape(t.n_elements // t.ne[0], -1)
        if len(t.shape) <= 1:             # the plan's rows of one value each
            return deq(raw).reshape(-1, 1)[r0:r1]
        return deq(raw[r0:r1])
    return read


def _same(a, b) -> bool:
    """Equal as the file stores them: floats at float32, sequences element by element."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)) and isinstance(b, (list, tuple, np.ndarray)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return np.float32(a) == np.float32(b) or (a != a and b != b)
        except (TypeError, ValueError):
            return False
    return a == b


def key_mismatches(ref, fields: dict, hp) -> list[str]:
    """The converter's keys, then the runtime's reading of them."""
    out = [f"key {k}: {fields.get(k)!r} in the file, the reference gives {v!r}"
           for k, v in ref.keys.items() if not _same(fields.get(k), v)]
    out += [f"hyper-parameter {f.name}: {getattr(hp, f.name)!r} from the file, the reference "
            f"gives {getattr(ref.llamacpp, f.name)!r}" for f in dc_fields(hp)
            if not _same(getattr(hp, f.name), getattr(ref.llamacpp, f.name))]
    return out


def tensor_mismatches(ref, model, names: list[str]) -> tuple[list[str], int, int]:
    """(problems, tensors sampled, elements compared)"""
    infos = {t.name: t for t in model.tensors}
    out = [f"tensor {n}: in the reference, missing from the file" for n in ref.tensors
           if n not in infos]
    out += [f"tensor {n}: in the file, not in the reference" for n in names
            if n not in ref.tensors]
    n_sampled = n_elements = 0
    for name in names:
        r, t = ref.tensors.get(name), infos[name]
        if r is None:
            continue
        if tuple(r.shape) != tuple(t.shape):
            out.append(f"tensor {name}: shape {list(t.shape)} in the file, the reference has "
                       f"{list(r.shape)}")
            continue
        res = compare_tensor(name, r, stored_rows(model, t, r.shape), t.ggml_type)
        n_sampled += res.sampled
        n_elements += res.n_elements
        if res.mismatch:
            out.append(res.mismatch)
    return out, n_sampled, n_elements


def tokenizer_mismatches(ref, fields: dict, tok, encoder=None) -> list[str]:
    """verify's tokenization test on its text (tok: the reference's tokenizer; encoder: the
    file's), and the token texts themselves (an edited token the text never uses shows only
    there)."""
    from tinyconvert.checks.tokenizers.vocab_check import (_vocab_arrays_differ, default_text,
                                                vocab_mismatches)
    text = default_text()
    cand = SimpleNamespace(fields=fields)
    found = vocab_mismatches(ref, cand, text, tok.encode(text), encoder)
    same = (_vocab_arrays_differ(ref, cand) if ref.kind == "gguf"
            else _token_texts_differ(tok, fields.get("tokenizer.ggml.tokens") or []))
    return found + [m for m in same if m not in found]


def _token_texts_differ(tok, texts) -> list[str]:
    """The file's token texts against the HF tokenizer's own (ids it does not know, padding the
    converter adds up to vocab_size, are left out)."""
    own = tok.backend
    known = own.get_piece_size() if hasattr(own, "get_piece_size") else own.get_vocab_size(True)
    if hasattr(own, "get_vocab"):              # tokenizers: the whole table in one call
        wants = [None] * known
        for text, i in own.get_vocab(with_added_tokens=True).items():
            if 0 <= i < known:
                wants[i] = text
    else:
        wants = [own.id_to_piece(i) for i in range(known)]
    head = list(texts[:known])
    for i, (text, want) in enumerate(() if head == wants[:len(head)] else zip(head, wants)):
        if want is not None and want != text:
            return [f"token {i}: {text!r} in the file, the reference tokenizer has {want!r}"]
    if len(texts) < known:
        return [f"the file has {len(texts)} tokens, the reference tokenizer {known}"]
    return []


def check_weights(reference: str, candidate: Path, *, lora=(), lora_scale=(),
                  opened=None) -> WeightsReport:
    """The file candidate against reference (HF checkpoint folder, hub id, or GGUF file);
    lora: adapters merged into an HF reference, as verify's. opened: candidate, already open."""
    from tinyconvert.pipeline.gguf_checks import check_runnable
    from tinyconvert.runtime.hparams import from_gguf_fields
    model = opened or open_gguf(Path(candidate))
    fields = model.values()
    check_runnable(Path(candidate), fields, {t.name: t for t in model.tensors})
    other = next((t for t in model.tensors if t.ggml_type not in FLOAT_IDS), None)
    if other is not None:
        raise InputError(f"--check weights needs a file of f32/f16/bf16 tensors; {other.name} "
                         f"is {model.type_name(other.ggml_type)} (use --check model)")
    ref = _open_reference(reference, lora, lora_scale)
    hp = from_gguf_fields(fields, model.magic)
    names = [t.name for t in model.tensors]
    tensors, n_sampled, n_elements = tensor_mismatches(ref, model, names)
    from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
    tok, chat, (encoder, broken) = tokenizer_for(ref), [], _encoder(fields)
    if ref.kind == "hf" and not broken:
        from tinyconvert.checks.tokenizers.chat import check_against_hf
        chat = check_against_hf(ref.path, fields, hf=tok, encoder=encoder)
    types: dict[str, int] = {}
    for t in model.tensors:
        types[FLOAT_IDS[t.ggml_type]] = types.get(FLOAT_IDS[t.ggml_type], 0) + 1
    return WeightsReport(types, len(names), n_sampled, n_elements,
                         key_mismatches(ref, fields, hp) + tensors,
                         broken or tokenizer_mismatches(ref, fields, tok, encoder), chat)


def _encoder(fields: dict):
    """(the file's tokenizer as llama.cpp runs it, built once for the vocabulary and chat
    checks, or None for a kind not rebuilt here: those checks then say so themselves;
    [the problem] when the vocabulary is broken: tokens its merges need are missing, ...)"""
    from tinyconvert.checks.tokenizers.gguf_vocab import text_encoder
    try:
        return text_encoder(fields), []
    except InputError:
        return None, []
    except Exception as e:  # noqa: BLE001 - tokenizers raises bare Exceptions
        return None, [f"the file's vocabulary cannot be rebuilt into a tokenizer "
                      f"({type(e).__name__}: {str(e)[:120]})"]


def _open_reference(reference: str, lora, lora_scale) -> SimpleNamespace:
    p = Path(reference)
    if p.is_file():
        if lora:
            raise InputError(f"{reference}: --lora applies to a Hugging Face checkpoint "
                             f"reference, not a GGUF file")
        return _gguf_reference(p)
    from tinyconvert.io.hub import resolve_model
    from tinyconvert.lora.merge import open_loras
    return _hf_reference(resolve_model(str(reference)), open_loras(lora, lora_scale))
