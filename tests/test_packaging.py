"""pyproject.toml lists packages explicitly (three library folders install as subpackages of
tinyconvert), so a folder missing from the list is silently left out of a plain `pip install .`
while editable installs and the tests still find it: this happened to tinyconvert.export and
tinyconvert.imatrix. Every folder with an __init__.py must be listed, and nothing else."""
from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ImportError:                     # Python 3.10: the copy pip vendors
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for package, folder in tool["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            name = ".".join((package, *rel))
            # a nested mapped folder (tinyconvert.quant inside tinyconvert/) is its own entry
            if not any(name.startswith(other + ".") or name == other
                       for other in tool["package-dir"] if other != package
                       and other.startswith(package + ".")):
                found.add(name)
    assert found == listed, (f"missing from pyproject packages: {sorted(found - listed)}; "
                             f"listed but no folder: {sorted(listed - found)}")
