"""hf2gguf: a Hugging Face llama-family checkpoint to a GGUF file that llama.cpp runs."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from tinyconvert.arch import gguf_arch_name
from tinyconvert.atomic import atomic_output, check_output
from tinyconvert.encode import encode_rows
from tinyconvert.formats.checkpoint import open_checkpoint
from tinyconvert.formats.errors import InputError
from tinyconvert.formats.vocab import add_vocab, load_vocab
from tinyconvert.hparams import read_config
from tinyconvert.hub import resolve_model
from tinyconvert.metadata import add_general
from tinyconvert.plan import PlannedTensor, extra_tensors, plan_tensors, resolve_outtype
from tinyconvert.progress import TensorProgress

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}


@dataclass
class ConvertResult:
    path: Path
    source: Path
    outtype: str
    n_tensors: int
    n_bytes: int
    seconds: float
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def hf2gguf(model: str, out: Path, *, outtype: str = "auto", quiet: bool = False,
            model_name: str | None = None) -> ConvertResult:
    if outtype not in OUTTYPES:
        raise InputError(f"unknown --outtype {outtype!r}; valid: {', '.join(OUTTYPES)}")
    start = time.perf_counter()
    out = Path(out)
    folder = resolve_model(model)
    check_output(out, folder)
    cfg = read_config(folder)
    records = open_checkpoint(folder)
    outtype = resolve_outtype(outtype, records)
    planned = extra_tensors(cfg) + plan_tensors(cfg, records, outtype)
    vocab = load_vocab(folder, cfg.n_vocab)

    writer = gguf.GGUFWriter(None, gguf_arch_name(cfg.arch))
    for p in planned:
        writer.add_tensor_info(p.name, p.shape, np.dtype(np.float32), p.qtype.nbytes(p.shape),
                               raw_dtype=gguf.GGMLQuantizationType(p.qtype.ggml_id))
    writer.add_type(gguf.GGUFType.MODEL)
    add_general(writer, folder, model if not Path(model).is_dir() else None, model_name)
    from tinyconvert.hparams import add_hparams
    add_hparams(writer, cfg)
    writer.add_file_type(FILE_TYPES[outtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_vocab(writer, vocab)

    n_bytes = _write(writer, planned, out, quiet)
    fallbacks = [(p.name, p.fallback_from, p.qtype.name) for p in planned if p.fallback_from]
    return ConvertResult(out, folder, outtype, len(planned), n_bytes, time.perf_counter() - start,
                         fallbacks, list(vocab.notes))


CHUNK_BYTES = 8 << 20


def _chunks(p: PlannedTensor):
    """Row ranges of about CHUNK_BYTES of source data, on multiples of p.align rows."""
    row_len = p.shape[-1] if len(p.shape) > 1 else 1
    step = max(1, CHUNK_BYTES // max(1, row_len * 4) // p.align) * p.align
    for r0 in range(0, p.n_rows, step):
        yield r0, min(p.n_rows, r0 + step)


def _write(writer: gguf.GGUFWriter, planned: list[PlannedTensor], out: Path, quiet: bool) -> int:
    """gguf-py writes the header, KV data and tensor infos; the data then streams in row chunks,
    each tensor starting on the file's alignment, exactly where the tensor infos say."""
    total = sum(p.qtype.nbytes(p.shape) for p in planned)
    with atomic_output(out) as tmp, TensorProgress(len(planned), total, quiet) as bar:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        f = writer.fout[0]
        align = writer.data_alignment
        for p in planned:
            f.write(bytes(-f.tell() % align))
            written = 0
            for r0, r1 in _chunks(p):
                data = encode_rows(p.read_rows(r0, r1), p.src_dtype, p.qtype)
                f.write(memoryview(data).cast("B"))
                written += data.nbytes
            if written != p.qtype.nbytes(p.shape):
                raise RuntimeError(f"{p.name}: wrote {written} bytes, planned "
                                   f"{p.qtype.nbytes(p.shape)}")
            bar.advance(p.name, written)
        f.write(bytes(-f.tell() % align))
        writer.close()
    return out.stat().st_size
