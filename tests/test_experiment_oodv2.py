"""The OOD chapter's miniature: offline splits, the sentence encoder, one seed end to end on tiny data, the
taxonomy data, and the verdict rules on hand-made results."""

import pytest
import torch

from replbook.data.ood_images import CORRUPTIONS, FAR_SOURCES, corrupt, far_ood
from replbook.experiments import oodv2 as experiment
from replbook.experiments.oodv2 import miniature, report
from replbook.profiles import ParameterError, resolve


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
    result = miniature.run_seed(p, tiny_data(), seed=0)
    splits = {"near: held-out garments"} | {f"far: {s}" for s in FAR_SOURCES} | {f"covariate: {c}"
                                                                                  for c in CORRUPTIONS}
    detectors = set(experiment.DETECTORS) | {"MCM (toy VLM)", "GL-MCM (toy VLM)"}
    assert {(r["detector"], r["split"]) for r in result.metrics} == {(d, s) for d in detectors for s in splits}
    assert set(result.accuracy) == {"clean", *[f"covariate: {c}" for c in CORRUPTIONS],
                                    "toy VLM (zero-shot prompts)"}
    again = miniature.run_seed(p, tiny_data(), seed=0)  # models from the cache: identical numbers
    assert again.metrics == result.metrics
    assert len(list((tmp_cache / "models").glob("oodv2-*.safetensors"))) == 2


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


def synthetic_results(near_minus_far: float):
    """Two seeds where MaxLogit/Energy beat MSP on far-OOD, Mahalanobis wins far and loses near."""
    rows = []
    base = {"MSP": (0.80, 0.85), "MaxLogit": (0.81, 0.90), "Energy": (0.80, 0.91), "Mahalanobis": (0.60, 0.99),
            "ViM": (0.70, 0.97), "KNN": (0.78, 0.93)}
    for seed in (0, 1):
        for det, (near, far) in base.items():
            rows.append({"seed": seed, "detector": det, "split": "near: x", "group": "near",
                         "auroc": far + near_minus_far if det == "KNN" else near})
            rows.append({"seed": seed, "detector": det, "split": "far: y", "group": "far", "auroc": far})
    return [experiment.SeedResult(seed, metrics=[r for r in rows if r["seed"] == seed]) for seed in (0, 1)]


def test_verdict_rules_on_hand_made_results():
    claims = {c.id: c for c in report.make_claims(synthetic_results(-0.05), {"profile": "cpu"})}
    assert claims["C1"].verdict == "reproduced"
    assert claims["C2"].verdict == "reproduced"
    assert claims["C3"].verdict == "reproduced"  # near < far for all six
    ranks = report.ranking_comparison(synthetic_results(-0.05))
    assert set(ranks["OpenOOD benchmark"]) == {"cifar10", "cifar100"} and (ranks["detectors"] == 6).all()
    harder_near = {c.id: c for c in report.make_claims(synthetic_results(+0.05), {"profile": "x"})}
    assert harder_near["C3"].verdict == "reproduced"  # KNN alone is easier near: 5 of 6 ≥ 75%


def test_a_changed_architecture_never_loads_stale_weights(tmp_cache, monkeypatch):
    from replbook.cache import architecture_key
    from replbook.models.toy_clip import ToyImageTower

    assert architecture_key(ToyImageTower(width=16)) != architecture_key(ToyImageTower(width=8))
    assert architecture_key(ToyImageTower(width=16)) == architecture_key(ToyImageTower(width=16))
