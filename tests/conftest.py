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


def write_fake_cifar(root, name: str = "cifar10", n_train: int = 20, n_test: int = 10, seed: int = 0):
    """A folder in the CIFAR python-pickle layout with random images, and a manifest (with the files' md5) in
    ``root/data_manifests`` that points at it through its environment variable. Returns (folder, env var)."""
    import hashlib
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    classes = 10 if name == "cifar10" else 100
    label_key = b"labels" if name == "cifar10" else b"fine_labels"

    def batch(n):
        return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                label_key: [int(v) for v in rng.integers(0, classes, n)]}

    if name == "cifar10":
        files = {**{f"data_batch_{i}": batch(n_train // 5) for i in range(1, 6)}, "test_batch": batch(n_test),
                 "batches.meta": {b"label_names": [f"class{i}".encode() for i in range(classes)]}}
    else:
        files = {"train": batch(n_train), "test": batch(n_test),
                 "meta": {b"fine_label_names": [f"class{i}".encode() for i in range(classes)]}}
    lines = []
    for fname, content in files.items():
        (folder / fname).write_bytes(pickle.dumps(content, protocol=2))
        lines.append(f"  - {{path: {fname}, md5: {hashlib.md5((folder / fname).read_bytes()).hexdigest()}}}")
    env = f"REPLBOOK_{name.upper()}"
    manifests = root / "data_manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / f"{name}.yaml").write_text(
        f"name: {name}\nkind: dataset\nsource: {{url: https://example.org, revision: test}}\nlicence: test\n"
        f"provider: {{type: local, env: {env}}}\nfiles:\n" + "\n".join(lines)
        + "\nused_by: [clat]\nstand_in_for: null\n")
    return folder, env


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
_SMOKE_DONE: set = set()


def ensure_smoke_results(*slugs: str):
    """The checkout's ``results/<slug>/smoke.*`` for ``slugs`` (every landed chapter when none), computed once here
    (``replbook compute``, as the build does) where missing or compute-stale; returns the checkout's results folder.
    Smoke results are never committed; tests copy them into their sandboxes and render from them."""
    import subprocess
    import sys

    from replbook import results
    from replbook.chapters import chapter_params, landed_chapters
    from replbook.profiles import resolve

    env = {k: v for k, v in os.environ.items() if k not in ("REPLBOOK_ROOT", "REPLBOOK_CACHE")}
    for slug in slugs or [c.slug for c in landed_chapters()]:
        if slug in _SMOKE_DONE:
            continue
        path = ROOT / "results" / slug / "smoke.json"
        old = os.environ.pop("REPLBOOK_ROOT", None)
        try:
            params = resolve(chapter_params(slug), "smoke", check_assets=False)
            current = results.stored_key(path) == results.compute_key(slug, params).value
        finally:
            if old is not None:
                os.environ["REPLBOOK_ROOT"] = old
        if not current:
            subprocess.run([sys.executable, "-m", "replbook", "compute", slug, "--profile", "smoke", "--book"],
                           cwd=ROOT, env=env, check=True, capture_output=True)
        _SMOKE_DONE.add(slug)
    return ROOT / "results"
