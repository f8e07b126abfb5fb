"""The FedProphet chapter without Flower's engines: the parameters, a client's local round per arm, the radius
measurement, the client split, the paper profile's loading code on generated CIFAR files, and every verdict rule on
hand-made results. (Flower itself runs in tests/test_federated.py, in a loopback-only namespace.)"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import write_fake_cifar

from replbook.experiments import fedprophet as chapter
from replbook.experiments.fedprophet import common, report
from replbook.experiments.fedprophet.common import FedProphetResults
from replbook.experiments.fedprophet.data import build_atoms, load_data
from replbook.experiments.fedprophet.engine import Experiment, arm_specs, results_of, settings
from replbook.profiles import ParameterError, config, resolve

CFG = dict(eps=0.1, step=0.05, train_steps=1, local_steps=2, batch_size=8, lr=0.05, mu=1e-3, psi=1.0, alpha=0.3,
           stage_eps=1.0, adversarial=True, measure_samples=8)


def tiny_model(seed: int = 0) -> common.Cascade:
    s = {"model": "even_cnn", "width": 2, "blocks": 1, "batch_norm": True, "num_classes": 10,
         "input_shape": [1, 28, 28]}
    p = common.plan(build_atoms(s), (8, 1, 28, 28), 10, 0.5, "flatten")
    torch.manual_seed(seed)
    return common.Cascade(build_atoms(s), p["modules"], p["out_shapes"], 10, "flatten")


def data(n: int = 16):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_the_tiny_cascade_has_several_modules():
    assert tiny_model().n_modules >= 2


def test_a_cascade_client_returns_only_its_modules_and_heads_and_leaves_the_prefix_alone():
    model, (x, y) = tiny_model(), data()
    before = copy.deepcopy(model.state_dict())
    r = common.local_train(model, x, y, {**CFG, "arm": "cascade", "modules": [1]}, 123, seed=0)
    assert set(r.state) == set(model.keys([1], [1] if "1" in model.heads else []))
    prefix = model.keys([0], [0])  # frozen, batch-norm statistics included (the prefix runs in eval mode)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in prefix)
    assert any(not torch.equal(r.state[k], before[k]) for k in r.state)
    assert r.peak_bytes > 0 and r.predicted_bytes == 123 and r.n_samples == len(x) and np.isfinite(r.loss)


def test_a_jfat_client_trains_every_atom_and_no_head():
    model, (x, y) = tiny_model(), data()
    r = common.local_train(model, x, y, {**CFG, "arm": "jfat", "modules": list(range(model.n_modules))}, 0, seed=0)
    assert set(r.state) == set(model.keys(list(range(model.n_modules)), []))
    assert not any(k.startswith("heads.") for k in r.state)


def test_a_prophet_client_trains_the_stage_module_and_the_next_with_the_deepest_head():
    model, (x, y) = tiny_model(), data()
    deepest_head = [1] if "1" in model.heads else []
    # ψ = 1: the stage head gets no gradient, so the client does not return it (it would dilute the average)
    r = common.local_train(model, x, y, {**CFG, "arm": "fedprophet", "modules": [0, 1]}, 0, seed=0)
    assert set(r.state) == set(model.keys([0, 1], deepest_head))
    r = common.local_train(model, x, y, {**CFG, "psi": 0.5, "arm": "fedprophet", "modules": [0, 1]}, 0, seed=0)
    assert set(r.state) == set(model.keys([0, 1], [0, *deepest_head]))


def test_local_training_is_deterministic_in_its_seed():
    runs = [common.local_train(tiny_model(), *data(), {**CFG, "arm": "cascade", "modules": [0]}, 0, seed=s)
            for s in (5, 5, 6)]
    assert all(torch.equal(runs[0].state[k], runs[1].state[k]) for k in runs[0].state)
    assert any(not torch.equal(runs[0].state[k], runs[2].state[k]) for k in runs[0].state)


def test_the_radius_measurement_is_a_mean_displacement_within_the_attack():
    model, (x, y) = tiny_model(), data()
    total, norms, count = common.measure_displacement(model, x, y, 0, CFG, seed=0)
    assert count == CFG["measure_samples"] and total > 0 and norms > 0
    small, _, _ = common.measure_displacement(model, x, y, 0, {**CFG, "eps": 0.01}, seed=0)
    assert small < total  # a smaller pixel radius moves the module's output less


def test_split_clients_iid_and_dirichlet():
    labels = np.repeat(np.arange(10), 30)
    iid = common.split_clients(labels, 3, "iid", 1.0, seed=0)
    assert sorted(np.concatenate(iid).tolist()) == list(range(300)) and {len(p) for p in iid} == {100}
    skew = common.split_clients(labels, 3, "dirichlet", 0.1, seed=0)
    assert sorted(np.concatenate(skew).tolist()) == list(range(300))
    assert common.split_clients(labels, 3, "dirichlet", 0.1, seed=0)[0].tolist() == skew[0].tolist()
    with pytest.raises(ValueError, match="client .* received no samples"):
        common.split_clients(np.zeros(3, dtype=int), 5, "dirichlet", 0.01, seed=0)


def test_parameters_are_checked_before_any_work():
    with pytest.raises(ParameterError, match="clients_per_round"):
        resolve(chapter.PARAMS, "smoke", {"clients_per_round": 9})
    with pytest.raises(ParameterError, match="client_perf.*one value per client"):
        resolve(chapter.PARAMS, "smoke", {"client_perf": [1.0]})
    with pytest.raises(ParameterError, match="add 'cascade' to 'arms'"):
        resolve(chapter.PARAMS, "smoke", {"arms": ["jfat", "fedprophet"]})
    with pytest.raises(ParameterError, match="client_mem_multiples.*every client must fit one module"):
        resolve(chapter.PARAMS, "smoke", {"client_mem_multiples": [0.5, 1.0, 1.0]})
    with pytest.raises(ParameterError, match="warmup_rounds"):
        resolve(chapter.PARAMS, "smoke", {"warmup_rounds": 3})


def test_the_arms_run_in_order_with_fedprophets_mu_selected():
    e = config(Experiment, resolve(chapter.PARAMS, "cpu", {}))
    specs = arm_specs(e.arms, e.mus, e.ablate_apa, e.ablate_dma)
    names = [a["name"] for a in specs]
    assert names == ["jFAT", "cascade μ=0", "cascade μ=0.001", "FedProphet", "FedProphet − APA"]
    assert specs[-2]["mu"] == specs[-1]["mu"] == "select" and specs[-1]["apa"] is False
    assert arm_specs(e.arms, [0.0], False, e.ablate_dma)[-1]["mu"] == 0.0
    assert arm_specs(e.arms, e.mus, e.ablate_apa, True)[-1] == {"name": "FedProphet − DMA", "arm": "fedprophet",
                                                                "mu": "select", "dma": "off"}
    s = settings(e)
    assert s["seeds"] == [0, 1, 2] and s["n_clients"] == 6 and s["input_shape"] == [1, 28, 28]


def test_the_paper_profile_loads_cifar10_and_trains_vgg16_bn_on_generated_images(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    folder, env = write_fake_cifar(tmp_path, "cifar10", n_train=60, n_test=20)
    monkeypatch.setenv(env, str(folder))
    p = resolve(chapter.PARAMS, "paper", {"clients": 2, "clients_per_round": 2, "n_train": 30, "n_val": 16,
                                          "n_test": 16, "seeds": 1, "batch_size": 4,
                                          "client_mem_multiples": [1.0, 2.0], "client_perf": [1.0, 2.0]})
    s = settings(config(Experiment, p))
    d = load_data(s)
    (x, y), _ = d["clients"][0]
    assert x.shape[1:] == (3, 32, 32) and d["test"][0].shape == (16, 3, 32, 32)
    plan = common.plan(build_atoms(s), (4, 3, 32, 32), 10, s["budget_fraction"], s["head_rule"], 60_000_000)
    assert plan["budget_bytes"] == 60_000_000 and sum(len(m) for m in plan["modules"]) == 14  # 13 convs + fc
    model = common.Cascade(build_atoms(s), plan["modules"], plan["out_shapes"], 10, s["head_rule"])
    r = common.local_train(model, x, y, {**CFG, "batch_size": 4, "local_steps": 1, "arm": "cascade",
                                         "modules": [0], "eps": 8 / 255, "step": 2 / 255}, 0, seed=0)
    assert r.state and all(k.startswith(("atoms.", "heads.0.")) for k in r.state)
    acc = common.evaluate(model, *d["test"], 8 / 255, 2 / 255, 1)
    assert set(acc) == {"clean", "pgd"} and all(0 <= v <= 1 for v in acc.values())
    (folder / "test_batch").write_bytes(b"altered")
    with pytest.raises(Exception, match="md5"):
        load_data(s)


# ------------------------------------------------------------------------------------------------ verdict rules


def fake_results(accs: dict[str, list[tuple[float, float]]], vals: dict[str, list[float]] | None = None,
                 memory: dict[str, int] | None = None, seconds: dict[str, float] | None = None,
                 predicted: dict[str, int] | None = None,
                 val_curve: list[float] | None = None) -> FedProphetResults:
    """Runs with the given test (clean, PGD) per seed; every client of every arm with the arm's memory (and the
    partitioner's prediction, the same unless ``predicted`` says otherwise) and time; every arm's per-round validation
    log follows ``val_curve`` (two stages of its length for a cascade, one for jFAT; no log when None). Built as the
    ServerApp's output (:func:`flower_app.serve`) and read by :func:`engine.results_of`, as a run is."""
    mus = {"jFAT": 0.0, "FedProphet": 1e-3, "FedProphet − APA": 1e-3}
    runs = []
    for arm, per_seed in accs.items():
        kind = "jfat" if arm == "jFAT" else "fedprophet" if arm.startswith("FedProphet") else "cascade"
        mu = float(arm.split("=")[1]) if "=" in arm else mus[arm]
        curve = list(val_curve or [])
        stages = [0] * len(curve) if kind == "jfat" else [0] * len(curve) + [1] * len(curve)
        log = [{"round": i + 1, "stage": st, "alpha": 1.0, "stage_eps": 0.0, "val_clean": v, "val_pgd": v}
               for i, (st, v) in enumerate(zip(stages, (curve * 2)[:len(stages)], strict=True))]
        for seed, (clean, pgd) in enumerate(per_seed):
            val = (vals or {}).get(arm, [0.5] * len(per_seed))[seed]
            peak = (memory or {}).get(arm, 100)
            clients = {str(pid): [{"pid": pid, "round": 1, "stage": 0, "peak_bytes": peak,
                                   "predicted_bytes": (predicted or {}).get(arm, peak),
                                   "seconds": (seconds or {}).get(arm, 1.0), "modules": [0]}]
                       for pid in range(2)}
            runs.append({"seed": seed, "arm": arm, "kind": kind, "mu": mu, "test": {"clean": clean, "pgd": pgd},
                         "val": {"clean": val, "pgd": val}, "clients": clients, "bytes_down": 1, "bytes_up": 1,
                         "stage_eps": [0.0, 1.0], "stage_norm": [2.0], "log": log, "seconds": 0.0})
    s = {"client_mem_multiples": [1.0, 2.0], "client_perf": [1.0, 1.0], "strong_eval": 0, "rounds": 1,
         "warmup_rounds": 0}
    plan = {"modules": [["a"], ["b"]], "budget_bytes": 40, "full_bytes": 100, "module_bytes": [40, 40],
            "module_macs": [1, 1], "atoms": [["a", 40, 1], ["b", 40, 1]]}
    return results_of(s, {"plan": plan, "runs": runs})


def verdicts(results: FedProphetResults) -> dict[str, str]:
    """Each claim's verdict by its rule alone (before the premises)."""
    return {c.id: c.verdict for c in report.judged(results, "cpu")}


def verdicts_with_premises(results: FedProphetResults) -> dict[str, str]:
    return {c.id: c.verdict for c in report.claims(results, {"profile": "cpu"})}


SEEDS3 = [(0.70, 0.50), (0.72, 0.52), (0.71, 0.49)]
PLATEAU = [0.3, 0.5, 0.6, 0.55, 0.55]  # the best round (3) is not among the last ⌈0.2·5⌉ = 1
RISING = [0.3, 0.4, 0.5, 0.55, 0.6]  # still improving at the cap


def shifted(d_clean: float, d_pgd: float, noise: tuple[float, float, float] = (0.0, 0.004, -0.003)):
    return [(c + d_clean + n, p + d_pgd - n) for (c, p), n in zip(SEEDS3, noise, strict=True)]


def test_c1_reproduced_when_fedprophet_is_within_the_margin_and_not_when_far_below():
    close = fake_results({"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.1), "FedProphet": shifted(-0.002, 0.001)})
    assert verdicts(close)["C1"] == "reproduced"
    far = fake_results({"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.1), "FedProphet": shifted(-0.10, -0.20)})
    assert verdicts(far)["C1"] == "not reproduced"
    mixed = fake_results({"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.1), "FedProphet": shifted(0.0, -0.20)})
    assert verdicts(mixed)["C1"] == "partly"
    wide = fake_results({"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.1),
                         "FedProphet": shifted(-0.02, -0.02, noise=(0.0, 0.05, -0.05))})
    assert verdicts(wide)["C1"] == "inconclusive"


@pytest.mark.parametrize("fed_memory", [15, 50, 90])
def test_c2_is_illustrated_whatever_the_saving_and_shows_it_beside_the_planned_budget(fed_memory):
    r = fake_results({"jFAT": SEEDS3, "FedProphet": SEEDS3}, memory={"jFAT": 100, "FedProphet": fed_memory})
    c2 = next(c for c in report.claims(r, {"profile": "cpu"}) if c.id == "C2")
    assert c2.verdict == "illustrated" and c2.rule.kind == "illustrated" and not c2.premises
    assert f"measured saving {1 - fed_memory / 100:.0%}" in c2.ours and "over it" in c2.ours
    assert report.saving(r) == pytest.approx(1 - fed_memory / 100)


def test_c3_selects_mu_on_validation_never_on_test():
    accs = {"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.2), "cascade μ=0.001": shifted(0, -0.1),
            "cascade μ=0.01": shifted(0, -0.25)}
    # validation prefers μ = 0.001 (more robust on test): reproduced
    good = fake_results(accs, vals={"cascade μ=0.001": [0.9] * 3, "cascade μ=0.01": [0.1] * 3})
    assert verdicts(good)["C3"] == "reproduced"
    # validation prefers μ = 0.01 (less robust on test than μ = 0): the better test arm must not be picked
    bad = fake_results(accs, vals={"cascade μ=0.001": [0.1] * 3, "cascade μ=0.01": [0.9] * 3})
    assert verdicts(bad)["C3"] == "not reproduced"
    claim = next(c for c in report.judged(bad, "cpu") if c.id == "C3")
    assert "0.01, 0.01, 0.01" in claim.ours
    small = fake_results({**accs, "cascade μ=0.001": shifted(0, -0.19)}, vals={"cascade μ=0.001": [0.9] * 3})
    assert verdicts(small)["C3"] == "partly"


def test_c4_and_c5():
    r = fake_results({"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.1), "FedProphet": SEEDS3},
                     seconds={"jFAT": 3.0, "FedProphet": 1.0})
    v = verdicts(r)
    assert v["C4"] == "reproduced" and v["C5"] == "partly"  # 3× faster: short of 10.8×
    same = fake_results({"jFAT": SEEDS3, "cascade μ=0": shifted(0, 0.001), "FedProphet": SEEDS3},
                        seconds={"jFAT": 1.0, "FedProphet": 1.0})
    v = verdicts(same)
    assert v["C4"] == "not reproduced" and v["C5"] == "not reproduced"  # equal times: no speed-up
    fast = fake_results({"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.03), "FedProphet": SEEDS3},
                        seconds={"jFAT": 20.0, "FedProphet": 1.0})
    v = verdicts(fast)
    assert v["C4"] == "partly" and v["C5"] == "reproduced"  # 20× reaches the paper's 10.8×


def test_the_premises_hold_and_fail_and_turn_the_claims_they_name_not_comparable():
    accs = {"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.1), "cascade μ=0.001": shifted(0, -0.05),
            "FedProphet": shifted(-0.002, 0.001)}
    settled = fake_results(accs, val_curve=PLATEAU)
    r1, r2, r3 = report.premises(settled, {"profile": "cpu"})
    assert (r1.id, r1.holds, r1.measured) == ("R1", True, "0 of 21 stages")  # jFAT 3, the others 3 × 3 × 2
    assert r2.holds is True and r2.measured == "0%" and r3.holds is False
    v = verdicts_with_premises(settled)
    assert v["C1"] == "reproduced" and v["C3"] == "reproduced" and v["C4"] == "reproduced"
    assert v["C2"] == "illustrated" and v["C5"] == "not comparable"  # R3: no swapping modelled, by construction
    assert "R3" in next(c for c in report.claims(settled, {"profile": "cpu"}) if c.id == "C5").reason

    rising = fake_results(accs, val_curve=RISING)
    r1 = report.premises(rising, {"profile": "cpu"})[0]
    assert r1.holds is False and r1.measured == "21 of 21 stages"
    v = verdicts_with_premises(rising)
    assert v["C1"] == v["C3"] == v["C4"] == "not comparable" and v["C2"] == "illustrated"
    c4 = next(c for c in report.claims(rising, {"profile": "cpu"}) if c.id == "C4")
    assert "R1" in c4.reason and "would give reproduced" in c4.reason and c4.rule.estimate.mean > 0.09

    off = fake_results(accs, val_curve=PLATEAU, predicted={"FedProphet": 70})  # the model under-predicts by 30%
    r2 = report.premises(off, {"profile": "cpu"})[1]
    assert r2.holds is False and r2.measured == "30%"
    v = verdicts_with_premises(off)
    assert v["C1"] == "not comparable" and v["C4"] == "reproduced"  # only C1 needs R2

    assert report.premises(fake_results(accs), {"profile": "cpu"})[0].holds is None  # no log: not measured


def test_the_stage_stops_follow_the_servers_own_selection_score():
    r = fake_results({"jFAT": SEEDS3, "cascade μ=0": SEEDS3}, val_curve=PLATEAU)
    cascade = next(x for x in r.runs if x.arm == "cascade μ=0")
    stops = report.stage_stops(cascade)
    assert [(x["stage"], x["rounds"], x["kept"], x["tail"], x["plateau"]) for x in stops] == \
        [(0, 5, 3, 1, True), (1, 5, 3, 1, True)]
    jfat = report.stage_stops(next(x for x in r.runs if x.arm == "jFAT"))
    assert [(x["rounds"], x["kept"], x["tail"]) for x in jfat] == [(5, 3, 1)]
    # every warm-up round is kept, as the server does
    assert report.stage_stops(cascade, warmup_rounds=5)[0]["kept"] == 5
    table = report.stopping_table(fake_results({"jFAT": SEEDS3}, val_curve=RISING))
    assert table.loc["jFAT", "kept round in the last ⌈0.2·R⌉"] == 3


def test_every_estimate_names_the_results_field_it_reads():
    from test_verdict_oracle import check_from, estimates

    r = fake_results({"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.1), "cascade μ=0.001": shifted(0, -0.05),
                      "FedProphet": shifted(-0.002, 0.001)}, seconds={"jFAT": 3.0, "FedProphet": 1.0},
                     val_curve=PLATEAU)
    checked = 0
    for claim in report.judged(r, "cpu"):
        for estimate, where in estimates(claim.rule.as_dict(), claim.id):
            check_from(estimate, r, where)
            checked += 1
    assert checked == 5  # C1's two parts, C3, C4, C5


def test_the_fedprophet_comparisons_pair_each_seed_with_the_cascade_at_its_mu():
    accs = {"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.1), "cascade μ=0.001": shifted(0, -0.3),
            "FedProphet": shifted(-0.05, -0.2), "FedProphet − APA": shifted(-0.04, -0.2)}
    r = fake_results(accs)  # FedProphet's μ is 0.001 in fake_results: paired with "cascade μ=0.001"
    table = report.fedprophet_table(r)
    assert table.loc["the cascade at the same seed and μ", "clean acc."].startswith("-0.050")
    assert table.loc["the cascade at the same seed and μ", "pgd acc."].startswith("+0.100")
    assert table.loc["FedProphet − APA", "clean acc."].startswith("-0.010")
    assert "No APGD control" in report.masking_sentence(r) and "jFAT's seed sd" in report.spread_sentence(r)
    assert report.apa_sentence(r) == ""  # no per-round log in these fake runs


def test_results_round_trip_as_data_and_give_the_same_claims():
    import json

    r = fake_results({"jFAT": SEEDS3, "cascade μ=0": shifted(0, -0.1), "cascade μ=0.001": shifted(0, -0.05),
                      "FedProphet": shifted(-0.002, 0.001)}, memory={"jFAT": 100, "FedProphet": 50},
                     val_curve=PLATEAU)
    data, arrays = r.to_data()
    back = FedProphetResults.from_data(json.loads(json.dumps(data, allow_nan=False)), arrays)
    assert back.plan == r.plan and back.runs[0].clients.peak_bytes.tolist() == [100, 100]
    first, second = (report.claims(x, {"profile": "cpu"}) for x in (r, back))
    assert [c.as_dict() for c in first] == [c.as_dict() for c in second]
    assert [p.as_dict() for p in report.premises(r, {})] == [p.as_dict() for p in report.premises(back, {})]
    assert report.plan_table(back).attrs["modules"] == 2 and len(report.partition_table(back)) == 3


def test_claims_whose_arms_did_not_run_are_not_comparable():
    v = verdicts(fake_results({"jFAT": SEEDS3}))
    assert v["C1"] == v["C2"] == v["C3"] == v["C4"] == v["C5"] == "not comparable"
    claims = report.judged(fake_results({"jFAT": SEEDS3}), "cpu")
    assert all(c.missing for c in claims)
    assert all(c.premises for c in claims if c.id != "C2")


def write_fake_caltech(root, per_class: int = 3, classes: int = 3):
    """A 256_ObjectCategories-like folder of small JPEGs (plus clutter), its SHA256SUMS and a manifest."""
    from PIL import Image

    from replbook.data.caltech256 import index_folder

    folder = root / "256_ObjectCategories"
    rng = np.random.default_rng(0)
    names = [f"{i + 1:03d}.class{i}" for i in range(classes)] + ["257.clutter"]
    for name in names:
        (folder / name).mkdir(parents=True)
        for j in range(per_class):
            pixels = rng.integers(0, 256, (20 + j, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{name[:3]}_{j + 1:04d}.jpg")
    index_folder(folder)
    manifests = root / "data_manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "caltech256.yaml").write_text(
        "name: caltech256\nkind: dataset\nsource: {url: https://example.org, revision: test}\nlicence: test\n"
        "provider: {type: local, env: REPLBOOK_CALTECH256}\nfiles:\n  - path: SHA256SUMS\n"
        "used_by: [fedprophet]\nstand_in_for: null\n")
    return folder


def test_caltech256_loads_verified_images_per_class_split_without_clutter(tmp_path, monkeypatch):
    from replbook.data.caltech256 import load_caltech256

    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    folder = write_fake_caltech(tmp_path)
    monkeypatch.setenv("REPLBOOK_CALTECH256", str(folder))
    x, y = load_caltech256("train", size=16)
    xt, yt = load_caltech256("test", size=16)
    assert x.shape == (6, 3, 16, 16) and xt.shape == (3, 3, 16, 16) and 0 <= x.min() and x.max() <= 1
    assert sorted(y.tolist()) == [0, 0, 1, 1, 2, 2] and sorted(yt.tolist()) == [0, 1, 2]  # clutter left out
    (folder / "001.class0" / "001_0001.jpg").write_bytes(b"altered")
    with pytest.raises(Exception, match="sha256"):
        load_caltech256("train", size=16)


def test_resnet34_atoms():
    from replbook.models.cascade_cnn import resnet34_atoms

    atoms = resnet34_atoms(256)
    assert len(atoms) == 1 + 16 + 1 and atoms[0][0] == "stem" and atoms[-1][0] == "fc"
    # torchvision's resnet34 has 21,797,672 parameters with a 1000-class head (513,000); ours has a 256-class one
    assert sum(p.numel() for _, a in atoms for p in a.parameters()) == 21_797_672 - 513_000 + 512 * 256 + 256
    z = torch.randn(1, 3, 64, 64)
    for _, atom in atoms:
        z = atom(z)
    assert z.shape == (1, 256)


def test_the_paper_profile_trains_resnet34_on_generated_caltech256_images(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    monkeypatch.setenv("REPLBOOK_CALTECH256", str(write_fake_caltech(tmp_path, per_class=30)))
    p = resolve(chapter.PARAMS, "paper", {"dataset": "caltech256", "model": "resnet34", "image_size": 32,
                                          "clients": 2, "clients_per_round": 2, "n_train": 16, "n_val": 16,
                                          "n_test": 16, "seeds": 1, "batch_size": 2,
                                          "client_mem_multiples": [1.0, 2.0], "client_perf": [1.0, 2.0]})
    s = settings(config(Experiment, p))
    assert s["input_shape"] == [3, 32, 32] and s["num_classes"] == 256
    d = load_data(s)
    (x, y), _ = d["clients"][0]
    plan = common.plan(build_atoms(s), (2, 3, 32, 32), 256, s["budget_fraction"], s["head_rule"], 120_000_000)
    model = common.Cascade(build_atoms(s), plan["modules"], plan["out_shapes"], 256, s["head_rule"])
    r = common.local_train(model, x, y, {**CFG, "batch_size": 2, "local_steps": 1, "arm": "cascade",
                                         "modules": [0], "eps": 8 / 255, "step": 2 / 255}, 0, seed=0)
    assert r.state
    with pytest.raises(ParameterError, match="does not take caltech256 images"):
        resolve(chapter.PARAMS, "paper", {"dataset": "caltech256"})


def test_the_feature_space_attack_stays_in_its_l2_ball_and_above_zero_after_a_relu():
    model, (x, y) = tiny_model(), data(8)
    with torch.no_grad():
        z = model.run(x, 0, 0)  # post-ReLU features: all >= 0
    cfg = {**CFG, "alpha": 0.5, "stage_eps": 2.0, "train_steps": 3}
    z_adv = common.attack_stage_input(model, z, y, 1, 1, cfg, torch.Generator().manual_seed(0))
    moved = (z_adv - z).flatten(1).norm(dim=1)
    assert (moved <= 0.5 * 2.0 + 1e-5).all() and moved.max() > 0.5  # inside α·ε, and it does move
    assert (z_adv >= 0).all()
    loss = common.stage_objective
    assert loss(model, z_adv, y, 1, 1, 1e-3, 1.0) > loss(model, z, y, 1, 1, 1e-3, 1.0)  # it ascends the loss
