"""The general.* keys: name, basename, size_label, finetune, license, ... from the model card,
config and folder name (gguf-py's Metadata heuristics, as llama.cpp's converter uses them)."""
from __future__ import annotations

from pathlib import Path

import gguf

from tinyconvert.formats.gguf_notes import gguf_warnings


def add_general(writer: gguf.GGUFWriter, folder: Path, repo_id: str | None,
                model_name: str | None, extra_params: int = 0) -> list[str]:
    """Call after every tensor info is added: the size label counts their parameters, less
    extra_params (PowerInfer's predictors are not part of the model's size). Returns gguf-py's
    warnings as notes."""
    notes: list[str] = []
    total, shared, expert, n_expert = writer.get_total_parameter_count()
    total, shared = total - extra_params, shared - extra_params
    with gguf_warnings(notes):
        md = gguf.Metadata.load(None, folder, model_name, total)
    if md.name is None:
        md.name = repo_id or folder.resolve().name
    if md.size_label is None and total > 0:
        md.size_label = gguf.size_label(total, shared, expert, n_expert)
    with gguf_warnings(notes):
        md.set_gguf_meta_model(writer)
    return notes
