"""The LoBAM experiment's plumbing on tiny sizes: one seed of the protocol end to end on random images, the shared
LoRA initialisation, the cache, the stealth rule reading validation data only, the miniature's disjoint splits, the
paper profile on a tiny random CLIPVisionModel and generated npz tasks, and the parameter checks."""

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from replbook.assets import ChecksumMismatch
from replbook.experiments import lobam as experiment
from replbook.experiments.lobam import common, miniature, report
from replbook.profiles import ParameterError, config, resolve

TINY = {"tasks": ["fashion", "digits"], "widths": [16], "layers": 1, "n_train": 32, "n_val": 16, "n_test": 32,
        "lambdas": [1.0, 2.0], "lam_tol": 1.0, "lora_rank": 2, "batch_size": 16, "trigger_epochs": 1}


def tiny_shared(p, seed: int = 0) -> common.Shared:
    """Two tasks of random 28×28 images whose class shows in the mean brightness, a tiny ViT, probe heads."""
    gen = torch.Generator().manual_seed(seed)
    tasks = {}
    for name in p["tasks"]:
        def split(n):
            y = torch.arange(n) % 3
            return (torch.rand(n, 1, 28, 28, generator=gen) * 0.5 + 0.25 * y.view(-1, 1, 1, 1)).clamp(0, 1), y
        (x, y), (xv, yv), (xt, yt) = split(p["n_train"]), split(p["n_val"]), split(p["n_test"])
        tasks[name] = common.Task(name, 3, x, y, xv, yv, xt, yt)
    spec = miniature.encoder_spec(p["layers"], p["widths"][0])
    torch.manual_seed(0)
    encoder = common.build_encoder(spec)
    heads = {n: common.fit_probe(common.features(encoder, t.x_train, 64), t.y_train, 3) for n, t in tasks.items()}
    return common.Shared(spec, {k: v.clone() for k, v in encoder.state_dict().items()}, heads, tasks, p["attacker"])


def test_one_seed_scores_every_upload_and_caches(tmp_cache, monkeypatch):
    p = resolve(experiment.PARAMS, "smoke", {**TINY, "target": 1}, check_assets=False)
    shared = tiny_shared(p)
    protocol = config(common.Protocol, p)
    result = common.run_seed(shared, protocol, seed=0)
    assert set(result.uploads) == {common.CLEAN, common.FULL_FT, common.NAIVE, common.lobam_name(2.0),
                                   common.SCALED, common.SELECTED}
    # the equal-norm control: the naive update scaled to the λ = 2 upload's ‖τ‖
    assert result.uploads[common.SCALED]["norm"] == pytest.approx(result.uploads[common.lobam_name(2.0)]["norm"],
                                                                  rel=1e-4)
    assert set(result.stealth) == {"theta_ben_val", "naive_val", "passes_at_1"}
    assert 1.0 <= result.lam_selected <= p["lam_max"]
    for entry in result.uploads.values():
        assert set(entry["merged"]) == set(common.SCHEMES)
        for scores in entry["merged"].values():
            assert set(scores["ca"]) == set(p["tasks"]) and 0 <= scores["asr"] <= 1
            assert 0 <= scores["target_rate"] <= 1 and 0 <= scores["asr_random"] <= 1
    assert result.uploads[common.NAIVE]["lam"] == 1.0
    assert result.packing_error < 1e-5  # the peft 'cat' adapter equals amplify on the merged weights
    assert set(result.benign_norms) == {"digits"} and set(result.finetuned) == {"fashion", "digits"}
    assert -1 <= result.residual_cosine <= 1
    # λ = 2 doubles the malicious residual: ‖τ_2 − τ_1‖ = ‖τ_1 − τ_ben‖ cannot be checked from norms alone, but
    # the norm of the amplified upload grows
    assert result.uploads[common.lobam_name(2.0)]["norm"] > result.uploads[common.CLEAN]["norm"]
    trained = sorted(p.name for p in (tmp_cache / "models").glob("lobam-*.safetensors"))
    assert len(trained) == 4  # benign user, attacker's benign and malicious LoRA, full-FT backdoor
    def no_training(*args, **kwargs):
        raise AssertionError("a cached fine-tune was retrained")

    monkeypatch.setattr(torch.optim, "AdamW", no_training)  # patched here, the cache key's code stays the same
    again = common.run_seed(shared, protocol, seed=0)  # every fine-tune from the cache: the same numbers
    assert again.uploads == result.uploads and again.lam_selected == result.lam_selected
    # what the page shows of the trigger is stored: its corner square and the square pasted on a grey image
    assert result.trigger.shape == (1, p["patch"], p["patch"]) and result.trigger_shown.shape == (1, 28, 28)
    assert np.allclose(result.trigger_shown[:, -p["patch"]:, -p["patch"]:], result.trigger)
    assert np.all(result.trigger_shown[:, : -p["patch"], :] == 0.5)


def test_the_attackers_two_adapters_share_their_initialisation():
    p = resolve(experiment.PARAMS, "smoke", TINY, check_assets=False)
    spec = miniature.encoder_spec(p["layers"], 16)
    a = common.lora_model(common.build_encoder(spec), 2, "attention", init_seed=7)
    torch.manual_seed(123)  # whatever ran before
    b = common.lora_model(common.build_encoder(spec), 2, "attention", init_seed=7)
    lora_a = {k: v for k, v in a.state_dict().items() if "lora_A" in k}
    assert lora_a and all(torch.equal(v, b.state_dict()[k]) for k, v in lora_a.items())


class Untouchable(torch.Tensor):
    """A tensor that fails on any use: the attacker's test images must not reach the stealth rule."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise AssertionError("the stealth rule read the attacker's test images")


def test_the_attacker_trains_both_adapters_from_one_initialisation_and_order(tmp_cache, monkeypatch):
    """finetune gives the attacker's benign and malicious LoRA the same init and data-order seeds (a different
    task gets others)."""
    p = resolve(experiment.PARAMS, "smoke", TINY, check_assets=False)
    shared = tiny_shared(p)
    seen = []
    real_lora, real_train = common.lora_model, common.train_encoder
    monkeypatch.setattr(common, "lora_model", lambda enc, rank, targets, init_seed: (
        seen.append(("init", init_seed)), real_lora(enc, rank, targets, init_seed))[1])
    monkeypatch.setattr(common, "train_encoder", lambda model, head, task, protocol, order_seed, lr, backdoor=None: (
        seen.append(("order", order_seed)), real_train(model, head, task, protocol, order_seed, lr, backdoor))[1])
    mask = common.lobam.corner_mask((1, 28, 28), 4)
    backdoor = {"patch": torch.ones(1, 28, 28), "mask": mask, "target": 1, "pre": common.build_encoder(
        shared.encoder_spec)}
    attacker, protocol = shared.tasks["fashion"], config(common.Protocol, p)
    common.finetune(shared, attacker, protocol, 3, "lora")
    benign = list(seen)
    seen.clear()
    common.finetune(shared, attacker, protocol, 3, "lora", backdoor)
    assert seen == benign and len(benign) == 2
    seen.clear()
    common.finetune(shared, shared.tasks["digits"], protocol, 3, "lora")
    assert seen != benign


def test_stealth_rule_reads_validation_images_only(tmp_cache):
    """With the attacker's test images made untouchable the rule still runs, and its answer follows the validation
    labels: labels that θ_ben gets all right fail a perturbed upload, labels the upload gets all right pass it."""
    p = resolve(experiment.PARAMS, "smoke", {**TINY, "stealth_rule": "accuracy", "stealth_delta": 0.0},
                check_assets=False)
    shared, protocol = tiny_shared(p), config(common.Protocol, p)
    scorer = common.Scorer(shared, protocol, torch.zeros(1, 28, 28), common.lobam.corner_mask((1, 28, 28), 4))
    theta_ben = shared.pretrained
    torch.manual_seed(0)
    theta_mal = {k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v for k, v in theta_ben.items()}
    attacker = shared.tasks["fashion"]
    attacker.x_test = attacker.x_test.as_subclass(Untouchable)
    attacker.y_test = attacker.y_test.as_subclass(Untouchable)
    upload = common.lobam.amplify(theta_mal, theta_ben, 8.0)
    ben_preds = scorer.load(theta_ben).predict("fashion", attacker.x_val)
    up_preds = scorer.load(upload).predict("fashion", attacker.x_val)
    assert not torch.equal(ben_preds, up_preds)  # the two models disagree somewhere, so the labels decide
    attacker.y_val = ben_preds
    assert common.stealth_check(scorer, shared, protocol, theta_mal, theta_ben)(8.0) is False
    attacker.y_val = up_preds
    assert common.stealth_check(scorer, shared, protocol, theta_mal, theta_ben)(8.0) is True


def test_norm_rule_caps_the_upload_norm():
    p = resolve(experiment.PARAMS, "smoke", {**TINY, "stealth_rule": "norm"}, check_assets=False)
    shared, protocol = tiny_shared(p), config(common.Protocol, p)
    scorer = common.Scorer(shared, protocol, torch.zeros(1, 28, 28), common.lobam.corner_mask((1, 28, 28), 4))
    pre = shared.pretrained
    ben = {k: v + 0.01 if v.is_floating_point() else v for k, v in pre.items()}
    mal = {k: v + 0.02 if v.is_floating_point() else v for k, v in pre.items()}
    n_ben = common.lobam.state_norm(common.lobam.task_vector(ben, pre))
    assert n_ben > 0
    # the upload's update is λ·0.02 + (1 − λ)·0.01 = (1 + λ)·0.01 per entry: (1 + λ) × ‖τ_ben‖, capped at
    # κ ‖τ_ben‖ = 3 ‖τ_ben‖ → λ ≤ 2
    protocol = replace(protocol, stealth_kappa=3.0)
    ok = common.stealth_check(scorer, shared, protocol, mal, ben)
    assert ok(1.9) and not ok(2.1)
    # "both" also needs the accuracy rule: with full accuracy slack it is the norm rule again; with no norm cap and
    # no accuracy slack, an upload that has lost its task fails
    protocol = replace(protocol, stealth_rule="both", stealth_delta=1.0)
    ok = common.stealth_check(scorer, shared, protocol, mal, ben)
    assert ok(1.9) and not ok(2.1)
    protocol = replace(protocol, stealth_delta=0.0, stealth_kappa=1e9)  # now only the accuracy rule can fail
    torch.manual_seed(0)
    noisy = {k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v for k, v in ben.items()}
    attacker = shared.tasks["fashion"]
    ben_preds = scorer.load(ben).predict("fashion", attacker.x_val)
    assert not torch.equal(ben_preds, scorer.load(common.lobam.amplify(noisy, ben, 1.9)).predict("fashion",
                                                                                                attacker.x_val))
    attacker.y_val = ben_preds  # θ_ben scores 1.0 on validation; the upload that disagrees does not
    ok = common.stealth_check(scorer, shared, protocol, noisy, ben)
    assert not ok(1.9)


def test_miniature_splits_are_disjoint():
    p = resolve(experiment.PARAMS, "smoke", {"n_pretrain": 50, "n_train": 40, "n_val": 20, "n_test": 30,
                                             "tasks": ["fashion", "fashion-rot90", "fashion-inverted", "digits"]})
    tasks, pretrain = miniature.make_tasks(config(miniature.MiniatureSetup, p))
    assert set(tasks) == set(pretrain) == set(p["tasks"])

    def rows(x):
        return {hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in x}

    # undo each domain's transform so that the same Fashion-MNIST image would collide across tasks
    undo = {"fashion": lambda x: x, "fashion-rot90": lambda x: torch.rot90(x, -1, dims=(2, 3)),
            "fashion-inverted": lambda x: 1.0 - x, "digits": lambda x: x}
    seen: set[str] = set()
    for name, t in tasks.items():
        parts = [pretrain[name][0], t.x_train, t.x_val]
        hashes = [rows(undo[name](x)) for x in parts]
        assert sum(map(len, hashes)) == len(set().union(*hashes))  # pre-training, train, validation disjoint
        train_side = set().union(*hashes)
        assert not (train_side & seen)
        seen |= train_side
        assert len(t.x_test) == 30 and t.y_train.max() <= 9
    assert int(pretrain["fashion"][1].max()) <= 4  # coarse pre-training labels


def test_parameter_checks():
    with pytest.raises(ParameterError, match="lambdas"):
        resolve(experiment.PARAMS, "smoke", {"lambdas": [2.0, 3.0]}, check_assets=False)
    with pytest.raises(ParameterError, match="attacker"):
        resolve(experiment.PARAMS, "smoke", {"attacker": "fashion-inverted"}, check_assets=False)
    with pytest.raises(ParameterError, match="not tasks of the smoke profile"):
        resolve(experiment.PARAMS, "smoke", {"tasks": ["fashion", "cifar100"]}, check_assets=False)
    with pytest.raises(ParameterError, match="at least two"):
        resolve(experiment.PARAMS, "smoke", {"tasks": ["fashion"]}, check_assets=False)


def write_tasks(folder, names, n_train=80, n_test=16, size=32, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        (folder / name).mkdir(parents=True)
        for split, n in (("train", n_train), ("test", n_test)):
            labels = np.arange(n) % 3
            images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            np.savez(folder / name / f"{split}.npz", images=images, labels=labels)
    lines = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(folder).as_posix()}"
             for f in sorted(folder.glob("*/*.npz"))]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def tiny_clip(folder):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    model = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=32, patch_size=8))
    model.save_pretrained(folder)


PAPER_TINY = {"tasks": ["cifar100", "gtsrb"], "seeds": 1, "n_train": 32, "n_val": 16, "n_test": 16, "epochs": 1,
              "batch_size": 8, "patch": 4, "trigger_epochs": 1, "lambdas": [1.0, 2.0], "lam_tol": 1.0,
              "lora_rank": 2, "eval_batch_size": 16, "threads": 2, "target": 1}


def test_paper_profile_runs_on_a_tiny_clip_and_generated_tasks(tmp_cache, tmp_path, monkeypatch):
    data = tmp_path / "lobam"
    write_tasks(data, ["cifar100", "gtsrb"])
    monkeypatch.setenv("REPLBOOK_LOBAM_DATA", str(data))
    tiny_clip(tmp_path / "clip")
    p = resolve(experiment.PARAMS, "paper", {**PAPER_TINY, "clip": str(tmp_path / "clip")})
    results = experiment.run(p)
    (seed,) = results.main
    assert results.widths == {} and set(seed.uploads[common.CLEAN]["merged"]["TIES"]["ca"]) == {"cifar100", "gtsrb"}
    assert seed.packing_error < 1e-5
    # the trigger is the 4-pixel corner square of the 32×32 images (CLIP's input size here)
    assert np.asarray(seed.trigger).shape == (3, 4, 4) and seed.image_shape == [3, 32, 32]
    # an altered file is refused, naming the index
    np.savez(data / "gtsrb" / "test.npz", images=np.zeros((16, 32, 32, 3), np.uint8), labels=np.zeros(16))
    with pytest.raises(ChecksumMismatch, match="SHA256SUMS"):
        experiment.run(p)


def test_paper_profile_refuses_images_not_at_the_encoders_size(tmp_cache, tmp_path, monkeypatch):
    data = tmp_path / "lobam"
    write_tasks(data, ["cifar100", "gtsrb"], size=16)
    monkeypatch.setenv("REPLBOOK_LOBAM_DATA", str(data))
    tiny_clip(tmp_path / "clip")
    p = resolve(experiment.PARAMS, "paper", {**PAPER_TINY, "clip": str(tmp_path / "clip")})
    with pytest.raises(Exception, match="images are 16×16; convert them to the encoder's 32×32"):
        experiment.run(p)


def test_paper_profile_names_a_missing_clip_folder(tmp_path, monkeypatch):
    data = tmp_path / "lobam"
    write_tasks(data, ["cifar100", "gtsrb"])
    monkeypatch.setenv("REPLBOOK_LOBAM_DATA", str(data))
    p = resolve(experiment.PARAMS, "paper", {**PAPER_TINY, "clip": str(tmp_path / "nowhere")})
    with pytest.raises(Exception, match="parameter 'clip'"):
        experiment.run(p)


def test_report_runs_on_a_tiny_result(tmp_cache):
    p = resolve(experiment.PARAMS, "smoke", {**TINY, "seeds": 2}, check_assets=False)
    shared = tiny_shared(p)
    protocol = config(common.Protocol, p)
    results = common.LobamResults([common.run_seed(shared, protocol, seed=s) for s in range(2)], 16, {})
    claims = report.claims(results, p)
    assert [c.id for c in claims] == list(report.CLAIMS)
    assert not report.upload_table(results).empty
    assert len(report.plot_trigger(results).axes) == 2
    # the results round-trip as data (JSON and arrays) and give the same claims
    data, arrays = results.to_data()
    again = common.LobamResults.from_data(data, arrays)
    assert [c.as_dict() for c in report.claims(again, p)] == [c.as_dict() for c in claims]


# ------------------------------------------------------------------------------------------------ verdict rules


def fake_results(asr: dict[str, list[float]], ca: dict[str, list[float]] | None = None,
                 own: dict[str, list[float]] | None = None, tie_asr: dict[str, list[float]] | None = None,
                 target: dict[str, list[float]] | None = None, lam: list[float] | None = None,
                 random: dict[str, list[float]] | None = None, norm: dict[str, float] | None = None,
                 ) -> common.LobamResults:
    """Hand-made seeds: per upload, the merged ASR (Task Arithmetic; TIES too unless ``tie_asr`` says otherwise),
    the merged clean accuracy of both tasks, the upload's own clean accuracy, the random-patch ASR and the upload's
    ‖τ‖ (full FT's twice a LoRA upload's unless ``norm`` says otherwise), one value per seed."""
    uploads = list(asr)
    lams = {common.CLEAN: None, common.FULL_FT: None, common.NAIVE: 1.0, common.lobam_name(2.0): 2.0,
            common.lobam_name(4.0): 4.0, common.SELECTED: 4.0, common.SCALED: None}
    norms = {common.FULL_FT: 2.0, **(norm or {})}
    n = len(asr[uploads[0]])
    seeds = []
    for s in range(n):
        r = common.SeedResult(s, lam_selected=(lam or [4.0] * n)[s], benign_norms={"digits": 1.0},
                              finetuned={"fashion": 0.8, "digits": 0.8}, stealth={"passes_at_1": True},
                              pre={"ca": {"fashion": 0.7, "digits": 0.7}, "asr": 0.0})
        for u in uploads:
            c = (ca or {}).get(u, [0.8] * n)[s]
            rate = (target or {}).get(u, [0.0] * n)[s]
            rand = (random or {}).get(u, [0.0] * n)[s]
            merged = {scheme: {"ca": {"fashion": c, "digits": c}, "target_rate": rate, "asr_random": rand,
                               "asr": (tie_asr or {}).get(u, asr[u])[s] if scheme == "TIES" else asr[u][s]}
                      for scheme in common.SCHEMES}
            r.uploads[u] = {"lam": (lam or [4.0] * n)[s] if u == common.SELECTED else lams[u],
                            "own_ca": (own or {}).get(u, [0.8] * n)[s], "own_asr": 1.0, "norm": norms.get(u, 1.0),
                            "cos_benign": 0.0, "merged": merged}
        seeds.append(r)
    return common.LobamResults(seeds, 64, {})


ALL = [common.CLEAN, common.FULL_FT, common.NAIVE, common.lobam_name(2.0), common.lobam_name(4.0), common.SELECTED]
CPU = resolve(experiment.PARAMS, "cpu", check_assets=False)


def judged(results) -> dict[str, object]:
    return {c.id: c for c in report.claims(results, CPU)}


def verdicts(results) -> dict[str, str]:
    """What each claim's rule gives on its own (R3 is not measured in these results, so every claim is *not
    comparable*; the rules are tested for issue 30, which measures it)."""
    return {cid: c.rule.verdict for cid, c in judged(results).items()}


def asr_table(clean, full, naive, two, four, selected=None):
    """Merged ASR per upload and seed; the equal-norm control gets the naive attack's."""
    return {**dict(zip(ALL, [clean, full, naive, two, four, selected or four], strict=True)), common.SCALED: naive}


HOLDS = asr_table([0.0, 0.01, 0.02], [0.99, 0.98, 0.99], [0.40, 0.45, 0.50], [0.80, 0.85, 0.82], [0.99, 0.99, 1.0])


def test_claims_reach_reproduced_when_the_paper_holds():
    v = verdicts(fake_results(HOLDS, ca={common.SELECTED: [0.80, 0.801, 0.799]}))
    assert v == {"C1": "reproduced", "C2": "reproduced", "C3": "reproduced", "C3b": "reproduced",
                 "C4": "reproduced"}


def test_claims_fail_when_the_paper_fails():
    # LoRA as strong as full FT, LoBAM no better and falling in λ, clean accuracy and the upload collapse
    v = verdicts(fake_results(asr_table([0.0, 0.01, 0.02], [0.50, 0.52, 0.51], [0.50, 0.53, 0.51],
                                        [0.30, 0.32, 0.31], [0.10, 0.12, 0.11]),
                              ca={common.SELECTED: [0.5, 0.52, 0.51]},
                              own={common.SELECTED: [0.2, 0.22, 0.21]}))
    assert v == {"C1": "not reproduced", "C2": "not reproduced", "C3": "not reproduced",
                 "C3b": "not reproduced", "C4": "not reproduced"}


def test_claims_partly_and_inconclusive():
    # C1: a clear but small drop → partly; C4: steps that may fall by more than 0.05 → inconclusive;
    # C3: clean accuracy interval crossing −0.03 → inconclusive
    v = verdicts(fake_results(asr_table([0.0, 0.0, 0.0], [0.60, 0.62, 0.61], [0.50, 0.51, 0.52],
                                        [0.40, 0.70, 0.55], [0.30, 0.90, 0.60]),
                              ca={common.SELECTED: [0.70, 0.80, 0.79]}))
    assert v["C1"] == "partly" and v["C4"] == "inconclusive" and v["C3"] == "inconclusive"
    # the schemes disagree: LoRA weakens the attack under Task Arithmetic only → partly
    results = fake_results(HOLDS, tie_asr={common.NAIVE: [0.99, 0.98, 0.99], common.FULL_FT: [0.40, 0.45, 0.50]})
    assert verdicts(results)["C1"] == "partly"
    # C2: a strong backdoor short of 0.9 → its level part is partly, and so is the conjunction
    short = asr_table([0.0] * 3, [0.80, 0.81, 0.80], [0.30, 0.31, 0.30], [0.70, 0.72, 0.71], [0.86, 0.87, 0.86])
    c2 = judged(fake_results(short, ca={common.SELECTED: [0.80, 0.801, 0.799]}))["C2"]
    assert c2.rule.verdict == "partly" and c2.rule.kind == "all"
    assert {name: part.kind for name, part in c2.rule.parts} == {s: "conjunction" for s in common.SCHEMES}
    # C3b: the rule amplifies a little in every seed (λ − 1 above 0, short of 0.5) and stays stealthy → partly
    assert verdicts(fake_results(HOLDS, lam=[1.2, 1.3, 1.25]))["C3b"] == "partly"


def test_one_seed_gives_inconclusive_rules():
    v = verdicts(fake_results(asr_table([0.0], [0.9], [0.4], [0.8], [0.99])))
    assert set(v.values()) == {"inconclusive"}


def test_collapse_and_stealth_rule_outcomes():
    # a merged model that calls every clean image the target has ASR 1 but no backdoor: C2 and C4 fail
    table = asr_table([0.0, 0.01, 0.02], [0.99, 0.98, 0.99], [0.40, 0.45, 0.50], [0.80, 0.85, 0.82], [1.0, 1.0, 1.0])
    collapsed = {common.SELECTED: [1.0, 1.0, 1.0], common.lobam_name(4.0): [1.0, 1.0, 1.0]}
    v = verdicts(fake_results(table, target=collapsed))
    assert v["C2"] != "reproduced" and v["C4"] == "not reproduced"
    # the stealth rule never amplifies: C3b not reproduced; amplifies in some seeds only: the interval of λ − 1
    # holds 0 → inconclusive
    assert verdicts(fake_results(table, lam=[1.0, 1.0, 1.0]))["C3b"] == "not reproduced"
    assert verdicts(fake_results(table, lam=[1.0, 2.5, 3.0]))["C3b"] == "inconclusive"


def test_c4_does_not_pass_a_step_that_may_fall_by_more_than_the_margin():
    # finding 9: the step λ 2 → 4 is −0.10 on average, its interval crosses −0.05; the rise λ 4 − λ 1 excludes 0.
    # The old rule counted a step as falling only when its whole interval lay below −0.05, so this passed.
    table = asr_table([0.0] * 3, [0.99] * 3, [0.10, 0.12, 0.11], [0.80, 0.60, 0.95], [0.55, 0.62, 0.68])
    c4 = judged(fake_results(table))["C4"]
    parts = dict(dict(c4.rule.parts)["task arithmetic"].parts)
    assert parts["step λ 1 → 2"].verdict == "reproduced" and parts["step λ 2 → 4"].verdict == "inconclusive"
    assert parts["rise, λ = 4 − λ = 1"].verdict == "reproduced"
    assert c4.rule.verdict == "inconclusive" and dict(c4.rule.parts)["TIES"].kind == "conjunction"


def test_premises_r1_to_r4_and_every_claim_not_comparable_without_them():
    results = fake_results(HOLDS)
    ps = {p.id: p for p in report.premises(results, CPU)}
    # the malicious LoRA update is the smaller one here, but the benign part is not measured
    assert ps["R1"].holds is None and ps["R1"].measured.startswith("malicious 0.50")
    assert ps["R2"].holds is True and ps["R2"].measured == "0.987"  # the full-FT attack's trigger_gain (TA)
    assert ps["R3"].holds is None  # benign full fine-tunes are not run
    assert ps["R4"].holds is True and ps["R4"].measured == "1.00"  # (0.8 − 0.1) / (0.8 − 0.1)
    claims = judged(results)
    assert {c.id: c.premises for c in claims.values()} == {
        "C1": ("R1", "R2", "R4"), "C2": ("R1", "R2", "R4"), "C3": ("R3", "R4"), "C3b": ("R3",), "C4": ("R3", "R4")}
    assert {c.verdict for c in claims.values()} == {"not comparable"}
    assert "R3" in claims["C4"].reason and "The rule alone would give reproduced" in claims["C4"].reason
    # a LoRA update larger than full fine-tuning's fails R1 whatever the benign part
    bigger = report.premises(fake_results(HOLDS, norm={common.FULL_FT: 0.5}), CPU)[0]
    assert bigger.holds is False and "malicious 2.00" in bigger.measured
    # the clean merge no better than chance on a task fails R4
    useless = report.premises(fake_results(HOLDS, ca={common.CLEAN: [0.15, 0.15, 0.15]}), CPU)[3]
    assert useless.holds is False


def test_r2_fails_where_the_reference_attack_is_mostly_a_bias_to_the_target():
    # finding 1: full FT's merged ASR 0.76, but a random corner patch already gets 0.49: trigger_gain 0.27 < 0.5
    results = fake_results(HOLDS, random={common.FULL_FT: [0.49, 0.49, 0.49], common.NAIVE: [0.3, 0.3, 0.3]},
                           tie_asr={common.FULL_FT: [0.76, 0.76, 0.76]})
    ps = {p.id: p for p in report.premises(results, CPU)}
    assert ps["R2"].holds is False and ps["R2"].measured == "0.497"
    claims = judged(results)
    assert "R2" in claims["C1"].reason and "R2" in claims["C2"].reason
    assert "trigger_gain naive LoRA" in claims["C1"].ours and "trigger_gain LoBAM" in claims["C2"].ours
    assert "trigger_gain λ = 1" in claims["C4"].ours


def test_every_estimate_is_its_from_expression_on_the_results():
    from test_verdict_oracle import check_from, estimates

    for results in (fake_results(HOLDS, ca={common.SELECTED: [0.80, 0.81, 0.79]}, lam=[1.2, 1.3, 1.25]),
                    fake_results(asr_table([0.0, 0.0, 0.0], [0.60, 0.62, 0.61], [0.50, 0.51, 0.52],
                                           [0.40, 0.70, 0.55], [0.30, 0.90, 0.60]),
                                 target={common.NAIVE: [0.1, 0.2, 0.1]})):
        for claim in report.claims(results, CPU):
            found = list(estimates(claim.rule.as_dict(), claim.id))
            assert found, claim.id
            for est, where in found:
                assert est["from"].startswith("="), where
                check_from(est, results, where)


def test_r4_knows_the_class_count_of_every_task():
    from replbook.experiments.lobam.paper import PAPER_TASKS

    assert set(miniature.TASKS) | set(PAPER_TASKS) <= set(report.N_CLASSES)
    assert all(report.N_CLASSES[t] == 10 for t in miniature.TASKS)  # Fashion-MNIST and digits: ten classes
