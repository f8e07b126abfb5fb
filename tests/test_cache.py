"""The one train-or-load helper: its key covers every byte of the data, the hyper-parameters, the architecture and
the training code; sidecars travel with the weights."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from replbook.cache import cache_entry, code_version, data_hash, train_or_load


@dataclass
class Clip:
    tokens: torch.Tensor
    labels: torch.Tensor
    answer: int


def clips():
    torch.manual_seed(0)
    return [Clip(torch.randn(5, 3), torch.arange(5), i % 4) for i in range(100)]


def test_data_hash_sees_every_label_every_dtype_and_the_order():
    data = clips()
    assert data_hash(data) == data_hash(clips())
    data[99].labels[4] += 1  # the last label of the last clip: a fingerprint of the first clips would miss it
    assert data_hash(data) != data_hash(clips())
    assert data_hash(torch.zeros(3)) != data_hash(torch.zeros(3, dtype=torch.float64))
    assert data_hash(torch.zeros(2, 3)) != data_hash(torch.zeros(3, 2))
    assert data_hash([1, 2]) != data_hash([2, 1])
    assert data_hash(np.arange(4), "text") != data_hash(np.arange(4), "texts")


def first():
    return 1


def second():
    return 2


def test_code_version_follows_the_source():
    assert code_version(first) == code_version(first)
    assert code_version(first) != code_version(second)


def test_train_or_load_trains_once_then_loads_weights_and_sidecar(tmp_cache):
    calls = []

    def make():
        torch.manual_seed(0)
        return nn.Linear(3, 2)

    def train(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        return {"losses": [1.0, 0.5]}

    model = make()
    out = train_or_load("demo", model, lambda: train(model), data=torch.ones(4), hyper={"lr": 0.1}, code=(train,))
    again = make()
    out2 = train_or_load("demo", again, lambda: train(again), data=torch.ones(4), hyper={"lr": 0.1}, code=(train,))
    assert calls == [1] and out == out2 == {"losses": [1.0, 0.5]}
    assert torch.equal(again.weight, torch.full((2, 3), 0.5))
    other = make()
    train_or_load("demo", other, lambda: train(other), data=torch.ones(4), hyper={"lr": 0.2}, code=(train,))
    assert calls == [1, 1]  # another learning rate: trained again
    wider = nn.Linear(3, 4)
    assert cache_entry("demo", wider, data=torch.ones(4), hyper={"lr": 0.1}, code=(train,)).path != \
        cache_entry("demo", model, data=torch.ones(4), hyper={"lr": 0.1}, code=(train,)).path


def test_an_altered_cached_file_is_retrained(tmp_cache):
    model = nn.Linear(2, 2)
    entry = cache_entry("demo", model, data=torch.ones(1), hyper={}, code=(first,))
    entry.save(model, [1])
    assert entry.exists()
    entry.path.write_bytes(entry.path.read_bytes()[:-4] + b"\0\0\0\0")
    assert not entry.exists()


def test_speechprune_reader_retrains_when_one_alignment_label_changes(tmp_cache):
    from replbook.experiments.speechprune import PARAMS
    from replbook.experiments.speechprune.miniature import ReaderSetup, SpeechData, make_data, train_reader
    from replbook.profiles import config, resolve

    p = resolve(PARAMS, "smoke", {"n_train": 10, "n_test": 10, "clips_per_item": 1, "epochs": 1})
    data, reader = make_data(config(SpeechData, p)), config(ReaderSetup, p)
    train_reader(reader, data)
    train_reader(reader, data)
    assert len(list((tmp_cache / "models").glob("speechprune-reader-*.safetensors"))) == 1
    data["clips"][-1].labels[-1] += 1
    train_reader(reader, data)
    assert len(list((tmp_cache / "models").glob("speechprune-reader-*.safetensors"))) == 2


def test_data_hash_refuses_objects_it_cannot_hash_stably():
    assert data_hash(np.float32(0.5)) == data_hash(0.5)
    with pytest.raises(TypeError, match="cannot hash a object"):
        data_hash(object())
