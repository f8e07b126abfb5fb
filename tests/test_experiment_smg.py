"""The SMG-Learning chapter: sites, protocol pieces, the smoke run (contract, cache, determinism) and the verdict
rules on constructed results."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from replbook.data import phantoms
from replbook.experiments import smg
from replbook.experiments.smg import miniature, protocol, report
from replbook.profiles import ParameterError, resolve
from replbook.segmentation import predict


def smoke(**overrides):
    return resolve(smg.PARAMS, "smoke", {"workers": 1, **overrides})


# ------------------------------------------------------------------------------------------------ sites


def test_sites_share_geometry_rules_but_differ_in_appearance():
    images, labels = phantoms.render_site("S1", 40, 24, seed=0)
    again, labels2 = phantoms.render_site("S1", 40, 24, seed=0)
    assert torch.equal(images, again) and torch.equal(labels, labels2)
    assert set(labels.unique().tolist()) == {0, 1, 2, 3}
    inverted, labels_s2 = phantoms.render_site("S2", 40, 24, seed=0)
    assert not torch.equal(labels, labels_s2)  # each site has its own hearts
    # S1: bright blood pool on a dark background; S2: the contrast inverted
    assert images[:, 0][labels == 1].mean() > images[:, 0][labels == 0].mean()
    assert inverted[:, 0][labels_s2 == 1].mean() < inverted[:, 0][labels_s2 == 0].mean()
    assert phantoms.render_site("S4", 40, 24, 0)[0].std() < images.std()  # low contrast
    with pytest.raises(ValueError, match="unknown site"):
        phantoms.render_site("S7", 2, 24, 0)


def test_study_has_the_sites_in_order():
    study = miniature.make_study(smoke())
    assert [s.name for s in study.seen] == ["S1", "S2", "S3"] and [s.name for s in study.unseen] == ["S5"]
    assert study.n_labels == 4 and study.channels == 1
    assert len(study.seen[0].train_images) == 32 and len(study.seen[0].test_images) == 12


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("overrides, message", [
    ({"arms": ["sequential fine-tuning", "SMD replay"]}, "must include 'SMG"),
    ({"arms": ["sequential fine-tuning", "SMD replay", "SMG (SMD + PGA)", "GEM"]}, "must be one of"),
    ({"seen": ["S1"]}, "at least two distinct sites"),
    ({"unseen": ["S1"]}, "none of them in 'seen'"),
    ({"seen": ["S1", "RUNMC"]}, "not sites of dataset 'phantoms'"),
    ({"size": 18}, "divisible by 4"),
    ({"attention_levels": 4}, "attention_levels"),
])
def test_validation_names_the_parameter(overrides, message):
    with pytest.raises(ParameterError, match=message):
        smoke(**overrides)


def test_appearance_shift_is_seeded_and_bounded():
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    a = protocol.appearance_shift(x, torch.Generator().manual_seed(1))
    b = protocol.appearance_shift(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.abs().max() <= 1 and not torch.equal(a, x)


# ------------------------------------------------------------------------------------------------ protocol pieces


def test_prior_baseline_by_hand():
    site = protocol.Site("A", "", torch.zeros(2, 1, 1, 2), torch.tensor([[[1, 0]], [[1, 1]]]),
                         torch.zeros(2, 1, 1, 2), torch.tensor([[[1, 0]], [[0, 0]]]))
    study = protocol.Study(("x",), [site, site], [site])
    # the training maps of both seen sites: pixel 0 is label 1 four times; pixel 1 is 0 twice and 1 twice, and argmax
    # takes the first maximum (0): the prior map is [1, 0]. Test image [1, 0] → Dice 1; test image [0, 0] → the
    # prior's label 1 is a false positive → Dice 0.
    prior = protocol.prior_baseline(study)
    assert prior["A"] == [1.0, 0.0]


def test_past_for_arm_labels_replay_with_the_previous_segmenter(tmp_cache):
    p = smoke()
    study = miniature.make_study(p)
    run = protocol.run_smd(p, study)
    assert [len(b.ids) for b in run.banks] == [6, 12]  # n_replay per site seen so far
    previous = protocol.build_segmenter(p, 1, 4)
    past = protocol.past_for_arm("SMD replay", p, 2, study, run, previous, seed=0)
    assert sorted(past) == [0, 1]
    images, labels = past[1]
    assert images.shape == (6, 1, 16, 16) and torch.equal(labels, predict(previous, images, study.labels))
    buffer = protocol.past_for_arm("real buffer", p, 2, study, run, previous, seed=0)
    assert [len(v[0]) for v in buffer.values()] == [3, 3]  # 10 % of 32 images
    assert protocol.past_for_arm("sequential fine-tuning", p, 2, study, run, previous, 0) == {}
    joint = protocol.past_for_arm("joint training", p, 2, study, run, previous, 0)
    assert [len(v[0]) for v in joint.values()] == [32, 32]  # every real image of both past sites


def test_joint_labels_make_the_generator_draw_masks(tmp_cache):
    p = smoke(labels="joint", seen=["S1", "S2"])
    study = miniature.make_study(p)
    run = protocol.run_smd(p, study)
    (images, masks), = run.replay(1, 1, 4).values()
    assert images.shape == (6, 1, 16, 16) and masks.shape == (6, 16, 16)
    assert masks.min() >= 0 and masks.max() <= 3


def test_prompts_only_leaves_the_unet_of_the_first_site(tmp_cache):
    p = smoke(smd_update="prompts_only", seen=["S1", "S2", "S3"])
    study = miniature.make_study(p)
    gen = protocol.build_smd(p, 3, 1)
    protocol.train_smd_stage(gen, p, 0, study.seen[0], 4, {}, seed=0)
    unet_before = {k: v.clone() for k, v in gen.unet.state_dict().items()}
    prompts_before = gen.prompts.tokens.detach().clone()
    protocol.train_smd_stage(gen, p, 1, study.seen[1], 4, {0: study.seen[0].train_images}, seed=0)
    assert all(torch.equal(v, gen.unet.state_dict()[k]) for k, v in unet_before.items())
    moved = (gen.prompts.tokens.detach() - prompts_before).abs().sum((1, 2))
    assert moved[1] > 0 and moved[0] == 0 and moved[2] == 0


# ------------------------------------------------------------------------------------------------ the smoke run


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("REPLBOOK_CACHE", str(tmp_path_factory.mktemp("cache")))
    p = smoke()
    out = smg.run(p)
    again = smg.run(p)  # from the cache
    yield p, out, again
    mp.undo()


def test_smoke_run_covers_every_arm_stage_and_site(smoke_out):
    p, out, _ = smoke_out
    assert sorted(out["seeds"]) == [0, 1]
    for arms in out["seeds"].values():
        assert list(arms) == p["arms"]
        for r in arms.values():
            assert len(r.dice) == 3  # one entry per seen site's stage
            assert all(sorted(stage) == ["S1", "S2", "S3", "S5"] for stage in r.dice)
            assert all(len(v) == 12 and all(0 <= x <= 1 for x in v) for v in r.dice[-1].values())
    # every arm starts from the seed's shared first stage
    first = [r.dice[0] for r in out["seeds"][0].values()]
    assert all(d == first[0] for d in first)
    assert len(out["smd"].banks) == 2 and len(out["smd"].curves) == 2


def test_smoke_run_is_deterministic_through_the_cache(smoke_out):
    _, out, again = smoke_out
    for s in out["seeds"]:
        for arm, r in out["seeds"][s].items():
            assert again["seeds"][s][arm].dice == r.dice


def test_workers_give_the_same_results(tmp_path, monkeypatch):
    """Two one-thread workers reproduce one process with one thread (a different thread count changes float rounding,
    and so can change a pixel)."""
    arms = ["sequential fine-tuning", "SMD replay", "SMG (SMD + PGA)"]
    monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / "one"))
    single = smg.run(smoke(workers=1, threads=1, seeds=1, arms=arms))
    monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / "two"))
    parallel = smg.run(smoke(workers=2, threads=2, seeds=1, arms=arms))
    for arm in arms:
        assert parallel["seeds"][0][arm].dice == single["seeds"][0][arm].dice


def test_smoke_report_and_claims(smoke_out):
    p, out, _ = smoke_out
    taylor = report.taylor_check(out, p)
    ratios = [r["ratio"] for r in taylor["rows"] if "ratio" in r]
    assert all(3 < r < 5 for r in ratios)  # the gap is O(α²) on the chapter's own segmenter
    assert all(r["grad_cosine"] > 0.99 for r in taylor["rows"])
    claims = report.make_claims(out, p, taylor)
    assert [c.id for c in claims] == ["C1", "C2", "C3", "C4", "C5a", "C5b"]
    assert next(c for c in claims if c.id == "C4").verdict == "illustrated"  # our own identity: never "reproduced"
    table = report.final_table(out)
    assert report.PRIOR in table.index and ("mean", "unseen") in table.columns
    assert len(report.differences_table(out)) == 11
    for figure in (report.plot_stages, report.plot_tradeoff, report.plot_replay, report.plot_generator_loss):
        assert figure(out).axes  # every figure draws from the smoke run (the replay figure with 6 images per site)
    plt.close("all")
    record = report.metrics_record(out, taylor)
    assert record["sites"] == {"seen": ["S1", "S2", "S3"], "unseen": ["S5"]}


# ------------------------------------------------------------------------------------------------ verdict rules


def fake_out(scores: dict[str, tuple[float, float]], seeds: int = 3, n: int = 20, noise: float = 0.01) -> dict:
    """Results where each arm's Dice is (past-site level, unseen level) plus small per-seed, per-image noise; the last
    seen site is 0.9 for every arm."""
    empty = torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)
    site = lambda name: protocol.Site(name, "", *empty, *empty)  # noqa: E731
    study = protocol.Study(("x",), [site("S1"), site("S2"), site("S3")], [site("S5")])
    rng = np.random.default_rng(0)
    out = {"seeds": {}, "study": study, "prior": {s: [0.1] * n for s in ("S1", "S2", "S3", "S5")}, "smd": None}
    for s in range(seeds):
        arms = {}
        for arm, (past, unseen) in scores.items():
            def level(v: float) -> list[float]:
                return list(np.clip(v + rng.normal(0, noise, n), 0, 1))
            last = {"S1": level(past), "S2": level(past), "S3": level(0.9), "S5": level(unseen)}
            stages = [{k: level(0.9) for k in last}, {k: level(0.9) for k in last}, last]
            arms[arm] = protocol.ArmResult(s, arm, stages, [])
        out["seeds"][s] = arms
    return out


ALL = {"sequential fine-tuning": (0.3, 0.4), "EWC": (0.35, 0.4), "LwF": (0.35, 0.4), "MLDG (no memory)": (0.3, 0.45),
       "SMD replay": (0.7, 0.5), "SMD + orientational": (0.7, 0.5), "SMD + arbitrary": (0.7, 0.55)}


def verdicts(scores: dict) -> dict[str, str]:
    claims = report.make_claims(fake_out(scores), {"profile": "cpu"}, None)
    return {c.id: c.verdict for c in claims}


def test_rules_reproduce_when_smg_leads_on_both_axes():
    v = verdicts({**ALL, "SMG (SMD + PGA)": (0.75, 0.6)})
    assert v == {"C1": "reproduced", "C2": "reproduced", "C3": "reproduced", "C4": "not comparable",
                 "C5a": "reproduced", "C5b": "reproduced"}


def test_rules_fail_when_smg_is_plain_mixing():
    v = verdicts({**ALL, "SMG (SMD + PGA)": (0.7, 0.5)})
    assert v["C1"] == "reproduced"  # far above fine-tuning, no worse than mixing
    assert v["C2"] == "not reproduced"  # no unseen gain over mixing: the interval excludes +0.02
    assert v["C3"] == "partly"  # three parts hold; arbitrary-only is 0.05 better on unseen sites
    assert v["C5a"] == v["C5b"] == "reproduced"


def test_rules_are_inconclusive_on_noise():
    v = report.make_claims(fake_out({**ALL, "SMG (SMD + PGA)": (0.7, 0.51)}, noise=0.3), {"profile": "cpu"}, None)
    assert next(c for c in v if c.id == "C2").verdict == "inconclusive"


def test_missing_arms_are_not_comparable():
    v = verdicts({"sequential fine-tuning": (0.3, 0.4), "SMD replay": (0.7, 0.5), "SMG (SMD + PGA)": (0.75, 0.6)})
    assert v["C3"] == v["C5a"] == v["C5b"] == "not comparable" and v["C1"] == "reproduced"
