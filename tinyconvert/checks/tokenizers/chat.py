"""Chat fidelity: does a GGUF file chat like its Hugging Face checkpoint?

- template: a few conversations rendered with the GGUF's `tokenizer.chat_template` and tokenized as
  llama.cpp's chat path does (common/chat.cpp drops a leading BOS text when the vocabulary adds
  BOS itself, a trailing EOS text when it adds EOS, then tokenizes with special tokens) give the
  ids transformers' `apply_chat_template(tokenize=True)` gives;
- end of generation: every id the HF side stops on (generation_config.json's eos list, the
  tokenizer's eos) ends generation in llama.cpp (its EOG set, checks/tokenizers/special_tokens.py);
- end of turn: a special token a template writes right after an assistant message ends
  generation;
- BOS: a consumer that tokenizes the rendered prompt as plain text with BOS added (llama-cpp-python's
  chat formatter, raw prompts) does not send two BOS tokens. llama.cpp's own chat path strips the
  template's BOS, so this one is a warning, not a failure.

Templates are rendered with jinja2 in a sandbox, as transformers renders them (llama.cpp has a
jinja engine of its own; templates that use features only one of them has are not modelled).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path


REPLY = "The answer is 42."
CONVERSATIONS = (
    ("system, user", [{"role": "system", "content": "You are terse."},
                      {"role": "user", "content": "What is six times seven?"}], True),
    ("user, assistant, user", [{"role": "user", "content": "Hi there"},
                               {"role": "assistant", "content": REPLY},
                               {"role": "user", "content": "And 6 * 8?"}], True),
    ("user, assistant", [{"role": "user", "content": "What is six times seven?"},
                         {"role": "assistant", "content": REPLY}], False),
)


@dataclass(frozen=True)
class ChatFinding:
    check: str                       # template, eog, end_of_turn, bos
    message: str
    fails: bool = True

    def as_json(self) -> dict:
        return {"check": self.check, "message": self.message, "fails": self.fails}


def render(template: str, messages: list[dict], *, add_generation_prompt: bool,
           tokens: dict[str, str]) -> str:
    """transformers' rendering: sandboxed jinja2, trimmed blocks, loop controls, tojson."""
    return _compiled(template).render(messages=messages,
                                      add_generation_prompt=add_generation_prompt, **tokens)


@functools.lru_cache(maxsize=8)
def _compiled(template: str):
    """The template compiled once (a check renders it a dozen times); a template that does not
    compile raises here each time it is asked for (errors are not cached)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(msg):
        raise TemplateError(msg)
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False,
                                                                  indent=indent)
    env.globals.update(raise_exception=raise_exception,
                       strftime_now=lambda f: __import__("datetime").datetime.now().strftime(f))
    return env.from_string(template)


def _try_render(template, messages, gen, tokens) -> tuple[str | None, str | None]:
    """(text, None), or (None, the error) for a template that fails: reported, never raised."""
    try:
        return render(template, messages, add_generation_prompt=gen, tokens=tokens), None
    except Exception as e:              # a template's own errors are any Python exception
        return None, (str(e).splitlines() or [type(e).__name__])[0][:120]


class GgufChat:
    """The GGUF side: its template, vocabulary and EOG set, as llama.cpp uses them."""

    def __init__(self, fields: dict, encoder=None):
        """encoder: gguf_vocab.text_encoder(fields), when the caller has built it already."""
        from tinyconvert.checks.tokenizers.gguf_vocab import framing, text_encoder
        from tinyconvert.checks.tokenizers.special_tokens import special_tokens
        self.fields, self.template = fields, fields.get("tokenizer.chat_template")
        self.texts = fields["tokenizer.ggml.tokens"]
        self.encoder, self.frame = encoder or text_encoder(fields), framing(fields)
        specials = special_tokens(fields)
        self.eog, self.special = specials.eog, specials.special
        self.tokens = {f"{name}_token": self._text(f"tokenizer.ggml.{key}_token_id")
                       for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"),
                                         ("pad", "padding"))}

    def _text(self, key: str) -> str:
        tid = self.fields.get(key)
        return self.texts[int(tid)] if tid is not None and 0 <= int(tid) < len(self.texts) else ""

    def llamacpp_ids(self, rendered: str) -> list[int]:
        """common/chat.cpp, then llama_tokenize(add_special=true, parse_special=true)."""
        bos, eos = self.tokens["bos_token"], self.tokens["eos_token"]
        if self.frame.bos is not None and bos and rendered.startswith(bos):
            rendered = rendered[len(bos):]
        if self.frame.eos is not None and eos and rendered.endswith(eos):
            rendered = rendered[:-len(eos)]
        return self.raw_ids(rendered)

    def raw_ids(self, rendered: str) -> list[int]:
        ids = self.encoder.encode_as_ids(rendered)
        head = [self.frame.bos] if self.frame.bos is not None else []
        tail = [self.frame.eos] if self.frame.eos is not None else []
        return head + ids + tail


def _turn_end(chat: GgufChat) -> list[ChatFinding]:
    """A special token written right after an assistant message must end generation (a template
    that writes plain text or nothing there leaves stopping to the model's own EOS)."""
    if not chat.template:
        return []
    _, messages, _ = CONVERSATIONS[2]
    text, err = _try_render(chat.template, messages, False, chat.tokens)
    if err is not None or REPLY not in text:
        return []
    after = text[text.rindex(REPLY) + len(REPLY):].lstrip()
    ids = chat.encoder.encode_as_ids(after) if after else []
    if not ids or ids[0] in chat.eog or ids[0] not in chat.special:
        return []
    return [ChatFinding("end_of_turn", f"the template ends an assistant turn with "
                        f"{chat.texts[ids[0]]!r}, which llama.cpp does not treat as end of "
                        f"generation")]


def _bos_doubled(chat: GgufChat) -> list[ChatFinding]:
    bos = chat.frame.bos
    if not chat.template:
        return []
    for name, messages, gen in CONVERSATIONS:
        text, err = _try_render(chat.template, messages, gen, chat.tokens)
        if err is None:
            ids = chat.raw_ids(text)
            if bos is not None and ids[:2] == [bos, bos]:
                return [ChatFinding("bos", "the template starts with BOS and the file adds BOS: "
                                    "llama.cpp's chat path strips one, but consumers that "
                                    "tokenize the rendered prompt (llama-cpp-python's chat "
                                    "formatter, raw prompts) send two", fails=False)]
    return []


def _open(fields: dict, encoder=None) -> GgufChat | ChatFinding:
    from tinyconvert.formats.errors import InputError
    try:
        return GgufChat(fields, encoder)
    except InputError as e:             # a vocabulary not rebuilt here (gemma4, rwkv, ...)
        return ChatFinding("template", f"not checked: {e}", fails=False)


def check_file(fields: dict) -> list[ChatFinding]:
    """The checks that need only the file (set-metadata --chat-template-file)."""
    chat = _open(fields)
    if isinstance(chat, ChatFinding):
        return [chat]
    if not chat.template:
        return []
    findings = []
    for name, messages, gen in CONVERSATIONS:
        _, err = _try_render(chat.template, messages, gen, chat.tokens)
        if err is not None and "system" not in name:
            findings.append(ChatFinding("template", f"{name}: the template fails: {err}"))
    return findings + _turn_end(chat) + _bos_doubled(chat)


def _hf_stop_ids(folder: Path, tok) -> set[int]:
    ids = set(i for i in (tok.eos_ids or ()) if i is not None)
    path = folder / "generation_config.json"
    if path.is_file():
        eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids


def _template_findings(chat: GgufChat, hf, hf_tokens: dict) -> list[ChatFinding]:
    findings = []
    for name, messages, gen in CONVERSATIONS:
        want_text, want_err = _try_render(hf.chat_template, messages, gen, hf_tokens)
        got_text, got_err = _try_render(chat.template, messages, gen, chat.tokens)
        if want_err is not None or got_err is not None:
            if (want_err is None) != (got_err is None):
                findings.append(ChatFinding("template", f"{name}: renders on one side only "
                                            f"({want_err or got_err})"))
            continue
        want, got = hf.encode(want_text, add_special=False), chat.llamacpp_ids(got_text)
        if want != got:
            at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b),
                      min(len(want), len(got)))
            findings.append(ChatFinding("template", f"{name}: llama.cpp gets {len(got)} tokens, "
                                        f"transformers {len(want)}; first difference at token "
                                        f"{at} ({_show(got, at, chat.texts)} vs "
                                        f"{_show(want, at, chat.texts)})"))
    return findings


def _show(ids: list[int], at: int, texts) -> str:
    return repr(texts[ids[at]]) if at < len(ids) and 0 <= ids[at] < len(texts) else "end"


def check_against_hf(folder: Path, fields: dict, hf=None, encoder=None) -> list[ChatFinding]:
    """All checks, with the HF checkpoint's tokenizer (hf: already loaded from folder),
    template and generation config. encoder: the file's, when already built."""
    from tinyconvert.checks.tokenizers.tokenizer import hf_tokenizer
    hf = hf or hf_tokenizer(Path(folder))
    chat = _open(fields, encoder)
    if isinstance(chat, ChatFinding):
        return [chat]
    findings: list[ChatFinding] = []
    if hf.chat_template and not chat.template:
        findings.append(ChatFinding("template", "the checkpoint has a chat template and the "
                                    "GGUF file has none"))
    elif hf.chat_template and (Path(folder) / "tokenizer.json").is_file():
        # (with only a tokenizer.model, transformers' special-token and space handling around
        # added tokens is not reproduced here, so the token comparison is left out)
        findings += _template_findings(chat, hf, hf_special_texts(Path(folder), hf))
    for tid in sorted(_hf_stop_ids(Path(folder), hf)):
        if tid not in chat.eog:
            shown = chat.texts[tid] if 0 <= tid < len(chat.texts) else "?"
            findings.append(ChatFinding("eog", f"transformers stops on id {tid} ({shown!r}); "
                                        f"llama.cpp does not end generation on it"))
    return findings + _turn_end(chat) + _bos_doubled(chat)


def hf_special_texts(folder: Path, hf) -> dict[str, str]:
    """bos/eos/unk/pad token strings as transformers passes them to a template."""
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out = {}
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = cfg.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if value is None and name == "bos_token" and hf.bos_id is not None:
            value = hf.token_text(hf.bos_id)
        out[name] = value or ""
    return out
