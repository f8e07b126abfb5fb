"""The CIFAR reader on generated folders in the release's layout: shapes, ranges, labels, md5 checks, and the
restricted unpickler."""

import os
import pickle

import numpy as np
import pytest
import torch
from conftest import write_fake_cifar

from replbook.assets import AssetUnavailable, ChecksumMismatch
from replbook.data.cifar import load_cifar, read_batch


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_reads_images_labels_and_class_names(root, monkeypatch, name, classes):
    folder, env = write_fake_cifar(root, name, n_train=20, n_test=10)
    monkeypatch.setenv(env, str(folder))
    x, y, names = load_cifar(name, "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.int64 and len(names) == classes and names[3] == "class3"
    xt, _, _ = load_cifar(name, "test")
    assert xt.shape == (10, 3, 32, 32)
    # The channel-major layout of the release: the first 1024 bytes of a row are the red plane.
    first = read_batch(folder / ("data_batch_1" if name == "cifar10" else "train"))[b"data"][0]
    assert torch.allclose(x[0, 0].flatten(), torch.from_numpy(first[:1024].astype(np.float32) / 255))


def test_missing_folder_and_altered_file_are_named(root, monkeypatch):
    folder, env = write_fake_cifar(root)
    monkeypatch.setenv(env, str(root / "elsewhere"))
    with pytest.raises(AssetUnavailable, match="REPLBOOK_CIFAR10"):
        load_cifar("cifar10")
    monkeypatch.setenv(env, str(folder))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(ChecksumMismatch, match="md5"):
        load_cifar("cifar10", "test")
    with pytest.raises(ValueError, match="split"):
        load_cifar("cifar10", "val")


def test_the_unpickler_refuses_anything_but_arrays(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": os.getcwd}))  # a callable global: would be code on load
    with pytest.raises(ValueError, match="refusing to load"):
        read_batch(path)
