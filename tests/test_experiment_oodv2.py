"""The OOD chapter's miniature: offline splits, the sentence encoder, one seed end to end on tiny data, the
taxonomy data, and the verdict rules on hand-made results."""

import numpy as np
import pytest
import torch

from replbook.data.ood_images import CORRUPTIONS, FAR_SOURCES, corrupt, far_ood
from replbook.experiments import oodv2 as experiment
from replbook.experiments.oodv2 import common, miniature, report
from replbook.profiles import ParameterError, config, resolve


@pytest.mark.parametrize("source", FAR_SOURCES)
def test_far_ood_sets_are_images_in_range_and_reproducible(source):
    a, b = far_ood(source, 12, seed=3), far_ood(source, 12, seed=3)
    assert a.shape == (12, 1, 28, 28) and 0 <= a.min() and a.max() <= 1 and torch.equal(a, b)
    assert a.std() > 0.01  # not blank


def test_corruptions_keep_shape_and_behave_at_their_limits():
    x = torch.rand(4, 1, 28, 28)
    for kind in CORRUPTIONS:
        assert corrupt(x, kind, 0.5, 0).shape == x.shape
    assert torch.equal(corrupt(x, "gaussian_noise", 0.0, 0), x)
    flat = corrupt(x, "low_contrast", 1.0, 0)
    assert torch.allclose(flat, x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x))
    constant = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(corrupt(constant, "blur", 1.5, 0), constant)
    with pytest.raises(ValueError, match="kind"):
        corrupt(x, "fog", 1.0, 0)


def test_the_sentence_encoder_orders_similarities():
    from replbook.data.text_encoder import encode_sentences

    emb = encode_sentences(["A cat sits on the mat.", "A kitten rests on a rug.", "Interest rates rose today."])
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert emb[0] @ emb[1] > 0.4 > emb[0] @ emb[2]


def tiny_data():
    gen = torch.Generator().manual_seed(0)
    y, yt = torch.arange(600) % 10, torch.arange(300) % 10
    # class-dependent brightness so that the classifier can learn something in one epoch
    x = (torch.rand(600, 1, 28, 28, generator=gen) * 0.3 + (y.view(-1, 1, 1, 1) / 15)).clamp(0, 1)
    xt = (torch.rand(300, 1, 28, 28, generator=gen) * 0.3 + (yt.view(-1, 1, 1, 1) / 15)).clamp(0, 1)
    return {"x": x, "y": y, "xt": xt, "yt": yt}


def test_one_seed_scores_every_detector_on_every_split(tmp_cache):
    p = resolve(experiment.PARAMS, "smoke", {"n_train": 200, "n_val": 50, "n_test": 60, "n_ood": 50},
                check_assets=False)
    sets, training, scoring = (config(miniature.Splits, p), config(miniature.Training, p),
                               config(common.Scoring, p))

    def run_seed():
        return miniature.run_seed(sets, training, scoring, tiny_data(), 0, vlm=p["vlm"], n_boot=p["n_boot"],
                                  threads=p["threads"])

    result = run_seed()
    splits = {"near: held-out garments"} | {f"far: {s}" for s in FAR_SOURCES} | {f"covariate: {c}"
                                                                                  for c in CORRUPTIONS}
    detectors = set(experiment.DETECTORS) | {"MCM (toy VLM)", "GL-MCM (toy VLM)"}
    assert {(r["detector"], r["split"]) for r in result.metrics} == {(d, s) for d in detectors for s in splits}
    assert set(result.accuracy) == {"clean", *[f"covariate: {c}" for c in CORRUPTIONS],
                                    "toy VLM (zero-shot prompts)"}
    again = run_seed()  # models from the cache: identical numbers
    assert again.metrics == result.metrics
    assert len(list((tmp_cache / "models").glob("oodv2-*.safetensors"))) == 2


def test_the_examples_figure_reads_its_images_from_the_results():
    p = resolve(experiment.PARAMS, "smoke", check_assets=False)
    examples = miniature.example_images(config(miniature.Splits, p), tiny_data(), per_split=4)
    assert examples.names == ["ID (test)", "near: held-out garments", *[f"far: {s}" for s in FAR_SOURCES],
                              *[f"covariate: {c}" for c in CORRUPTIONS]]
    assert examples.images.shape == (len(examples.names), 4, 1, 28, 28) and examples.images.dtype == np.float32
    fig = report.plot_examples(examples)
    assert len(fig.axes) == len(examples.names) * 4


def test_parameter_conflicts_are_named_before_any_work():
    with pytest.raises(ParameterError, match="share \\[0\\]"):
        resolve(experiment.PARAMS, "smoke", {"near_classes": [4, 0]}, check_assets=False)
    with pytest.raises(ParameterError, match="vim_dim"):
        resolve(experiment.PARAMS, "smoke", {"vim_dim": 64}, check_assets=False)
    assert resolve(experiment.PARAMS, "paper", {"vim_dim": 64}, check_assets=False)  # OpenOOD's 512-d features


def test_taxonomy_loads_renders_and_rejects_an_unknown_status(tmp_path):
    taxonomy = report.load_taxonomy()
    table = report.taxonomy_table(taxonomy)
    assert len(table) == 6 and table.loc["Out-of-distribution detection", "VLM era"] == "highly active"
    bad = tmp_path / "t.yaml"
    bad.write_text("fields:\n  - {id: x, name: X, shift: semantic, id_classes: many, id_classification: true,\n"
                   "     transductive: false, v1_benchmarks: [], vlm_era_status: thriving}\n")
    with pytest.raises(ValueError, match="thriving"):
        report.load_taxonomy(bad)


EXAMPLES = common.Examples(["ID (test)"], np.zeros((1, 1, 1, 2, 2), dtype=np.float32))


def synthetic_results(values: dict, spread: float = 0.002, seeds: int = 2, n_boot: int = 300):
    """Hand-made seeds: detector → (near AUROC, far AUROC), the same in every seed; bootstrap replicates around
    them share an item-level noise and carry their own of size ``spread``."""
    rng = np.random.default_rng(0)
    results = []
    for seed in range(seeds):
        rows, boot = [], {"near": {}, "far": {}}
        shared = {g: 0.01 * rng.standard_normal(n_boot) for g in boot}
        for det, (near, far) in values.items():
            rows.append({"seed": seed, "detector": det, "split": "near: x", "group": "near", "auroc": near})
            rows.append({"seed": seed, "detector": det, "split": "far: y", "group": "far", "auroc": far})
            for group, v in (("near", near), ("far", far)):
                boot[group][det] = v + shared[group] + spread * rng.standard_normal(n_boot)
        results.append(experiment.SeedResult(seed, metrics=rows, boot=boot))
    return experiment.Oodv2Results(results, EXAMPLES)


BASE = {"MSP": (0.80, 0.85), "MaxLogit": (0.80, 0.90), "Energy": (0.80, 0.91), "Mahalanobis": (0.60, 0.95),
        "ViM": (0.70, 0.97), "KNN": (0.78, 0.93)}


def verdicts(values, **kw):
    return {c.id: c.verdict for c in report.claims(synthetic_results(values, **kw), {"profile": "cpu"})}


@pytest.mark.parametrize("maxlogit, energy, spread, verdict", [
    (0.90, 0.91, 0.002, "reproduced"),      # both beat MSP by 5-6 points: beyond OpenOOD's +0.4 and +0.5
    (0.90, 0.80, 0.002, "partly"),          # one does, the other falls 5 points behind
    (0.80, 0.80, 0.002, "not reproduced"),  # both 5 points behind
    (0.853, 0.853, 0.03, "inconclusive"),   # +0.3 points with wide intervals: holds 0 and OpenOOD's gains
])
def test_c1_reaches_every_outcome(maxlogit, energy, spread, verdict):
    values = {**BASE, "MaxLogit": (0.80, maxlogit), "Energy": (0.80, energy)}
    assert verdicts(values, spread=spread)["C1"] == verdict


def test_c2_says_when_the_reference_does_not_show_it():
    claims = {c.id: c for c in report.claims(synthetic_results(BASE), {"profile": "cpu"})}
    assert "Mahalanobis excels on far: OpenOOD itself does not show it" in claims["C2"].paper
    assert "ViM excels on far: OpenOOD shows it" in claims["C2"].paper
    assert claims["C2"].verdict == "reproduced"  # both excel on far (+10, +12) and lag on near here
    weak = {**BASE, "Mahalanobis": (0.80, 0.84)}  # no better than MSP on far, no extra drop on near
    assert verdicts(weak)["C2"] == "partly"


@pytest.mark.parametrize("near_minus_far, verdict", [(-0.10, "reproduced"), (+0.05, "not reproduced")])
def test_c3_on_the_mean_gap(near_minus_far, verdict):
    values = {d: (far + near_minus_far, far) for d, (_, far) in BASE.items()}
    assert verdicts(values)["C3"] == verdict


def test_c4_collapses_near_duplicates_and_uses_both_benchmarks():
    ranks = report.ranking_comparison(synthetic_results(BASE).seeds)
    assert set(ranks["OpenOOD benchmark"]) == {"cifar10", "cifar100"}
    assert (ranks["detectors (collapsed)"] == 5).all()  # six detectors, MaxLogit and Energy as one unit
    reference = {d: tuple((report._reference("cifar10").loc[d] + report._reference("cifar100").loc[d]) / 2)
                 for d in report._reference("cifar10").index}
    agree = verdicts(reference)["C4"]
    reverse = verdicts({d: (1.5 - near, 1.5 - far) for d, (near, far) in reference.items()})["C4"]
    assert agree == "reproduced" and reverse == "not reproduced"
    few = verdicts(BASE)["C4"]  # five units: an interval too wide to decide
    assert few == "inconclusive"


def test_results_round_trip_as_data_and_give_the_same_claims():
    results = synthetic_results(BASE)
    data, arrays = results.to_data()
    assert {a.dtype for a in arrays.values()} <= {np.dtype("float64"), np.dtype("float32")}
    again = experiment.Oodv2Results.from_data(data, arrays)
    assert [c.as_dict() for c in report.claims(again, {"profile": "cpu"})] == \
        [c.as_dict() for c in report.claims(results, {"profile": "cpu"})]


def test_the_rules_read_the_interval_centre_and_record_it():
    claim = {c.id: c for c in report.claims(synthetic_results(BASE), {"profile": "cpu"})}["C3"]
    est = claim.rule.estimate
    assert est.mean == pytest.approx((est.lo + est.hi) / 2) and claim.rule.kind == "effect"


def test_a_changed_architecture_never_loads_stale_weights(tmp_cache, monkeypatch):
    from replbook.cache import architecture_key
    from replbook.models.toy_clip import ToyImageTower

    assert architecture_key(ToyImageTower(width=16)) != architecture_key(ToyImageTower(width=8))
    assert architecture_key(ToyImageTower(width=16)) == architecture_key(ToyImageTower(width=16))
