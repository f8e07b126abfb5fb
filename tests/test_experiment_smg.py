"""The SMG-Learning chapter: sites, protocol pieces, the smoke run (contract, cache, determinism) and the verdict
rules on constructed results."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from replbook.data import phantoms
from replbook.experiments import smg
from replbook.experiments.smg import common, miniature, report
from replbook.profiles import ParameterError, config, resolve
from replbook.segmentation import predict


def smoke(**overrides):
    return resolve(smg.PARAMS, "smoke", {"workers": 1, **overrides})


def smd_setup(p):
    return config(common.SMDSetup, p)


def arm_setup(p):
    return config(common.ArmSetup, p)


def study_of(p):
    return miniature.make_study(p["seen"], p["unseen"], p["n_train"], p["n_test"], p["size"])


def dice_of(results) -> dict:
    """seed → arm → stage → site → Dice per image, as lists (comparable with ==)."""
    return {s: {arm: [{site: list(v) for site, v in stage.items()} for stage in r.dice] for arm, r in arms.items()}
            for s, arms in results.seeds.items()}


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
    study = study_of(smoke())
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
    a = common.appearance_shift(x, torch.Generator().manual_seed(1))
    b = common.appearance_shift(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.abs().max() <= 1 and not torch.equal(a, x)


# ------------------------------------------------------------------------------------------------ protocol pieces


def test_prior_baseline_by_hand():
    site = common.Site("A", "", torch.zeros(2, 1, 1, 2), torch.tensor([[[1, 0]], [[1, 1]]]),
                       torch.zeros(2, 1, 1, 2), torch.tensor([[[1, 0]], [[0, 0]]]))
    study = common.Study(("x",), [site, site], [site])
    # the training maps of both seen sites: pixel 0 is label 1 four times; pixel 1 is 0 twice and 1 twice, and argmax
    # takes the first maximum (0): the prior map is [1, 0]. Test image [1, 0] → Dice 1; test image [0, 0] → the
    # prior's label 1 is a false positive → Dice 0.
    prior = common.prior_baseline(study)
    assert list(prior["A"]) == [1.0, 0.0]


def test_past_for_arm_labels_replay_with_the_previous_segmenter(tmp_cache):
    p = smoke()
    study = study_of(p)
    run = common.run_smd(smd_setup(p), study)
    assert [len(b.ids) for b in run.banks] == [6, 12]  # n_replay per site seen so far
    previous = common.build_segmenter(arm_setup(p), 1, 4)
    fraction = p["buffer_fraction"]
    past = common.past_for_arm("SMD replay", fraction, 2, study, run, previous, seed=0)
    assert sorted(past) == [0, 1]
    images, labels = past[1]
    assert images.shape == (6, 1, 16, 16) and torch.equal(labels, predict(previous, images, study.labels))
    buffer = common.past_for_arm("real buffer", fraction, 2, study, run, previous, seed=0)
    assert [len(v[0]) for v in buffer.values()] == [3, 3]  # 10 % of 32 images
    assert common.past_for_arm("sequential fine-tuning", fraction, 2, study, run, previous, 0) == {}
    joint = common.past_for_arm("joint training", fraction, 2, study, run, previous, 0)
    assert [len(v[0]) for v in joint.values()] == [32, 32]  # every real image of both past sites


def test_joint_labels_make_the_generator_draw_masks(tmp_cache):
    p = smoke(labels="joint", seen=["S1", "S2"])
    study = study_of(p)
    run = common.run_smd(smd_setup(p), study)
    (images, masks), = run.replay(1, 1, 4).values()
    assert images.shape == (6, 1, 16, 16) and masks.shape == (6, 16, 16)
    assert masks.min() >= 0 and masks.max() <= 3


def test_prompts_only_leaves_the_unet_of_the_first_site(tmp_cache):
    p = smoke(smd_update="prompts_only", seen=["S1", "S2", "S3"])
    study, setup = study_of(p), smd_setup(p)
    gen = common.build_smd(setup, 3, 1)
    common.train_smd_stage(gen, setup, 0, study.seen[0], 4, {}, seed=0)
    unet_before = {k: v.clone() for k, v in gen.unet.state_dict().items()}
    prompts_before = gen.prompts.tokens.detach().clone()
    common.train_smd_stage(gen, setup, 1, study.seen[1], 4, {0: study.seen[0].train_images}, seed=0)
    assert all(torch.equal(v, gen.unet.state_dict()[k]) for k, v in unet_before.items())
    moved = (gen.prompts.tokens.detach() - prompts_before).abs().sum((1, 2))
    assert moved[1] > 0 and moved[0] == 0 and moved[2] == 0


# ------------------------------------------------------------------------------------------------ the smoke run


@pytest.fixture(scope="module")
def smoke_out():
    """The smoke profile's saved results (trained once, in their own process, by ``make smoke-results`` or
    ``ensure_smoke_results``) and a rerun here from the weight cache they left: the rerun must reproduce them."""
    from conftest import ensure_smoke_results

    from replbook import results as saved

    p = smoke()
    assert p == resolve(smg.PARAMS, "smoke")  # the smoke profile's own parameters: the saved results are theirs
    out = saved.load(ensure_smoke_results("smg") / "smg" / "smoke.json", smg.RESULTS)
    again = smg.run(p)  # the checkout's weight cache: nothing trains
    return p, out, again


def test_smoke_run_covers_every_arm_stage_and_site(smoke_out):
    p, out, _ = smoke_out
    assert isinstance(out, smg.RESULTS)
    assert sorted(out.seeds) == [0, 1]
    for arms in out.seeds.values():
        assert list(arms) == p["arms"]
        for r in arms.values():
            assert len(r.dice) == 3  # one entry per seen site's stage
            assert all(sorted(stage) == ["S1", "S2", "S3", "S5"] for stage in r.dice)
            assert all(len(v) == 12 and all(0 <= x <= 1 for x in v) for v in r.dice[-1].values())
    # every arm starts from the seed's shared first stage
    first = dice_of(out)[0]
    assert all(d[0] == first[p["arms"][0]][0] for d in first.values())
    assert len(out.smd_curves) == 2 and all(len(c) == p["gen_steps"] for c in out.smd_curves)
    assert list(out.real) == list(out.replayed) == ["S1", "S2"]  # the past sites of the last stage
    assert out.replayed["S2"].shape == (6, 16, 16)  # n_replay = 6 images per site, grey, in [0, 1]
    assert 0 <= out.replayed["S2"].min() and out.replayed["S2"].max() <= 1


def test_smoke_run_is_deterministic_through_the_cache(smoke_out):
    _, out, again = smoke_out
    assert dice_of(again) == dice_of(out)


def test_workers_give_the_same_results(tmp_path, monkeypatch):
    """Two one-thread workers reproduce one process with one thread (a different thread count changes float rounding,
    and so can change a pixel)."""
    arms = ["sequential fine-tuning", "SMD replay", "SMG (SMD + PGA)"]
    monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / "one"))
    single = smg.run(smoke(workers=1, threads=1, seeds=1, arms=arms))
    monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / "two"))
    parallel = smg.run(smoke(workers=2, threads=2, seeds=1, arms=arms))
    assert dice_of(parallel) == dice_of(single)


def test_smoke_report_and_claims(smoke_out):
    p, out, _ = smoke_out
    taylor = out.taylor  # computed with the results, on the run's own first-stage segmenter
    ratios = [r.ratio for r in taylor.rows if r.ratio is not None]
    assert len(ratios) == 2 and all(3 < r < 5 for r in ratios)  # the gap is O(α²) on the chapter's own segmenter
    assert all(r.grad_cosine > 0.99 for r in taylor.rows)
    claims = report.claims(out, p)
    assert [c.id for c in claims] == ["C1a", "C1b", "C2", "C3", "C4", "C5a", "C5b"]
    assert next(c for c in claims if c.id == "C4").verdict == "illustrated"  # our own identity: never "reproduced"
    assert [q.id for q in report.premises(out, p)] == ["R1", "R2", "R3"]
    table = report.final_table(out)
    assert report.PRIOR in table.index and ("mean", "unseen") in table.columns
    assert len(report.differences_table(out)) == 11
    assert len(report.taylor_table(out)) == 3 and "alignment moves the gradient" in report.taylor_line(out)
    for figure in (report.plot_stages, report.plot_tradeoff, report.plot_replay, report.plot_generator_loss):
        assert figure(out).axes  # every figure draws from the smoke run (the replay figure with 6 images per site)
    plt.close("all")
    assert [s.name for s in out.seen] == ["S1", "S2", "S3"] and [s.name for s in out.unseen] == ["S5"]
    segmenter = common.build_segmenter(arm_setup(p), 1, 4)
    assert out.model_sizes["segmenter (UNet)"] == sum(q.numel() for q in segmenter.parameters())


def test_the_page_renders_from_the_saved_results_alone(smoke_out):
    """The results survive their round trip through JSON + arrays, and the page's claims, tables and sentences come
    out the same from the saved copy."""
    p, out, _ = smoke_out
    data, arrays = out.to_data()
    loaded = smg.RESULTS.from_data(json.loads(json.dumps(data, allow_nan=False)), arrays)
    assert dice_of(loaded) == dice_of(out)
    assert [c.as_dict() for c in report.claims(loaded, p)] == [c.as_dict() for c in report.claims(out, p)]
    assert report.reading(loaded).data == report.reading(out).data
    assert report.final_table(loaded).equals(report.final_table(out))
    assert loaded.taylor == out.taylor


# ------------------------------------------------------------------------------------------------ verdict rules


def fake_out(scores: dict[str, tuple[float, float]], seeds: int = 3, n: int = 20, noise: float = 0.01,
             first_unseen: float = 0.9, taylor: common.TaylorCheck | None = None) -> common.SmgResults:
    """Results where each arm's Dice is (past-site level, unseen level) plus small per-seed, per-image noise; the last
    seen site is 0.9 for every arm, and every site 0.9 after the first stages, except the unseen site after the
    first stage (``first_unseen``: the first-site model R1 reads); the no-input prior scores 0.1."""
    site = lambda name: common.SiteInfo(name, "")  # noqa: E731
    rng = np.random.default_rng(0)
    out = common.SmgResults([site("S1"), site("S2"), site("S3")], [site("S5")], {},
                            {s: np.full(n, 0.1) for s in ("S1", "S2", "S3", "S5")}, [], {}, {}, taylor, {})
    for s in range(seeds):
        arms = {}
        for arm, (past, unseen) in scores.items():
            def level(v: float) -> np.ndarray:
                return np.clip(v + rng.normal(0, noise, n), 0, 1)
            last = {"S1": level(past), "S2": level(past), "S3": level(0.9), "S5": level(unseen)}
            first = {**{k: level(0.9) for k in last}, "S5": level(first_unseen)}
            stages = [first, {k: level(0.9) for k in last}, last]
            arms[arm] = common.ArmResult(s, arm, stages, [])
        out.seeds[s] = arms
    return out


ALL = {"sequential fine-tuning": (0.3, 0.4), "EWC": (0.35, 0.4), "LwF": (0.35, 0.4), "MLDG (no memory)": (0.3, 0.45),
       "SMD replay": (0.7, 0.5), "SMD + orientational": (0.7, 0.5), "SMD + arbitrary": (0.7, 0.55)}
#: The premises' reference arms: joint training generalises (0.6 on the unseen site against the prior's 0.1), the real
#: buffer keeps the past sites 0.01 above SMD replay.
REFERENCE = {"joint training": (0.95, 0.6), "real buffer": (0.71, 0.5)}
PARAMS = {"profile": "cpu", "beta": 2e-3}


def judged(results) -> dict:
    """The claims by their own rules, before the premises."""
    return {c.id: c for c in report.judged(results, "cpu", 2e-3)}


def verdicts(scores: dict, **kw) -> dict[str, str]:
    return {cid: c.verdict for cid, c in judged(fake_out(scores, **kw)).items()}


def taylor_check(ratios=(3.9, 4.0), share=0.1, cosine=0.9996) -> common.TaylorCheck:
    rows = [common.TaylorRow(8e-3, 1e-2, 0.92), common.TaylorRow(4e-3, 1e-2 / ratios[0], 0.99, ratios[0]),
            common.TaylorRow(2e-3, 1e-2 / ratios[0] / ratios[1], cosine, ratios[1])]
    return common.TaylorCheck(rows, 0.5, -2.8, share, 2e-3, 0.009, 0.4, 0.05, 2.5, -0.26)


def test_rules_reproduce_when_smg_leads_on_both_axes():
    v = verdicts({**ALL, "SMG (SMD + PGA)": (0.75, 0.6)})
    assert v == {"C1a": "reproduced", "C1b": "reproduced", "C2": "reproduced", "C3": "reproduced",
                 "C4": "not comparable", "C5a": "reproduced", "C5b": "reproduced"}  # C4: no Taylor check here


def test_rules_fail_when_smg_is_plain_mixing():
    """Finding 3: where replay does all the work, C1a (replay keeps the seen sites) holds and C1b (the alignment
    adds to replay) fails: a null no longer passes under "enhances memorizability"."""
    results = fake_out({**ALL, "SMG (SMD + PGA)": (0.7, 0.5)})
    for arms in results.seeds.values():  # SMG ends where plain mixing does, image for image
        arms["SMG (SMD + PGA)"] = common.ArmResult(arms["SMD replay"].seed, "SMG (SMD + PGA)",
                                                   arms["SMD replay"].dice, [])
    v = {cid: c.verdict for cid, c in judged(results).items()}
    assert v["C1a"] == "reproduced"  # far above fine-tuning
    assert v["C1b"] == "not reproduced"  # no gain over mixing: the interval excludes +0.02
    assert v["C2"] == "not reproduced"  # no unseen gain over mixing: the interval excludes +0.02
    assert v["C3"] == "partly"  # three parts hold; arbitrary-only is 0.05 better on unseen sites
    assert v["C5a"] == v["C5b"] == "reproduced"
    assert verdicts({**ALL, "SMG (SMD + PGA)": (0.7, 0.5)})["C2"] == "not reproduced"  # with its own noise too


def test_rules_reach_partly_and_inconclusive():
    v = verdicts({**ALL, "SMG (SMD + PGA)": (0.71, 0.51)}, noise=0.001)
    assert v["C1b"] == "partly" and v["C2"] == "partly"  # above 0, short of our +0.02
    c = judged(fake_out({**ALL, "SMG (SMD + PGA)": (0.7, 0.51)}, noise=0.3))["C2"]
    assert c.verdict == "inconclusive" and "would decide it" in c.reason


def test_c4_is_illustrated_whatever_the_ratios():
    ok = judged(fake_out({**ALL, "SMG (SMD + PGA)": (0.75, 0.6)}, taylor=taylor_check()))["C4"]
    assert ok.verdict == "illustrated" and ok.rule.kind == "illustrated" and "3.90, 4.00" in ok.ours
    off = judged(fake_out({**ALL, "SMG (SMD + PGA)": (0.75, 0.6)}, taylor=taylor_check((2.0, 2.0))))["C4"]
    assert off.verdict == "illustrated" and "points to the implementation" in off.reason


def test_missing_arms_are_not_comparable():
    v = verdicts({"sequential fine-tuning": (0.3, 0.4), "SMD replay": (0.7, 0.5), "SMG (SMD + PGA)": (0.75, 0.6)})
    assert v["C3"] == v["C5a"] == v["C5b"] == "not comparable" and v["C1a"] == "reproduced"


# ------------------------------------------------------------------------------------------------ premises


def premises(**kw) -> dict:
    return {p.id: p for p in report.premises(fake_out(kw.pop("scores", {**ALL, **REFERENCE}), **kw), PARAMS)}


def test_r1_reads_joint_training_against_the_prior_and_the_first_site_model():
    assert premises(first_unseen=0.3)["R1"].holds is True  # 0.6 − 0.1 ≥ 0.15 and 0.6 − 0.3 ≥ 0.2
    assert premises(first_unseen=0.5)["R1"].holds is False  # the first-site model is only 0.1 below joint
    weak = premises(scores={**ALL, **REFERENCE, "joint training": (0.95, 0.2)}, first_unseen=0.0)["R1"]
    over_prior = float(re.search(r"joint − prior: S5 ([+-][0-9.]+)", weak.measured).group(1))
    assert weak.holds is False and over_prior == pytest.approx(0.1, abs=0.01)  # joint barely above the prior
    assert premises(scores=ALL)["R1"].holds is None  # no joint-training arm: not measured


def test_r2_is_not_measured_and_names_its_proxies():
    r2 = premises()["R2"]
    assert (r2.holds, r2.measured) == (None, "not measured") and "issue 31" in r2.note
    r2 = premises(taylor=taylor_check())["R2"]
    assert r2.holds is None and "0.9996" in r2.note and "at most 5.7°" in r2.note  # asin(0.1) = 5.74°


def test_r3_holds_when_smd_replay_is_near_the_real_buffer():
    assert premises()["R3"].holds is True
    far = premises(scores={**ALL, **REFERENCE, "real buffer": (0.8, 0.5)})["R3"]
    assert far.holds is False and far.measured.startswith("0.1")
    assert premises(scores=ALL)["R3"].holds is None


def test_premises_make_claims_not_comparable_and_keep_their_rule(monkeypatch):
    results = fake_out({**ALL, **REFERENCE, "SMG (SMD + PGA)": (0.75, 0.6)}, first_unseen=0.3,
                       taylor=taylor_check())
    claims = {c.id: c for c in report.claims(results, PARAMS)}  # R1 and R3 hold; R2 is not measured
    assert claims["C1a"].verdict == "reproduced" and claims["C4"].verdict == "illustrated"
    for cid in ("C1b", "C2", "C3", "C5a", "C5b"):
        assert claims[cid].verdict == "not comparable" and "R2" in claims[cid].reason, cid
        assert claims[cid].rule.verdict == "reproduced"  # the rule and its estimate stay in the row
    holding = [replace(p, holds=True) for p in report.premises(results, PARAMS)]
    monkeypatch.setattr(report, "premises", lambda results, params: holding)
    assert {c.id: c.verdict for c in report.claims(results, PARAMS)} == {
        "C1a": "reproduced", "C1b": "reproduced", "C2": "reproduced", "C3": "reproduced", "C4": "illustrated",
        "C5a": "reproduced", "C5b": "reproduced"}
    r3_fails = [replace(p, holds=p.id != "R3") for p in holding]
    monkeypatch.setattr(report, "premises", lambda results, params: r3_fails)
    claims = {c.id: c.verdict for c in report.claims(results, PARAMS)}
    assert claims["C1a"] == "not comparable" and claims["C4"] == "illustrated"


def test_every_tested_claim_names_its_premises():
    results = fake_out({**ALL, **REFERENCE, "SMG (SMD + PGA)": (0.75, 0.6)}, taylor=taylor_check())
    for c in report.judged(results, "cpu", 2e-3):
        assert c.premises or c.rule.kind == "illustrated", c.id
