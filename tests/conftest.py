import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private cache folder (trained models, generated assets) for one test."""
    monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
