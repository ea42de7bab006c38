"""llama.cpp's converter with its imports paid once per test session.

Each run of convert_hf_to_gguf.py spends about three seconds importing torch, transformers and its
own modules before it reads a tensor, and the tests run it about a hundred times. A server process
imports it once (with llama.cpp's own gguf-py first on its path, as the script expects) and forks a
child per conversion, so every conversion still starts from a clean copy of the freshly imported
modules and cannot see another's state. The server never computes anything itself, so no torch
thread pool exists when it forks.

Protocol: one JSON line per request on the server's stdin ({"argv": [...], "raw_config": bool,
"stdout": path, "stderr": path}), one JSON line back ({"rc": int}).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SERVER = r"""
import json, os, sys, traceback
root = sys.argv[1]
sys.path.insert(0, root)
import transformers
import convert_hf_to_gguf

def refuse(*a, **k):
    raise ValueError("config.json read as written")

def child(req):
    out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1); os.dup2(err, 2)
    sys.stdout = os.fdopen(1, "w", closefd=False); sys.stderr = os.fdopen(2, "w", closefd=False)
    if req["raw_config"]:
        transformers.AutoConfig.from_pretrained = refuse
    sys.argv = [convert_hf_to_gguf.__file__, *req["argv"]]
    try:
        convert_hf_to_gguf.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(code)

reply = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        child(req)
    _, status = os.waitpid(pid, 0)
    reply.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
    reply.flush()
"""


class ConverterServer:
    def __init__(self, root: Path):
        env = dict(os.environ, PYTHONPATH=str(root / "gguf-py"))
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, argv: list[str], *, raw_config: bool, logs: Path) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of one conversion."""
        out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
        req = {"argv": argv, "raw_config": raw_config, "stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("llama.cpp converter server died")
        texts = [p.read_text(errors="replace") if p.exists() else "" for p in (out, err)]
        for p in (out, err):
            p.unlink(missing_ok=True)
        return json.loads(line)["rc"], texts[0], texts[1]
