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


# llama.cpp's converter reads config.json through transformers' AutoConfig, falling back to the
# raw file when that fails; this makes it fail, so the converter sees the file as written
RAW_CONFIG = ("import os, runpy, sys, transformers\n"
              "def refuse(*a, **k): raise ValueError('config.json read as written')\n"
              "transformers.AutoConfig.from_pretrained = refuse\n"
              "sys.argv = sys.argv[1:]\n"
              "sys.path.insert(0, os.path.dirname(sys.argv[0]))\n"
              "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def run_converter(model: Path, out: Path, outtype: str, cache: Path = DEFAULT_CACHE, *,
                  raw_config: bool = False):
    """Runs llama.cpp's convert_hf_to_gguf.py with its own gguf-py; returns the finished process.
    raw_config: the converter reads config.json itself instead of through transformers (whose
    version 5 renames keys the converter still reads, such as GPT-NeoX's rotary_pct)."""
    import os
    root = llamacpp_dir(cache)
    env = dict(os.environ, PYTHONPATH=str(root / "gguf-py"))
    script = [str(root / "convert_hf_to_gguf.py"), str(model), "--outfile", str(out),
              "--outtype", outtype]
    prefix = ["-c", RAW_CONFIG] if raw_config else []
    return subprocess.run([sys.executable, *prefix, *script], env=env, capture_output=True,
                          text=True, check=True)


if __name__ == "__main__":
    print(llamacpp_dir())
