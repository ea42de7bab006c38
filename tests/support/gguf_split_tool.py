"""llama.cpp's own llama-gguf-split, compiled for tests from llama-cpp-python's source
distribution (tools/gguf-split/gguf-split.cpp, unchanged) and linked against the libllama and
libggml that the installed llama-cpp-python ships. The wheel does not ship the tool, and building
it with CMake means building all of llama.cpp; the one file needs only two stand-in headers:
common.h for the three split key names (the same strings as llama.cpp's common.h) and
build-info.h for the version banner. Used only as the independent reference for split/merge
bytes; none of its code is part of tinyconvert.

    python -m tests.support.gguf_split_tool DEST     # prints the binary's path
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

from tests.support.llamacpp_src import _sdist
from tests.support.smollm2 import DEFAULT_CACHE

SOURCES = ("tools/gguf-split/gguf-split.cpp", "include/", "ggml/include/")
COMMON_H = """#pragma once
static const char * const LLM_KV_SPLIT_NO            = "split.no";
static const char * const LLM_KV_SPLIT_COUNT         = "split.count";
static const char * const LLM_KV_SPLIT_TENSORS_COUNT = "split.tensors.count";
"""
BUILD_INFO_H = """#pragma once
static int llama_build_number(void) { return 0; }
static const char * llama_commit(void) { return "sdist"; }
static const char * llama_compiler(void) { return "c++"; }
static const char * llama_build_target(void) { return "tests"; }
"""


def _extract(dest: Path) -> Path:
    prefix = f"llama_cpp_python-{version('llama-cpp-python')}/vendor/llama.cpp/"
    with tarfile.open(_sdist(DEFAULT_CACHE)) as tar:
        for member in tar:
            rel = member.name.removeprefix(prefix)
            if member.name.startswith(prefix) and rel.startswith(SOURCES) and member.isfile():
                member.name = rel
                tar.extract(member, dest, filter="data")
    return dest


def build(dest: Path) -> Path:
    """Compiles the tool into dest (a few seconds); returns its path."""
    import llama_cpp
    binary = dest / "llama-gguf-split"
    if binary.exists():
        return binary
    src = _extract(dest / "src")
    shim = dest / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "common.h").write_text(COMMON_H)
    (shim / "build-info.h").write_text(BUILD_INFO_H)
    lib = Path(llama_cpp.__file__).parent / "lib"
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        raise RuntimeError("no C++ compiler (c++ or g++) to build llama-gguf-split")
    subprocess.run([cxx, "-O1", "-std=c++17", f"-I{shim}", f"-I{src / 'include'}",
                    f"-I{src / 'ggml' / 'include'}", str(src / SOURCES[0]), f"-L{lib}",
                    "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{lib}", "-o", str(binary)],
                   check=True, capture_output=True)
    return binary


def run(binary: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *map(str, args)], check=True, capture_output=True,
                          text=True)


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
