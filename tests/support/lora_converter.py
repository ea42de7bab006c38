"""llama.cpp's own LoRA converter (convert_lora_to_gguf.py, from the same llama-cpp-python source
distribution as llamacpp_src's convert_hf_to_gguf.py, whose conversion/ package and gguf-py it
imports). Used only as an independent reference in tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.llamacpp_src import _extract, _sdist, llamacpp_dir
from tests.support.smollm2 import DEFAULT_CACHE

SCRIPT = "convert_lora_to_gguf.py"


def lora_converter(dest: Path, cache: Path = DEFAULT_CACHE) -> Path:
    """The script, extracted into dest (the shared llama.cpp folder stays as it is)."""
    if not (dest / SCRIPT).exists():
        _extract(_sdist(cache), dest, (SCRIPT,))
    return dest / SCRIPT


DRIVER = """
import runpy, sys
script, jobs = sys.argv[1], sys.argv[2:]
for i in range(0, len(jobs), 4):
    adapter, base, out, outtype = jobs[i:i + 4]
    sys.argv = [script, "--base", base, "--outfile", out, "--outtype", outtype, adapter]
    runpy.run_path(script, run_name="__main__")
"""


def run_lora_converter(jobs: list[tuple[Path, Path, Path]], *, outtype: str = "f32",
                       cache: Path = DEFAULT_CACHE) -> subprocess.CompletedProcess:
    """Converts each (adapter, base, out) offline, in one process (torch and transformers are
    imported once), with llama.cpp's conversion/ and gguf-py first on the path; raises
    CalledProcessError (with its stderr) when one fails."""
    root = llamacpp_dir(cache)
    script = lora_converter(jobs[0][2].parent / "llamacpp-lora-converter", cache)
    env = dict(os.environ, NO_LOCAL_GGUF="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(root), str(root / "gguf-py")]))
    argv = [str(x) for job in jobs for x in (*job, outtype)]
    return subprocess.run([sys.executable, "-c", DRIVER, str(script), *argv], env=env,
                          capture_output=True, text=True, check=True)
