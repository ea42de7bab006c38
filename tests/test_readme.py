"""The README's two set-up commands stay true: the first (install, build the real model, convert)
is executed here; the second (the test command) is what .ci/run runs. Its table of supported
architectures is the registry's."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import gguf

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", setup, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    install, test_cmd = readme_commands()
    ci_lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    assert ci_lines[-1] == test_cmd


def test_readme_install_and_main_job(tmp_path):
    install, _ = readme_commands()
    out = REPO / "smollm2-135m-f16.gguf"
    out.unlink(missing_ok=True)
    proc = subprocess.run(["bash", "-c", install], cwd=REPO, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote " in proc.stdout
    r = gguf.GGUFReader(out)
    assert r.fields["general.architecture"].contents() == "llama"
    assert len(r.tensors) == 272
    out.unlink()


def test_readme_architecture_table_is_the_registry():
    from tests.support import readme_archs
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_archs.with_table(text) == text, (
        "README.md's table of supported architectures differs from tinyconvert.archs; "
        f"regenerate it with `{readme_archs.REGENERATE}`")


def test_readme_table_regeneration_replaces_only_the_block():
    from tests.support.readme_archs import END, START, with_table
    stale = f"before\n{START}\n| OldForCausalLM | old |\n{END}\nafter\n"
    new = with_table(stale)
    assert new.startswith(f"before\n{START}\n") and new.endswith(f"{END}\nafter\n")
    assert "OldForCausalLM" not in new and "| LlamaForCausalLM " in new
    assert with_table(new) == new
