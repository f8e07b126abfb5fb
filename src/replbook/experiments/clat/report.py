"""Figures, tables and claims of the CLAT chapter, read from its saved results."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from replbook.experiments.clat.common import (
    BASELINE,
    CLAT,
    RANDOM_LAYERS,
    SHARE_LIMIT,
    ClatResults,
    SeedResult,
)
from replbook.intervals import Interval, paired_t
from replbook.page import mean_sd
from replbook.verdicts import (
    Claim,
    Premise,
    apply_premises,
    illustrated,
    judge_conjunction,
    judge_effect,
    judge_noninferior,
    not_comparable,
    premise,
)

SOURCE = "abstract and public reviews [abs]; Table 1 not transcribed"


def _arms(results: list[SeedResult]) -> list[str]:
    return [name for name in results[0].final if name != "stage 1"]


def plot_curves(results: list[SeedResult]):
    """Robust test accuracy during stage 1 and, continuing from it, continued AT and CLAT (mean ± sd over seeds)."""
    fig, ax = plt.subplots(figsize=(7.4, 4.2))
    s1 = np.array([[c["robust"] for c in r.stage1_curve] for r in results])
    e1 = np.arange(1, s1.shape[1] + 1)
    ax.plot(e1, s1.mean(0), color="black", label="stage 1: PGD-AT")
    ax.fill_between(e1, s1.mean(0) - s1.std(0), s1.mean(0) + s1.std(0), color="black", alpha=0.1)
    for arm in results[0].curves:
        a = np.array([[c["robust"] for c in r.curves[arm]] for r in results])
        e2 = np.arange(len(e1) + 1, len(e1) + a.shape[1] + 1)
        ax.plot(e2, a.mean(0), label=f"stage 2: {arm}")
        ax.fill_between(e2, a.mean(0) - a.std(0), a.mean(0) + a.std(0), alpha=0.15)
    ax.axvline(len(e1) + 0.5, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="epoch", ylabel="robust test accuracy (PGD)", title="Robust accuracy during training")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def final_table(results: list[SeedResult]) -> pd.DataFrame:
    """Mean and sd over seeds of the final clean, PGD and (where run) strong robust accuracy of every model."""
    rows = []
    for name in ("stage 1", *_arms(results)):
        row = {"model": name}
        for metric in ("clean", "robust", "robust_subset", "strong"):
            vals = [r.final[name][metric] for r in results if metric in r.final[name]]
            if vals:
                row[metric] = mean_sd(vals)
        rows.append(row)
    columns = {"clean": "clean", "robust": "PGD", "robust_subset": "PGD, strong subset",
               "strong": "worst of PGD and strong, subset"}
    return pd.DataFrame(rows).set_index("model").rename(columns=columns).fillna("–")


def points(d: Interval, short: bool = False) -> str:
    """A paired difference over seeds in points: ``+1.2 [+0.3, +2.1] points (n = 5 seeds)`` (``short``: without
    the unit and n)."""
    if not d.finite:
        return f"{d.mean:+.1f}" + ("" if short else f" points (n = {d.n}, no interval)")
    return d.text(1) if short else f"{d.text(1)} points (n = {d.n} seeds)"


def paired_table(results: list[SeedResult]) -> pd.DataFrame:
    """Each stage-2 arm minus continued AT, paired over seeds (points, Student-t 95% interval)."""
    rows = []
    for arm in _arms(results):
        if arm == BASELINE:
            continue
        row = {"arm − continued AT": arm}
        for metric in ("clean", "robust", "strong"):
            if all(metric in r.final[arm] and metric in r.final[BASELINE] for r in results):
                row[metric] = points(difference(results, arm, BASELINE, metric), short=True)
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm − continued AT").fillna("–")


def plot_final(results: list[SeedResult]):
    names = ["stage 1", *_arms(results)]
    fig, ax = plt.subplots(figsize=(8.0, 3.8))
    metrics = [m for m in ("clean", "robust", "strong") if any(m in results[0].final[n] for n in names)]
    width = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        means = [np.mean([r.final[n].get(metric, np.nan) for r in results]) for n in names]
        sds = [np.std([r.final[n].get(metric, np.nan) for r in results]) for n in names]
        label = {"clean": "clean", "robust": "PGD", "strong": "worst of PGD and APGD / AutoAttack (subset)"}[metric]
        ax.bar(np.arange(len(names)) + width * j, means, width, yerr=sds, capsize=2, label=label)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, [n.replace(", ", ",\n") for n in names], fontsize=7)
    ax.set(ylabel="test accuracy", title="Final accuracy (mean ± sd over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_selection(results: ClatResults):
    """How often each layer was selected at each reselection epoch, over seeds (CLAT and its layer controls)."""
    seeds, names = results.seeds, [layer.name for layer in results.layers]
    arms = [a for a in _arms(seeds) if a in seeds[0].selections]
    epochs = [s["epoch"] for s in seeds[0].selections[CLAT]]
    fig, axes = plt.subplots(1, len(arms), figsize=(3.2 * len(arms) + 1.5, 0.25 * len(names) + 1.8), sharey=True,
                             squeeze=False)
    for ax, arm in zip(axes[0], arms, strict=True):
        counts = np.zeros((len(names), len(epochs)))
        for r in seeds:
            for j, s in enumerate(r.selections[arm]):
                for i in s["selected"]:
                    counts[i, j] += 1
        im = ax.imshow(counts, aspect="auto", cmap="Blues", vmin=0, vmax=len(seeds))
        ax.set_xticks(range(len(epochs)), [f"ep {e}" for e in epochs], fontsize=7)
        ax.set_title(arm, fontsize=8)
    axes[0][0].set_yticks(range(len(names)), names, fontsize=7)
    fig.colorbar(im, ax=axes[0].tolist(), label="seeds")
    return fig


def layer_shares(results: ClatResults) -> pd.DataFrame:
    """Every layer of the network, its parameters and their share of the network's."""
    return pd.DataFrame([{"layer": layer.name, "parameters": layer.parameters, "share": layer.share}
                         for layer in results.layers])


#: The paper's gains [abs], accuracy points: "> 2%" on clean accuracy and on PGD/AutoAttack robustness.
EFFECT_ACCURACY = 2.0
#: C4 "mitigates robust overfitting" gives no size: the smallest effect we read as mitigation is a best-minus-last
#: gap 1 point smaller than continued AT's.
EFFECT_GAP = -1.0
#: The control part of every tested claim: CLAT must beat the arm that trains as many random candidate layers with
#: the CLAT loss by this much (points; for C4 a gap this much smaller), else the gain is not shown to come from
#: choosing critical layers.
EFFECT_CONTROL = 1.0
#: R1: the layers CLAT selects must be this many times as critical as the candidates on average, in every seed.
R1_MIN_RATIO = 1.25
#: R2: continued AT's bias-free best-minus-last robust accuracy in stage 2 must reach this (points).
R2_MIN_GAP = 1.0


def criticality_ratio(seed: SeedResult, candidates: list[int]) -> float:
    """At CLAT's first selection (stage 2's epoch 0, on the stage-1 model every arm starts from): the mean
    criticality of the selected layers ÷ the mean criticality of the candidate layers (what k random candidates
    hold on average); ``candidates`` are the indices of the layers CLAT may select."""
    first = seed.selections[CLAT][0]
    crit = np.asarray(first["criticality"], dtype=np.float64)
    return float(crit[list(first["selected"])].mean() / crit[candidates].mean())


def premises(results: ClatResults, params: dict[str, Any]) -> list[Premise]:
    """R1: the critical layers differ in criticality from random ones: in every seed, the mean criticality of
    CLAT's top-k at the first selection over the candidates' mean ≥ ``R1_MIN_RATIO`` (the minimum over seeds is
    shown). A property of the selection on the shared stage-1 model, not an outcome of any arm. R2: the reference
    overfits robustly: continued AT's best-minus-last robust accuracy in stage 2 with the best epoch chosen on other
    images than the gap is read on ≥ ``R2_MIN_GAP`` points. Not measured: the curves store one accuracy per epoch
    on the same images (see its note)."""
    seeds = results.seeds
    candidates = [i for i, layer in enumerate(results.layers) if layer.candidate]
    ratios = [criticality_ratio(s, candidates) for s in seeds if s.selections.get(CLAT)]
    biased = [best_minus_last(s.curves[BASELINE]) for s in seeds if BASELINE in s.curves]
    return [
        premise("R1", "the critical layers differ in criticality from random ones: mean criticality of CLAT's "
                      "top-k ÷ the candidates' mean, at the first selection", min(ratios) if ratios else None,
                at_least=R1_MIN_RATIO, required=f"≥ {R1_MIN_RATIO:g} in every seed (the minimum shown)",
                fmt="{:.2f}",
                source='seeds[:].selections["CLAT"][0]; layers[:].candidate | per seed, the mean criticality of '
                       'the selected layers ÷ the mean criticality of the candidate layers; the minimum over seeds',
                note=("per seed " + ", ".join(f"{r:.2f}" for r in ratios) + "; measured on the stage-1 model "
                      "every arm starts from (a property of the selection, not an outcome of a compared arm)")
                if ratios else "CLAT made no selection in these results"),
        premise("R2", "the reference overfits robustly: continued AT's best − last robust accuracy in stage 2, "
                      "the best epoch chosen on other images than the gap is read on (points)", None,
                at_least=R2_MIN_GAP, required=f"seed mean ≥ {R2_MIN_GAP:+g} point, bias-free",
                source='seeds[:].curves["continued AT"]',
                note="not measured: the curves store one robust accuracy per epoch on the same "
                     f"{params.get('n_curve', 'curve')} images, so the best epoch is chosen on the images that "
                     "measure its gap (the maximum of noisy values is biased upwards); a bias-free value needs the "
                     "curve on two halves of the images. The biased max − last is "
                     + (f"{100 * np.mean(biased):+.1f} points (seed mean)" if biased else "not available")
                     + "; the reference arm's level"),
    ]


def _from_final(arm: str, other: str, metric: str) -> str:
    return f"=mean(seeds[:].final[{arm!r}][{metric!r}] - seeds[:].final[{other!r}][{metric!r}]) * 100"


def difference(results: list[SeedResult], arm: str, other: str, metric: str) -> Interval:
    """arm − other on the final ``metric``, paired over seeds with a Student-t 95% interval, in accuracy points."""
    return paired_t([r.final[arm][metric] for r in results], [r.final[other][metric] for r in results],
                    source=_from_final(arm, other, metric)).scaled(100)


def claim_accuracy(cid: str, metric: str, what: str, results: list[SeedResult], profile: str) -> Claim:
    """C1 (PGD), C1b (strong attack), C2 (clean): CLAT − continued AT on the final ``metric``, paired over seeds,
    directional against the paper's +2 points, and (a conjunction) CLAT − random layers against +1 point. Without
    the random-layer arm the claim is not comparable (an arm it compares was not run)."""
    statement, rule = f"CLAT improves {what} over continued AT", (
        f"rule: paired t-intervals over seeds, CLAT − continued AT against the paper's +{EFFECT_ACCURACY:g} points "
        f"and CLAT − random layers against +{EFFECT_CONTROL:g} point (a conjunction)")
    d = difference(results, CLAT, BASELINE, metric)
    v = judge_effect(d, EFFECT_ACCURACY, what="CLAT − continued AT (points)")
    ours = "CLAT − continued AT: " + points(d)
    if not all(RANDOM_LAYERS in r.final and metric in r.final[RANDOM_LAYERS] for r in results):
        return Claim.judged(cid, statement, "> 2 points [abs]", SOURCE, ours, profile,
                            not_comparable(f"the random-layer control was not run (CLAT − continued AT alone: "
                                           f"{v.verdict}, {v.reason})"), rule, missing=(RANDOM_LAYERS,),
                            premises=("R1",))
    control = difference(results, CLAT, RANDOM_LAYERS, metric)
    ours += f"; CLAT − random layers: {points(control)}"
    v = judge_conjunction({
        "CLAT − continued AT": v,
        "CLAT − random layers": judge_effect(control, EFFECT_CONTROL, what="CLAT − random layers (points)",
                                             effect_name="our"),
    })
    return Claim.judged(cid, statement, "> 2 points [abs]", SOURCE, ours, profile, v, rule, premises=("R1",))


def claim_c3(results: ClatResults, profile: str, k: int, candidates: str, arch: str) -> Claim:
    """C3: CLAT trains about 5% of the parameters; illustrated where no ``k`` candidate layers could exceed
    :data:`SHARE_LIMIT`, else no more than it (non-inferior, lower is better, margin :data:`SHARE_LIMIT`, on the
    range of the trainable fractions over every selection)."""
    fractions = [s["trainable_fraction"] for r in results.seeds for s in r.selections[CLAT]]
    ours = (f"{100 * np.mean(fractions):.1f}% (range {100 * min(fractions):.1f}–{100 * max(fractions):.1f}%) with "
            f"k = {k} of the {candidates} layers")
    ceiling = results.largest_possible_share
    if ceiling <= SHARE_LIMIT:
        v = illustrated(f"holds by construction: any {k} candidate layers of {arch} hold at most "
                        f"{100 * ceiling:.1f}% of the parameters, so the selection cannot fail it")
        return Claim.judged("C3", "CLAT trains about 5% of the parameters", "≈ 5% [abs]", SOURCE, ours, profile, v)
    share = Interval(float(np.mean(fractions)), min(fractions), max(fractions), "range over selections",
                     len(fractions), source='=mean(seeds[:].selections["CLAT"][:].trainable_fraction)')
    v = judge_noninferior(share, SHARE_LIMIT, higher_is_better=False, what="trainable fraction over selections")
    return Claim.judged("C3", "CLAT trains about 5% of the parameters", "≈ 5% [abs]", SOURCE, ours, profile, v,
                        f"rule: every selection trains at most {100 * SHARE_LIMIT:.0f}% of the parameters (any {k} "
                        f"candidates could hold up to {100 * ceiling:.1f}%)", premises=("R1",))


def best_minus_last(curve: list[dict[str, float]]) -> float:
    """Robust overfitting: best robust accuracy over the epochs minus the last one."""
    robust = [c["robust"] for c in curve]
    return max(robust) - robust[-1]


def claim_c4(results: list[SeedResult], profile: str) -> Claim:
    """C4: the stage-2 best-minus-last robust-accuracy gaps, CLAT − continued AT paired over seeds, directional
    against −1 point, and (a conjunction) CLAT − random layers against −1 point. Needs R2 (the reference overfits)."""
    statement, paper, rule = "CLAT mitigates robust overfitting", "qualitative [abs]", (
        f"rule: paired t-intervals of the best-minus-last gaps, CLAT − continued AT against {EFFECT_GAP:+g} point "
        f"and CLAT − random layers against {-EFFECT_CONTROL:+g} point (a conjunction)")
    gaps = {arm: [best_minus_last(r.curves[arm]) for r in results]
            for arm in (BASELINE, CLAT, RANDOM_LAYERS) if arm in results[0].curves}

    def how(other: str) -> str:
        return (f'seeds[:].curves["CLAT"]; seeds[:].curves[{other!r}] | per seed, max − last of the stage-2 robust '
                f'accuracy, CLAT − {other}, ×100; mean over seeds')

    d = paired_t(gaps[CLAT], gaps[BASELINE], source=how(BASELINE)).scaled(100)
    v = judge_effect(d, EFFECT_GAP, what="gap(CLAT) − gap(continued AT) (points)", effect_name="our")
    ours = f"best − last robust accuracy in stage 2, CLAT − continued AT: {points(d)}"
    if RANDOM_LAYERS not in gaps:
        return Claim.judged("C4", statement, paper, SOURCE, ours, profile,
                            not_comparable(f"the random-layer control was not run (CLAT − continued AT alone: "
                                           f"{v.verdict}, {v.reason})"), rule, missing=(RANDOM_LAYERS,),
                            premises=("R1", "R2"))
    control = paired_t(gaps[CLAT], gaps[RANDOM_LAYERS], source=how(RANDOM_LAYERS)).scaled(100)
    ours += f"; CLAT − random layers: {points(control)}"
    v = judge_conjunction({
        "CLAT − continued AT": v,
        "CLAT − random layers": judge_effect(control, -EFFECT_CONTROL, what="gap(CLAT) − gap(random layers) "
                                             "(points)", effect_name="our"),
    })
    return Claim.judged("C4", statement, paper, SOURCE, ours, profile, v, rule, premises=("R1", "R2"))


def claims(results: ClatResults, params: dict[str, Any]) -> list[Claim]:
    """C1, C1b, C2 and C4 on paired t-intervals over seeds against the paper's effect, each in conjunction with the
    random-layer control; C3 illustrated where the architecture fixes it; premises R1 (all tested claims) and R2
    (C4) applied."""
    profile, seeds = params["profile"], results.seeds
    rows = [("C1", "robust", f"robust accuracy (PGD-{params['eval_steps']})"), ("C2", "clean", "clean accuracy")]
    if params["strong_eval"] != "none":
        label = {"apgd": "APGD-CE + APGD-DLR", "autoattack": "AutoAttack"}[params["strong_eval"]]
        rows.insert(1, ("C1b", "strong", f"robust accuracy (worst of PGD-{params['eval_steps']} and {label}, "
                                         f"{params['n_strong']} images)"))
    judged = [*(claim_accuracy(cid, metric, what, seeds, profile) for cid, metric, what in rows),
              claim_c3(results, profile, params["k"], params["candidates"], params["arch"]), claim_c4(seeds, profile)]
    return apply_premises(judged, premises(results, params))
