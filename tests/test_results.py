"""Where results live and when they are computed: ``replbook.results.compute`` on a stand-in chapter."""

import json
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from replbook import cache, codekey, results
from replbook.codec import ResultsData
from replbook.profiles import ChapterParams, Param, resolve


@dataclass
class FakeResults(ResultsData):
    values: np.ndarray
    table: dict[int, float]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A chapter ``fake`` with two parameters whose run() counts its calls, in a temporary project root."""
    (tmp_path / "data_manifests").mkdir()
    (tmp_path / "data_manifests" / "toy.yaml").write_text("name: toy\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "table.csv").write_text("a,b\n1,2\n")
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    monkeypatch.delenv(results.WRITE_BOOK_ENV, raising=False)
    monkeypatch.delenv(results.RENDER_ONLY_ENV, raising=False)
    calls = []

    def run(params: dict[str, Any]) -> FakeResults:
        calls.append(dict(params))
        return FakeResults(np.arange(params["n"]) * params["scale"], {1: params["scale"]})

    spec = ChapterParams(slug="fake", params=(Param("n", int, "items", 1, 100), Param("scale", float, "scale", 0, 10)),
                         defaults={"smoke": {"n": 3, "scale": 1.0}, "cpu": {"n": 5}},
                         assets={"smoke": [], "cpu": ["toy"]})
    module = types.SimpleNamespace(PARAMS=spec, RESULTS=FakeResults, run=run, DATA_FILES=("data/table.csv",))
    monkeypatch.setattr(results, "chapter_module", lambda slug: module)
    monkeypatch.setattr(results, "resolve_asset", lambda name: {})
    monkeypatch.setattr(codekey, "compute_modules", lambda slug: ["replbook.stats"])
    return types.SimpleNamespace(root=tmp_path, calls=calls, spec=spec, params=lambda p="smoke", **o: resolve(
        spec, p, o, check_assets=False))


def test_a_run_outside_the_build_writes_only_under_runs(fake):
    params = fake.params()
    out = results.compute("fake", params)
    key = results.compute_key("fake", params).value
    assert np.array_equal(out.values, [0, 1, 2]) and out.table == {1: 1.0}
    assert results.locate("fake", params) == fake.root / "runs" / "fake" / key[:12] / "results.json"
    assert not (fake.root / "results").exists()
    assert results.compute("fake", params).table == {1: 1.0} and len(fake.calls) == 1  # loaded, not recomputed


def test_the_build_writes_the_books_results_only_at_the_profiles_defaults(fake, monkeypatch):
    monkeypatch.setenv(results.WRITE_BOOK_ENV, "1")
    results.compute("fake", fake.params())
    book = fake.root / "results" / "fake" / "smoke.json"
    assert book.exists() and book.with_suffix(".npz").exists()
    saved = json.loads(book.read_text())
    assert saved["compute_key"]["params"] == {"profile": "smoke", "n": 3, "scale": 1.0}
    assert saved["compute_key"]["files"] == {"data/table.csv": results.sha256_file(fake.root / "data/table.csv")}
    assert {"versions", "git_commit", "device", "started", "compute_wall_s"} <= set(saved["record"])
    before = book.read_bytes()
    custom = fake.params(n=4)  # other parameters: never the book's file, even when the build asks
    results.compute("fake", custom)
    assert book.read_bytes() == before and results.locate("fake", custom).parent.parent.name == "fake"
    assert results.locate("fake", fake.params()) == book


def test_the_key_follows_parameters_manifests_and_data_files(fake):
    cpu = fake.params("cpu")
    key = results.compute_key("fake", cpu).value
    assert results.compute_key("fake", fake.params("cpu", scale=2.0)).value != key
    (fake.root / "data_manifests" / "toy.yaml").write_text("name: toy\nrevision: 2\n")
    assert results.compute_key("fake", cpu).value != key
    key = results.compute_key("fake", cpu).value
    (fake.root / "data" / "table.csv").write_text("a,b\n1,3\n")
    assert results.compute_key("fake", cpu).value != key


def test_render_only_never_computes(fake, monkeypatch):
    monkeypatch.setenv(results.RENDER_ONLY_ENV, "1")
    with pytest.raises(results.ResultsMissing, match="no results saved.*REPLBOOK_RENDER_ONLY"):
        results.compute("fake", fake.params())
    assert fake.calls == []
    monkeypatch.delenv(results.RENDER_ONLY_ENV)
    results.compute("fake", fake.params())
    monkeypatch.setenv(results.RENDER_ONLY_ENV, "1")
    assert results.compute("fake", fake.params()).table == {1: 1.0} and len(fake.calls) == 1


def test_altered_arrays_are_refused_when_rendering_and_recomputed_otherwise(fake, monkeypatch):
    params = fake.params()
    results.compute("fake", params)
    npz = results.locate("fake", params).with_suffix(".npz")
    np.savez_compressed(npz, values=np.zeros(3))
    monkeypatch.setenv(results.RENDER_ONLY_ENV, "1")
    with pytest.raises(results.ResultsMissing, match="does not match the sha256"):
        results.compute("fake", params)
    monkeypatch.delenv(results.RENDER_ONLY_ENV)
    assert np.array_equal(results.compute("fake", params).values, [0, 1, 2]) and len(fake.calls) == 2


def test_force_recomputes_and_the_build_promotes_a_matching_run_to_the_book(fake, monkeypatch):
    params = fake.params()
    results.compute("fake", params)  # outside the build: into runs/
    monkeypatch.setenv(results.WRITE_BOOK_ENV, "1")
    results.compute("fake", params)  # the build finds it and makes it the book's, without computing again
    assert len(fake.calls) == 1 and results.locate("fake", params) == fake.root / "results" / "fake" / "smoke.json"
    results.compute("fake", params, force=True)
    assert len(fake.calls) == 2


def test_an_auto_device_is_keyed_by_what_it_picks(fake, monkeypatch):
    import torch

    params = {**fake.params(), "device": "auto"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = results.compute_key("fake", params)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert results.compute_key("fake", params).value != cpu.value and cpu.params["device"] == "auto:cpu"


def test_train_or_load_refuses_to_train_while_rendering(tmp_cache, monkeypatch):
    monkeypatch.setenv(cache.RENDER_ONLY_ENV, "1")
    model = torch.nn.Linear(2, 2)
    with pytest.raises(cache.RenderOnly, match="nothing is trained"):
        cache.train_or_load("demo", model, lambda: {}, data=[1], hyper={}, code=(FakeResults,))


def test_a_page_writes_its_claims_beside_the_books_results_only_when_the_build_renders_it(fake, monkeypatch):
    from replbook.page import record_claims, run_record
    from replbook.verdicts import Claim

    claim = Claim("C1", "a claim", "+1", "Table 1", "+0.5 [0.1, 0.9]", "smoke", "partly", "r")
    monkeypatch.setenv(results.WRITE_BOOK_ENV, "1")
    results.compute("fake", fake.params())
    claims_file = fake.root / "results" / "fake" / "smoke.claims.json"
    monkeypatch.delenv(results.WRITE_BOOK_ENV)
    panel = record_claims("fake", fake.params(), [claim], []).data  # plain papermill or nbval: the book is untouched
    assert not claims_file.exists()
    for name in ("compute key", "computed at commit", "rendered at commit", "compute wall time", "torch"):
        assert name in panel
    assert 'href="../../results/fake/smoke.json"' in panel and "smoke.npz" in panel
    monkeypatch.setenv(results.WRITE_BOOK_ENV, "1")
    record_claims("fake", fake.params(), [claim], [])
    saved = json.loads(claims_file.read_text())
    assert saved["claims"][0]["id"] == "C1" and saved["compute_key"] == results.compute_key("fake", fake.params()).value
    custom = fake.params(n=4)
    results.compute("fake", custom)
    record_claims("fake", custom, [claim], [])  # a custom run's claims live in its run folder
    assert results.locate("fake", custom).with_name("claims.json").exists()
    assert "runs/fake" in run_record("fake", custom).data
