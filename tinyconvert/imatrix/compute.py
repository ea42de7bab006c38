"""compute_imatrix: llama-imatrix's accumulation (compute_imatrix + collect_imatrix) run on the
bundled runtime.

The text is tokenized as llama.cpp does (BOS if the vocabulary adds one, no EOS, special tokens
not parsed) and cut into chunks of chunk_size tokens, each an independent sequence at positions
0.. whose first token is replaced by BOS; every position runs through the last layer. The model
streams one layer at a time: all chunks' hidden states pass through layer i before layer i+1's
weights are loaded, so each weight is read once. Sums are float64 (llama.cpp adds float32 in
token order; the difference is rounding) and are stored as float32."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tinyconvert.formats.errors import InputError
from tinyconvert.imatrix.collect import RecordingWeights
from tinyconvert.imatrix.files import Entry, Imatrix

DEFAULT_CHUNK = 512
MIN_CHUNK = 16         # collect_imatrix ignores matmuls over fewer than 16 tokens


@dataclass(frozen=True)
class Chunks:
    ids: list[list[int]]      # n_chunk lists of chunk_size ids, BOS in front where added
    n_tokens: int             # tokens the whole text gave


def make_chunks(ids: list[int], bos: int | None, chunk_size: int, chunks: int | None = None,
                from_chunk: int = 0) -> Chunks:
    """compute_imatrix's chunking, with its refusals."""
    if chunk_size < MIN_CHUNK:
        raise InputError(f"--chunk-size {chunk_size} is too small: llama.cpp records no matmul "
                         f"over fewer than {MIN_CHUNK} tokens")
    if chunks is not None and chunks < 1:
        raise InputError(f"--chunks {chunks}: give at least 1")
    if from_chunk < 0:
        raise InputError(f"--from-chunk {from_chunk} is negative")
    n = len(ids)
    if from_chunk > 0:
        if (from_chunk + 2) * chunk_size >= n:
            raise InputError(f"the text gives {n} tokens: not enough left after skipping "
                             f"{from_chunk} chunks of {chunk_size}")
        ids = ids[from_chunk * chunk_size:]
    if len(ids) < 2 * chunk_size:
        raise InputError(f"the text gives {len(ids)} tokens; llama-imatrix needs at least "
                         f"{2 * chunk_size} (two chunks of {chunk_size}): give more text or a "
                         f"smaller --chunk-size")
    n_chunk = len(ids) // chunk_size if chunks is None else min(chunks, len(ids) // chunk_size)
    out = []
    for c in range(n_chunk):
        part = ids[c * chunk_size:(c + 1) * chunk_size]
        out.append([bos, *part[1:]] if bos is not None else part)
    return Chunks(out, n)


def _bos(tok) -> int | None:
    """The BOS the tokenizer puts in front of a text, if it puts one (llama.cpp's add_bos)."""
    empty = tok.encode("")
    return empty[0] if empty and empty[0] == tok.bos_id else None


def _ids(tok, text: str) -> list[int]:
    """llama.cpp's common_tokenize(add_special=true); llama-imatrix refuses vocabularies that
    append EOS."""
    if tok.eos_append is not None:
        raise InputError("this vocabulary appends EOS to every text (an embedding model); "
                         "llama-imatrix refuses it too")
    return tok.encode(text)


@torch.no_grad()
def run_chunks(src, chunks: list[list[int]], *, process_output: bool = False,
               progress=None) -> RecordingWeights:
    """Runs every chunk through the model, layer by layer; returns the recorder."""
    from tinyconvert.imatrix import mla
    from tinyconvert.runtime.model import block, embed, output_logits, rope_tables
    from tinyconvert.runtime.norms import norm
    hp, get = src.hparams, RecordingWeights(src.get, process_output)
    T = len(chunks[0])
    ropes = rope_tables(hp, get, 0, T)
    hs = [embed(hp, get, ids) for ids in chunks]
    for i in range(hp.n_layer):
        for c, h in enumerate(hs):
            if mla.is_mla(get, i):          # the absorbed-attention inputs llama.cpp multiplies
                xn = norm(hp, get.plain, f"blk.{i}.attn_norm", h)
                mla.record(get.sums, hp, get.plain, i, xn, *ropes[i])
            hs[c] = block(hp, get, i, h, *ropes[i])
            if progress is not None:
                progress(i, c)
        get.forget(f"blk.{i}.")
    if process_output:
        for h in hs:
            output_logits(hp, get, h)
    return get


def compute_imatrix(model: str | Path, text: str, *, chunk_size: int = DEFAULT_CHUNK,
                    chunks: int | None = None, from_chunk: int = 0,
                    process_output: bool = False, dataset: str = "",
                    quiet: bool = True) -> Imatrix:
    """model: HF checkpoint folder, hub id or GGUF file. dataset: the name recorded in the file
    (llama-imatrix records the -f path)."""
    from tinyconvert.checks.tokenizers.tokenizer import tokenizer_for
    from tinyconvert.pipeline.sources import open_source
    src = open_source(model)
    if src.hparams.ssm:
        raise InputError("importance matrices are for transformer blocks; this model is a "
                         "state-space model")
    tok = tokenizer_for(src)
    ch = make_chunks(_ids(tok, text), _bos(tok), chunk_size, chunks, from_chunk)
    with _Progress(src.hparams.n_layer * len(ch.ids), quiet) as bar:
        rec = run_chunks(src, ch.ids, process_output=process_output, progress=bar.step)
    s = rec.sums
    entries = {n: Entry(s.sums[n].astype("float32"), s.counts[n].copy()) for n in s.sums}
    if not entries:
        raise InputError(f"{model}: no weight matrix of its blocks was multiplied by; nothing "
                         f"to record")
    n_done = max(int(c.max()) for c in s.counts.values()) // chunk_size
    return Imatrix(entries, [dataset] if dataset else [], n_done, chunk_size)


class _Progress:
    """A rich bar over (layer, chunk) steps on a terminal; nothing with quiet."""

    def __init__(self, total: int, quiet: bool):
        import sys
        self.total, self.on = total, not quiet and sys.stderr.isatty()
        self._p = None

    def __enter__(self):
        if self.on:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
            self._p = Progress(TextColumn("imatrix layer {task.fields[layer]}"), BarColumn(),
                               TextColumn("{task.completed}/{task.total} layer-chunks"),
                               TimeRemainingColumn(), transient=True)
            self._p.__enter__()
            self._task = self._p.add_task("imatrix", total=self.total, layer=0)
        return self

    def step(self, layer: int, chunk: int) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=1, layer=layer)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)
        return False
