"""llama.cpp's own Python converter, from llama-cpp-python's source distribution on PyPI (the same
version as the installed llama-cpp-python). Used only as an independent reference in tests and
benchmarks; none of its code is part of tinyconvert.

    python -m tests.support.llamacpp_src      # prints the llama.cpp folder
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

from tests.support.smollm2 import DEFAULT_CACHE

WANTED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def _sdist(cache: Path) -> Path:
    ver = version("llama-cpp-python")
    dl = cache / "sdist"
    sdist = dl / f"llama_cpp_python-{ver}.tar.gz"
    if not sdist.exists():
        dl.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                        ":all:", f"llama-cpp-python=={ver}", "-d", str(dl)], check=True)
    return sdist


def _extract(sdist: Path, root: Path, wanted: tuple[str, ...]) -> None:
    prefix = f"llama_cpp_python-{version('llama-cpp-python')}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            rel = member.name.removeprefix(prefix)
            if member.name.startswith(prefix) and rel.startswith(wanted) and member.isfile():
                member.name = rel
                tar.extract(member, root, filter="data")


def llamacpp_dir(cache: Path = DEFAULT_CACHE) -> Path:
    root = cache / f"llama.cpp-{version('llama-cpp-python')}"
    if (root / ".complete").exists():
        return root
    _extract(_sdist(cache), root, WANTED)
    (root / ".complete").touch()
    return root


def vocab_files(dest: Path, cache: Path = DEFAULT_CACHE) -> Path:
    """llama.cpp's own vocabulary-only test files (models/ggml-vocab-*.gguf with .inp texts and
    .out ids) and chat templates (models/templates/), extracted into dest; returns dest/models."""
    _extract(_sdist(cache), dest, ("models/ggml-vocab-", "models/templates/"))
    return dest / "models"


_SERVER = None


def run_converter(model: Path, out: Path, outtype: str, cache: Path = DEFAULT_CACHE, *,
                  raw_config: bool = False) -> subprocess.CompletedProcess:
    """Runs llama.cpp's convert_hf_to_gguf.py with its own gguf-py (in a child of a server that
    imported it once: converter_server); returns the finished run, or raises CalledProcessError
    with its stderr.
    raw_config: the converter reads config.json itself instead of through transformers (whose
    version 5 renames keys the converter still reads, such as GPT-NeoX's rotary_pct): its
    AutoConfig call is made to fail, and it falls back to the raw file."""
    global _SERVER
    from tests.support.converter_server import ConverterServer
    if _SERVER is None or not _SERVER.alive():
        _SERVER = ConverterServer(llamacpp_dir(cache))
    argv = [str(model), "--outfile", str(out), "--outtype", outtype]
    rc, stdout, stderr = _SERVER.run(argv, raw_config=raw_config,
                                     logs=out.with_name(out.name + ".converter"))
    cmd = ["convert_hf_to_gguf.py", *argv]
    if rc != 0:
        raise subprocess.CalledProcessError(rc, cmd, stdout, stderr)
    return subprocess.CompletedProcess(cmd, rc, stdout, stderr)


if __name__ == "__main__":
    print(llamacpp_dir())
