"""Results as data: a results dataclass to JSON plus arrays and back, exactly."""

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from replbook.codec import ARRAY, FLOAT, ITEMS, CodecError, ResultsData


@dataclass
class Seed:
    seed: int
    curve: np.ndarray
    per_epoch: dict[int, dict[str, float]] = field(default_factory=dict)
    by_lambda: dict[float, list[float]] = field(default_factory=dict)
    pair: tuple[str, int] = ("a", 1)


@dataclass
class Demo(ResultsData):
    seeds: list[Seed]
    table: dict[str, Any]
    note: str | None = None
    best: float = 0.0


def demo() -> Demo:
    s0 = Seed(0, np.arange(4, dtype=np.float32), {1: {"auroc": 0.7}, 2: {"auroc": float("nan")}},
              {0.5: [1.0, 2.0]}, ("b", 2))
    s1 = Seed(1, np.ones((2, 3)))
    table = {"images": np.zeros((2, 8, 8), dtype=np.uint8), "rows": [{"x": 1, "y": np.float64(2.5)}],
             "by_pair": {(1, 2): "p"}, "flag": np.bool_(True), "count": np.int64(3), "t": torch.tensor([1.5, 2.5]),
             "inf": float("inf")}
    return Demo([s0, s1], table, None, 0.25)


def test_round_trip_is_exact():
    original = demo()
    data, arrays = original.to_data()
    text = json.dumps(data, allow_nan=False)  # plain JSON: no NaN, no numpy
    back = Demo.from_data(json.loads(text), arrays)
    assert back.best == 0.25 and back.note is None
    assert back.seeds[0].per_epoch[1] == {"auroc": 0.7} and np.isnan(back.seeds[0].per_epoch[2]["auroc"])
    assert back.seeds[0].by_lambda == {0.5: [1.0, 2.0]} and back.seeds[0].pair == ("b", 2)
    assert back.seeds[0].curve.dtype == np.float32 and np.array_equal(back.seeds[0].curve, np.arange(4))
    assert back.seeds[1].curve.shape == (2, 3)
    assert back.table["images"].dtype == np.uint8 and back.table["by_pair"] == {(1, 2): "p"}
    assert back.table["flag"] is True and back.table["count"] == 3 and back.table["rows"][0]["y"] == 2.5
    assert np.array_equal(back.table["t"], [1.5, 2.5]) and back.table["inf"] == float("inf")


def test_arrays_are_named_by_their_path_and_json_marks_what_json_cannot_say():
    data, arrays = demo().to_data()
    assert set(arrays) == {"seeds/0/curve", "seeds/1/curve", "table/images", "table/t"}
    assert data["seeds"][0]["curve"] == {ARRAY: "seeds/0/curve"}
    assert data["seeds"][0]["per_epoch"] == {ITEMS: [[1, {"auroc": 0.7}], [2, {"auroc": {FLOAT: "nan"}}]]}
    assert data["table"]["inf"] == {FLOAT: "inf"}


def test_what_cannot_be_saved_is_refused_with_its_path():
    with pytest.raises(CodecError, match="table/bad: cannot save a object"):
        Demo([], {"bad": object()}).to_data()
    with pytest.raises(CodecError, match="object array"):
        Demo([], {"a": np.array([None, 1])}).to_data()
    with pytest.raises(CodecError, match="reserved"):
        Demo([], {ARRAY: 1}).to_data()


def test_missing_fields_name_the_fix():
    data, arrays = demo().to_data()
    del data["seeds"]
    with pytest.raises(CodecError, match=r"lacks the fields \['seeds'\].*recompute"):
        Demo.from_data(data, arrays)
