"""MODEL arguments: a local checkpoint folder, or a Hugging Face hub repo id (normal cache,
HF_HUB_OFFLINE honoured)."""
from __future__ import annotations

import re
from pathlib import Path

from tinyconvert.formats.errors import InputError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
PATTERNS = ["*.json", "*.safetensors", "*.bin", "tokenizer.model", "*.jinja", "*.txt", "README.md",
            "additional_chat_templates/*"]


def resolve_model(model: str) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise InputError(f"{model}: expected a checkpoint folder, got a file")
    if not REPO_ID.match(model) or model.startswith((".", "/", "~")):
        raise InputError(f"{model}: no such folder (and not a hub repo id like 'org/name')")
    return _download(model)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError
    try:
        return Path(snapshot_download(repo_id, allow_patterns=PATTERNS))
    except LocalEntryNotFoundError:
        raise InputError(f"{repo_id}: not a local folder, not in the Hugging Face cache, and the "
                         f"hub cannot be reached (offline?); download it first or pass a "
                         f"folder") from None
    except RepositoryNotFoundError:
        raise InputError(f"{repo_id}: no such repository on the Hugging Face hub (or it is "
                         f"gated: log in with `hf auth login`)") from None
    except OSError as e:
        raise InputError(f"{repo_id}: download failed ({e})") from None
