"""Figures, tables and claims of the CLAT chapter, read from its saved results."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from replbook.experiments.clat.common import BASELINE, CLAT, RANDOM_LAYERS, SHARE_LIMIT, ClatResults, SeedResult
from replbook.intervals import Interval, paired_t
from replbook.page import mean_sd
from replbook.verdicts import Claim, Verdict, illustrated, judge_effect

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


def difference(results: list[SeedResult], arm: str, other: str, metric: str) -> Interval:
    """arm − other on the final ``metric``, paired over seeds with a Student-t 95% interval, in accuracy points."""
    return paired_t([r.final[arm][metric] for r in results], [r.final[other][metric] for r in results],
                    source=f"seeds[*].final[{arm!r} − {other!r}].{metric}").scaled(100)


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


def control_cap(v: Verdict, control: Interval | None, better: int = 1) -> Verdict:
    """The cheap explanation: CLAT trains few weights, and so does the random-layer arm with the same loss. A claim
    that holds for CLAT is *reproduced* only if CLAT also beats that control (its paired interval on the claim's side
    of 0); otherwise it is at most *partly*. ``control`` is CLAT − random layers (None: the arm was not run);
    ``better`` is +1 when larger is better for the claim, −1 when smaller is. The note joins the verdict's reason."""
    if v.verdict not in ("reproduced", "partly"):
        return v
    if control is None:
        return replace(v, verdict="partly",
                       reason=f"{v.reason}; the random-layer control was not run, so the cheap explanation stands")
    lo = control.lo if better > 0 else -control.hi
    if lo > 0:
        return replace(v, reason=f"{v.reason}; CLAT also beats the random-layer control "
                                 f"({points(control, short=True)} points)")
    return replace(v, verdict="partly",
                   reason=f"{v.reason}; but training as many random layers with the CLAT loss does as well "
                          f"({points(control, short=True)} points): not shown to come from choosing critical layers")


def claim_accuracy(cid: str, metric: str, what: str, results: list[SeedResult], profile: str) -> Claim:
    """C1 (PGD), C1b (strong attack), C2 (clean): CLAT − continued AT on the final ``metric``, paired over seeds,
    directional against the paper's +2 points, capped by the random-layer control."""
    d = difference(results, CLAT, BASELINE, metric)
    v = judge_effect(d, EFFECT_ACCURACY, what="CLAT − continued AT (points)")
    ran = all(RANDOM_LAYERS in r.final and metric in r.final[RANDOM_LAYERS] for r in results)
    control = difference(results, CLAT, RANDOM_LAYERS, metric) if ran else None
    ours = "CLAT − continued AT: " + points(d)
    if control is not None:
        ours += f"; CLAT − random layers: {points(control)}"
    return Claim.judged(cid, f"CLAT improves {what} over continued AT", "> 2 points [abs]", SOURCE, ours, profile,
                        control_cap(v, control), "rule: paired t-interval over seeds against the paper's +2 points, "
                                                 "and CLAT above the random-layer control")


def claim_c3(results: ClatResults, profile: str, k: int, candidates: str, arch: str) -> Claim:
    """C3: CLAT trains about 5% of the parameters; illustrated where no ``k`` candidate layers could exceed
    :data:`SHARE_LIMIT`, else every selection must stay at or below it."""
    fractions = [s["trainable_fraction"] for r in results.seeds for s in r.selections[CLAT]]
    ours = (f"{100 * np.mean(fractions):.1f}% (range {100 * min(fractions):.1f}–{100 * max(fractions):.1f}%) with "
            f"k = {k} of the {candidates} layers")
    ceiling = results.largest_possible_share
    if ceiling <= SHARE_LIMIT:
        v = illustrated(f"holds by construction: any {k} candidate layers of {arch} hold at most "
                        f"{100 * ceiling:.1f}% of the parameters, so the selection cannot fail it")
    else:
        v = Verdict("reproduced" if max(fractions) <= SHARE_LIMIT else "not reproduced",
                    f"rule: every selection trains at most {100 * SHARE_LIMIT:.0f}% of the parameters (any {k} "
                    f"candidates could hold up to {100 * ceiling:.1f}%)", kind="match", effect=SHARE_LIMIT,
                    estimate=Interval(float(np.mean(fractions)), min(fractions), max(fractions),
                                      "range over selections", len(fractions), source="selections.trainable_fraction"))
    return Claim.judged("C3", "CLAT trains about 5% of the parameters", "≈ 5% [abs]", SOURCE, ours, profile, v)


def best_minus_last(curve: list[dict[str, float]]) -> float:
    """Robust overfitting: best robust accuracy over the epochs minus the last one."""
    robust = [c["robust"] for c in curve]
    return max(robust) - robust[-1]


def claim_c4(results: list[SeedResult], profile: str) -> Claim:
    """C4: the stage-2 best-minus-last robust-accuracy gaps, CLAT − continued AT paired over seeds, directional
    against −1 point, capped by the random-layer control."""
    gaps = {arm: [best_minus_last(r.curves[arm]) for r in results]
            for arm in (BASELINE, CLAT, RANDOM_LAYERS) if arm in results[0].curves}
    d = paired_t(gaps[CLAT], gaps[BASELINE], source="seeds[*].curves: gap(CLAT) − gap(continued AT)").scaled(100)
    v = judge_effect(d, EFFECT_GAP, what="gap(CLAT) − gap(continued AT) (points)")
    ours = f"best − last robust accuracy in stage 2, CLAT − continued AT: {points(d)}"
    control = None
    if RANDOM_LAYERS in gaps:
        control = paired_t(gaps[CLAT], gaps[RANDOM_LAYERS], source="seeds[*].curves: gap(CLAT) − gap(random)")
        control = control.scaled(100)
        ours += f"; CLAT − random layers: {points(control)}"
    return Claim.judged("C4", "CLAT mitigates robust overfitting", "qualitative [abs]", SOURCE, ours, profile,
                        control_cap(v, control, better=-1),
                        "rule: paired t-interval of the best-minus-last gaps against −1 point")


def claims(results: ClatResults, params: dict[str, Any]) -> list[Claim]:
    """C1, C1b, C2 and C4 on paired t-intervals over seeds against the paper's effect, beside the random-layer
    control; C3 illustrated where the architecture fixes it."""
    profile, seeds = params["profile"], results.seeds
    rows = [("C1", "robust", f"robust accuracy (PGD-{params['eval_steps']})"), ("C2", "clean", "clean accuracy")]
    if params["strong_eval"] != "none":
        label = {"apgd": "APGD-CE + APGD-DLR", "autoattack": "AutoAttack"}[params["strong_eval"]]
        rows.insert(1, ("C1b", "strong", f"robust accuracy (worst of PGD-{params['eval_steps']} and {label}, "
                                         f"{params['n_strong']} images)"))
    return [*(claim_accuracy(cid, metric, what, seeds, profile) for cid, metric, what in rows),
            claim_c3(results, profile, params["k"], params["candidates"], params["arch"]), claim_c4(seeds, profile)]
