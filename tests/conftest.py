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
