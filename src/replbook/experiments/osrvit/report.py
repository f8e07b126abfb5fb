"""Tables, figures and verdicts of the OSR-ViT chapter, read from its saved results
(:class:`~replbook.experiments.osrvit.common.OsrvitResults`).

Intervals: every arm, fraction and seed is scored on the same bootstrap resamples of the test images
(``common.bootstrap_weights``), so a difference is taken per resample, averaged over seeds, and its 2.5–97.5%
percentiles are the interval; each seed also gets its own interval, which :func:`replbook.verdicts.judge_effect`
reads (a seed significantly against the claim makes it inconclusive). These intervals hold the trained models fixed:
they say how sure the test images make us, and the seeds say the rest.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from replbook.experiments.osrvit.common import OsrvitResults, SeedRun
from replbook.intervals import Interval, seed_bootstrap
from replbook.page import mean_sd
from replbook.verdicts import (
    Claim,
    ClaimSheet,
    Premise,
    Verdict,
    apply_premises,
    illustrated,
    judge_conjunction,
    judge_effect,
    judge_noninferior,
    not_comparable,
)

NAMES = {"baseline": "supervised baseline", "osrvit": "OSR-ViT (pre-trained ViT)",
         "osrvit-random": "OSR-ViT, untrained ViT (control)"}
METRICS = {"id_map50": "known AP@0.5", "id_map": "known AP@[.5:.95]", "ca_ar": "CA-AR@k", "ood_recall":
           "unknown recall@k", "auroc_id_ood": "AUROC ID–OOD", "auroc_id_bg": "AUROC ID–bg", "auroc_ood_bg":
           "AUROC OOD–bg", "aosp": "AOSP (recon)", "unknown_covered": "unknowns covered",
           "unknown_as_bg": "covered unknowns called bg", "aosp_norm": "AOSP ÷ AP without unknown calls"}

#: The paper's effects and our smallest effects, in AOSP / recall units (fractions, not %). Our AOSP's scale is
#: not the paper's (it is bounded by known AP × the largest unknown recall reached), so the Ships margin is read as
#: a relative lead: 55.4 / 46.9 − 1.
PAPER_SHIPS_LEAD = 0.554 / 0.469 - 1  # Ships: OSR-ViT 55.4% AOSP vs the best baseline 46.9% [summary, unverified]
SMALLEST = 0.02  # the smallest lead we would count as "beats" / "larger" where the paper gives no number
LAMBDA_EFFECT = 0.02  # the smallest recall change we would count as a trade-off
#: C1's per-step allowance: no step of the λ sweep may move a recall against the trade-off by more than this (the
#: rule's "no step against the direction" parts, judged non-inferior with this margin; issue 28 replaced the
#: monotone cap by them).
LAMBDA_STEP_MARGIN = 0.02

CLAIMS: dict[str, tuple[str, str | None, str]] = {
    "C1": ("THPN's λ trades known for unknown proposals: unknown recall falls from λ = 0 (OLN) to λ = 1 (RPN), "
           "known recall rises",
           "λ = 0 → OLN, best novel recall; λ = 1 → plain RPN, best on known",
           "the score's formula and the existence of a λ sweep [code: mmdetection_osod HybridRPNHead, the OLN fork's "
           "λ configs]; which λ wins is the spec's reading [recon], unverified; the paper's sweep is not transcribed"),
    "C2a": ("OSR-ViT beats the supervised baseline on AOSP (reconstructed) at 100% data",
            "Ships: 55.4% AOSP vs the best baseline's 46.9%; \"far exceed state-of-the-art supervised methods\"",
            "Ships numbers: third-party summary of v1 [summary]; \"far exceed\": the abstract [abs]; unverified "
            "against the PDF tables"),
    "C2b": ("OSR-ViT discovers more unknown objects than the baseline at the operating thresholds (100% data)",
            "VOC→COCO OOD AR@100 43.2% (configuration not stated); the baselines' not transcribed",
            "third-party summary of v1 [summary], unverified"),
    "C3a": ("OSR-ViT leads the baseline on AOSP (reconstructed) at the smallest data fraction, by more than at 100%",
            "strong in low-data settings (paraphrase; the claim's form is the specification's expected outcome)",
            "abstract [abs] and the spec's §5.5 [recon], unverified"),
    "C3b": ("OSR-ViT on 25% of the data beats the baseline trained on 100% (AOSP, reconstructed)",
            "VOC25→COCO: the lightest OSR-ViT reaches 20.6% AOSP, above every baseline trained on 100% of the data",
            "third-party summary of v1 [summary], unverified"),
    "C4": ("The paper's VOC→COCO numbers", "ID mAP 30.2–31.5% across OSR-ViT configurations; OOD AR@100 43.2% "
           "(configuration not stated)",
           "third-party summary of v1 [summary], unverified"),
}


# ----------------------------------------------------------------------------------------------- access


def fractions(results: OsrvitResults) -> list[float]:
    return sorted({r.fraction for r in results.runs}, reverse=True)


def seeds(results: OsrvitResults) -> list[int]:
    return sorted({r.seed for r in results.runs})


def arms(results: OsrvitResults) -> list[str]:
    return list(results.runs[0].arms)


def _runs(results: OsrvitResults, fraction: float) -> list[SeedRun]:
    return sorted((r for r in results.runs if r.fraction == fraction), key=lambda r: r.seed)


def values(results: OsrvitResults, arm: str, metric: str, fraction: float = 1.0) -> np.ndarray:
    """The metric per seed [n_seeds]; ``aosp_norm`` is AOSP ÷ the known AP with no unknown calls (the sweep's first
    point)."""
    if metric == "aosp_norm":
        return np.array([r.arms[arm].aosp / r.arms[arm].curve["id_map50"][0]
                         if r.arms[arm].curve["id_map50"][0] else np.nan for r in _runs(results, fraction)])
    return np.array([getattr(r.arms[arm], metric) for r in _runs(results, fraction)], float)


def boot(results: OsrvitResults, arm: str, metric: str, fraction: float = 1.0) -> np.ndarray:
    """The metric on every bootstrap resample [n_seeds, n_boot]."""
    return np.array([r.arms[arm].boot[metric] for r in _runs(results, fraction)], float)


# ----------------------------------------------------------------------------------------------- `from`


def _where(results: OsrvitResults, run: SeedRun) -> str:
    """``runs[i]``: the results path of ``run``."""
    return f"runs[{next(i for i, r in enumerate(results.runs) if r is run)}]"


def _field(results: OsrvitResults, arm: str, metric: str, run: SeedRun) -> str:
    return f'{_where(results, run)}.arms["{arm}"].{metric}'


def _mean_of(terms: list[str]) -> str:
    """The ``from`` expression of the mean of ``terms`` (one per seed)."""
    return f"=({' + '.join(terms)}) / {len(terms)}"


# ----------------------------------------------------------------------------------------------- intervals


def paired(point: np.ndarray, draws: np.ndarray, source: str = "") -> tuple[Interval, list[Interval]]:
    """point [n_seeds], draws [n_seeds, n_boot] of a difference → (its mean over seeds with the percentile interval
    of the seed means over the resamples, each seed's value with its own interval). The chapter's resamples can
    leave a metric undefined (NaN: no unknown object, no known detection): those resamples are left out."""
    return seed_bootstrap(point, draws, source=source, nan_omit=True)


def difference(results: OsrvitResults, metric: str, a: tuple[str, float],
               b: tuple[str, float]) -> tuple[Interval, list[Interval]]:
    """(arm, fraction) a minus (arm, fraction) b on ``metric``, paired by seed and resample."""
    source = _mean_of([f"({_field(results, a[0], metric, ra)} - {_field(results, b[0], metric, rb)})"
                       for ra, rb in zip(_runs(results, a[1]), _runs(results, b[1]), strict=True)])
    return paired(values(results, a[0], metric, a[1]) - values(results, b[0], metric, b[1]),
                  boot(results, a[0], metric, a[1]) - boot(results, b[0], metric, b[1]), source)


def relative_lead(results: OsrvitResults, metric: str, a: tuple[str, float],
                  b: tuple[str, float]) -> tuple[Interval, list[Interval]]:
    """(a ÷ b) − 1 of the seed means, per resample: the relative lead of (arm, fraction) a over b; each seed's own
    ratio with the interval of its resamples."""
    va, vb = values(results, a[0], metric, a[1]), values(results, b[0], metric, b[1])
    da, db = boot(results, a[0], metric, a[1]), boot(results, b[0], metric, b[1])
    lo, hi = np.nanpercentile(np.nanmean(da, 0) / np.nanmean(db, 0) - 1, [2.5, 97.5])
    source = (f"=({' + '.join(_field(results, a[0], metric, r) for r in _runs(results, a[1]))}) / "
              f"({' + '.join(_field(results, b[0], metric, r) for r in _runs(results, b[1]))}) - 1")
    pooled = Interval(float(va.mean() / vb.mean() - 1), float(lo), float(hi),
                      "seed bootstrap of a ratio (test images resampled, paired)", len(va), source=source)
    per_seed = [Interval(float(x / y - 1), *map(float, np.nanpercentile(dx / dy - 1, [2.5, 97.5])),
                         "bootstrap over test images", len(dx), source=source)
                for x, y, dx, dy in zip(va, vb, da, db, strict=True)]
    return pooled, per_seed


def margin_change(results: OsrvitResults, metric: str, low: float) -> tuple[Interval, list[Interval]]:
    """(OSR-ViT − baseline) at fraction ``low`` minus the same at 100%."""
    def margin(f: float) -> tuple[np.ndarray, np.ndarray]:
        return (values(results, "osrvit", metric, f) - values(results, "baseline", metric, f),
                boot(results, "osrvit", metric, f) - boot(results, "baseline", metric, f))
    (pl, dl), (ph, dh) = margin(low), margin(1.0)
    source = _mean_of([f"(({_field(results, 'osrvit', metric, rl)} - {_field(results, 'baseline', metric, rl)}) - "
                       f"({_field(results, 'osrvit', metric, rh)} - {_field(results, 'baseline', metric, rh)}))"
                       for rl, rh in zip(_runs(results, low), _runs(results, 1.0), strict=True)])
    return paired(pl - ph, dl - dh, source)


def lambda_difference(results: OsrvitResults, which: str, lam_a: float, lam_b: float,
                      fraction: float = 1.0) -> tuple[Interval, list[Interval]]:
    """THPN's recall of ``which`` ("known" or "unknown") objects at λ_a minus at λ_b, paired per seed and test-image
    resample (the same resamples as the arms')."""
    points, draws, terms = [], [], []
    for r in _runs(results, fraction):
        at = f"{_where(results, r)}.lambda_sweep"
        hits_a, hits_b = (f"{at}.by_lambda[{float(lam)!r}].{which}_hits" for lam in (lam_a, lam_b))
        terms.append(f"(({hits_a} - {hits_b}) / {at}.{which}_total)")
        sweep = r.lambda_sweep
        a, b = sweep.by_lambda[lam_a], sweep.by_lambda[lam_b]
        total = getattr(sweep, f"{which}_total")
        total_boot = np.asarray(getattr(sweep, f"{which}_total_boot"), float)
        points.append((getattr(a, f"{which}_hits") - getattr(b, f"{which}_hits")) / total)
        draws.append((np.asarray(getattr(a, f"{which}_hits_boot"), float)
                      - np.asarray(getattr(b, f"{which}_hits_boot"), float)) / total_boot)
    return paired(np.array(points), np.array(draws), _mean_of(terms))


# ----------------------------------------------------------------------------------------------- tables


def main_table(results: OsrvitResults) -> pd.DataFrame:
    """Every arm at every data fraction: each metric as mean ± sd over seeds."""
    rows = []
    for f in fractions(results):
        for arm in arms(results):
            row = {"data": f"{f:.0%}", "detector": NAMES[arm],
                   "train images": int(np.mean([r.n_train_images for r in _runs(results, f)]))}
            for key, label in METRICS.items():
                row[label] = mean_sd(values(results, arm, key, f))
            rows.append(row)
    return pd.DataFrame(rows).set_index(["data", "detector"])


def lambda_table(results: OsrvitResults, fraction: float = 1.0) -> pd.DataFrame:
    """THPN's proposals at each λ (100% data): recall (IoU ≥ 0.5, averaged over the proposal budgets) of known and of
    unknown objects, mean ± sd."""
    runs = _runs(results, fraction)
    rows = []
    for lam in runs[0].lambda_sweep.by_lambda:
        points = [r.lambda_sweep.by_lambda[lam] for r in runs]
        rows.append({"λ": float(lam), "known recall": mean_sd([x.known_recall for x in points]),
                     "unknown recall": mean_sd([x.unknown_recall for x in points])})
    return pd.DataFrame(rows).set_index("λ")


def control_sentence(results: OsrvitResults) -> str:
    """What the untrained-ViT control says about where OSR-ViT's AOSP comes from."""
    if "osrvit-random" not in arms(results):
        return "The untrained-ViT control was not run."
    d, _ = difference(results, "aosp", ("osrvit", 1.0), ("osrvit-random", 1.0))
    r, _ = difference(results, "aosp", ("osrvit-random", 1.0), ("baseline", 1.0))
    return (f"**Control.** At 100% data, OSR-ViT's AOSP minus the same pipeline with an untrained ViT is "
            f"{d.text()}; the untrained-ViT pipeline minus the baseline is {r.text()}. The first isolates the "
            f"pre-training: the proposals, the crops and the head are the same in both.")


# ----------------------------------------------------------------------------------------------- verdicts


def _monotone(values_by_lambda: list[float], decreasing: bool) -> bool:
    """At most one step against the direction (the specification's allowance; shown beside C1, not judged)."""
    steps = np.diff(values_by_lambda)
    against = (steps > 0) if decreasing else (steps < 0)
    return int(against.sum()) <= 1


def _pct(f: float) -> str:
    return f"{f:.0%}"


#: The premises each claim needs, by data fraction: ``"@low"`` is the smallest fraction run.
NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "C1": (("R3", "@100"),),
    "C2a": (("R1", "@100"), ("R2", "@100"), ("R3", "@100")),
    "C2b": (("R1", "@100"), ("R2", "@100"), ("R3", "@100")),
    "C3a": (("R1", "@low"), ("R2", "@low"), ("R3", "@low"), ("R1", "@100"), ("R2", "@100"), ("R3", "@100")),
    "C3b": (("R1", "@25"), ("R2", "@25"), ("R3", "@25"), ("R3", "@100")),
    "C4": (("R4", ""),),
}


def needs(results: OsrvitResults, cid: str) -> tuple[str, ...]:
    """The premise ids claim ``cid`` needs in these results (``R1@10%``: R1 at 10% data; a fraction that did not
    run is left out: the claim then misses it)."""
    fr = {"@100": 1.0, "@25": 0.25, "@low": min(fractions(results))}
    ran = set(fractions(results))
    return tuple(dict.fromkeys(f"{r}@{_pct(fr[at])}" if at else r for r, at in NEEDS[cid] if not at or fr[at] in ran))


def _not_run(sheet: ClaimSheet, cid: str, ours: str, why: str, missing: str, results: OsrvitResults) -> None:
    """Claim ``cid`` recorded as not comparable because ``missing`` (a data fraction, a λ) did not run."""
    statement, paper, source = sheet.table[cid]
    sheet.claims.append(Claim.judged(cid, statement, paper, source, ours, sheet.profile, not_comparable(why),
                                     missing=(missing,), premises=needs(results, cid)))


def _lambda_side(results: OsrvitResults, which: str) -> tuple[Interval, Verdict]:
    """One side of C1: ``which`` recall at the λ end that should favour it minus at the other, judged against
    :data:`LAMBDA_EFFECT`."""
    lam_a, lam_b = (0.0, 1.0) if which == "unknown" else (1.0, 0.0)
    d, per_seed = lambda_difference(results, which, lam_a, lam_b)
    return d, judge_effect(d, LAMBDA_EFFECT, seeds=per_seed, what=f"{which} recall, λ {lam_a:g} − λ {lam_b:g}",
                           effect_name="our smallest")


def _lambda_steps(results: OsrvitResults, lams: list[float]) -> dict[str, Verdict]:
    """C1's per-step parts: at each step of the sweep (λ_i → λ_i+1), the unknown recall does not rise, and the known
    recall does not fall, by more than :data:`LAMBDA_STEP_MARGIN` (``judge_noninferior`` on the step's change)."""
    parts = {}
    for a, b in zip(lams[:-1], lams[1:], strict=True):
        for which, up in (("unknown", False), ("known", True)):
            d, _ = lambda_difference(results, which, b, a)
            parts[f"{which} recall, step λ {a:g} → {b:g}"] = judge_noninferior(
                d, LAMBDA_STEP_MARGIN, higher_is_better=up, what=f"{which} recall, λ {b:g} − λ {a:g}")
    return parts


def claim_c1(sheet: ClaimSheet, results: OsrvitResults) -> None:
    """C1: THPN's λ trades known for unknown proposals: both ends move the paper's way, and no step of the sweep
    moves either recall against it by more than the margin (one conjunction)."""
    runs = _runs(results, 1.0)
    if runs[0].lambda_sweep is None:
        return
    lams = sorted(runs[0].lambda_sweep.by_lambda)
    if not (len(lams) >= 2 and lams[0] == 0.0 and lams[-1] == 1.0):
        _not_run(sheet, "C1", "the sweep lacks λ = 0 or λ = 1", "add 0 and 1 to 'lambdas'", "λ = 0 and λ = 1",
                 results)
        return
    means = {w: [float(np.mean([getattr(r.lambda_sweep.by_lambda[x], f"{w}_recall") for r in runs])) for x in lams]
             for w in ("known", "unknown")}
    u, vu = _lambda_side(results, "unknown")
    k, vk = _lambda_side(results, "known")
    v = judge_conjunction({"unknown side": vu, "known side": vk, **_lambda_steps(results, lams)})
    sweep = ", ".join(f"λ {x:g}: {a:.3f} / {b:.3f}" for x, a, b in zip(lams, means["unknown"], means["known"],
                                                                         strict=True))
    spec_rule = _monotone(means["unknown"], decreasing=True) and _monotone(means["known"], decreasing=False)
    sheet.add("C1", f"unknown recall λ 0 − λ 1 {u.text()}; known recall λ 1 − λ 0 {k.text()} (unknown / known "
                    f"recall: {sweep}); the specification's monotone-only rule would "
                    f"{'pass' if spec_rule else 'fail'} it", v, premises=needs(results, "C1"))


def claim_c2a(sheet: ClaimSheet, results: OsrvitResults) -> None:
    """C2a: OSR-ViT's relative AOSP lead over the baseline at 100% data, against the paper's Ships lead."""
    if sheet.missing("C2a", "osrvit", "baseline", premises=needs(results, "C2a")):
        return
    d, per_seed = relative_lead(results, "aosp", ("osrvit", 1.0), ("baseline", 1.0))
    v = judge_effect(d, PAPER_SHIPS_LEAD, seeds=per_seed, what="AOSP (recon), OSR-ViT ÷ baseline − 1",
                     effect_name="the paper's Ships lead")
    a, _ = difference(results, "aosp", ("osrvit", 1.0), ("baseline", 1.0))
    sheet.add("C2a", f"relative lead {d.text()}; absolute {a.text()} (OSR-ViT "
                     f"{mean_sd(values(results, 'osrvit', 'aosp'))}, baseline "
                     f"{mean_sd(values(results, 'baseline', 'aosp'))})", v, premises=needs(results, "C2a"))


def claim_c2b(sheet: ClaimSheet, results: OsrvitResults) -> None:
    """C2b: unknown recall@k at the operating thresholds, OSR-ViT − baseline at 100% data."""
    if sheet.missing("C2b", "osrvit", "baseline", premises=needs(results, "C2b")):
        return
    d, per_seed = difference(results, "ood_recall", ("osrvit", 1.0), ("baseline", 1.0))
    v = judge_effect(d, SMALLEST, seeds=per_seed, what="unknown recall@k, OSR-ViT − baseline",
                     effect_name="our smallest")
    sheet.add("C2b", f"{d.text()} (OSR-ViT {mean_sd(values(results, 'osrvit', 'ood_recall'))}, baseline "
                     f"{mean_sd(values(results, 'baseline', 'ood_recall'))})", v, premises=needs(results, "C2b"))


def claim_c3a(sheet: ClaimSheet, results: OsrvitResults) -> None:
    """C3a: a lead at the smallest fraction, and a larger margin there than at 100% (one conjunction)."""
    fr = fractions(results)
    low = min(fr)
    if low == 1.0:
        _not_run(sheet, "C3a", "only 100% data ran", "add a smaller fraction to 'fractions'",
                 "a data fraction below 100%", results)
        return
    if sheet.missing("C3a", "osrvit", "baseline", premises=needs(results, "C3a")):
        return
    d, d_seeds = margin_change(results, "aosp", low)
    lead, lead_seeds = difference(results, "aosp", ("osrvit", low), ("baseline", low))
    v = judge_conjunction({
        "a lead at the smallest fraction": judge_effect(
            lead, SMALLEST, seeds=lead_seeds, what=f"AOSP (recon) at {low:.0%}, OSR-ViT − baseline",
            effect_name="our smallest"),
        "a larger margin there": judge_effect(
            d, SMALLEST, seeds=d_seeds, what=f"AOSP margin at {low:.0%} − margin at 100%",
            effect_name="our smallest")})
    margins = ", ".join(f"{f:.0%}: {difference(results, 'aosp', ('osrvit', f), ('baseline', f))[0].text()}"
                        for f in fr)
    sheet.add("C3a", f"margin change {d.text()}; margin OSR-ViT − baseline per fraction {margins}", v,
              premises=needs(results, "C3a"))


def claim_c3b(sheet: ClaimSheet, results: OsrvitResults) -> None:
    """C3b: OSR-ViT on 25% of the data minus the baseline on all of it (AOSP)."""
    if 0.25 not in fractions(results):
        _not_run(sheet, "C3b", "25% data did not run", "add 0.25 to 'fractions'", "25% data", results)
        return
    if sheet.missing("C3b", "osrvit", "baseline", premises=needs(results, "C3b")):
        return
    d, per_seed = difference(results, "aosp", ("osrvit", 0.25), ("baseline", 1.0))
    v = judge_effect(d, SMALLEST, seeds=per_seed, what="AOSP (recon), OSR-ViT at 25% − baseline at 100%",
                     effect_name="our smallest")
    sheet.add("C3b", d.text(), v, premises=needs(results, "C3b"))


def claim_c4(sheet: ClaimSheet, results: OsrvitResults) -> None:
    """C4: the paper's VOC→COCO numbers beside ours, side by side only (illustrated); not comparable through R4
    where the run is not on the paper's data with foundation features."""
    sheet.add("C4", f"known AP@[.5:.95] {mean_sd(values(results, 'osrvit', 'id_map'))}; unknown recall@k at IoU "
                    f"0.5 {mean_sd(values(results, 'osrvit', 'ood_recall'))} (the paper's AR@100 averages IoU "
                    f".5:.95)",
              illustrated("side by side only: our detectors are not the paper's, and the paper's numbers are "
                          "unverified"), premises=needs(results, "C4"))


def judged(results: OsrvitResults, profile: str) -> list[Claim]:
    """Every claim by its rule alone, before the premises (:func:`claims` applies them)."""
    sheet = ClaimSheet(CLAIMS, profile, arms(results))
    claim_c1(sheet, results)
    claim_c2a(sheet, results)
    claim_c2b(sheet, results)
    claim_c3a(sheet, results)
    claim_c3b(sheet, results)
    claim_c4(sheet, results)
    return sheet.claims


def claims(results: OsrvitResults, params: dict[str, Any]) -> list[Claim]:
    """Every claim by the rules stated on the page, not comparable where a premise it needs does not hold
    (:func:`premises`)."""
    return apply_premises(judged(results, params["profile"]), premises(results, params))


# ----------------------------------------------------------------------------------------------- premises

PREMISE_TEXT = {
    "R1": ("the frozen features know objects: a linear probe on them classifies ground-truth crops of the known "
           "classes", "within 2 points of the supervised baseline's accuracy on the same crops (trained on that "
           "fraction)"),
    "R2": ("the frozen features separate the unknown: the energy score on ground-truth crops separates known from "
           "unknown objects", "AUROC ≥ the baseline's energy over its class logits on the same crops"),
    "R3": ("the baseline and the proposal network (THPN) were stopped by a plateau rule, not a step cap",
           "stopped by the plateau rule"),
}


def premises(results: OsrvitResults, params: dict[str, Any]) -> list[Premise]:
    """R1–R3 per data fraction (issue 33): not in these results (measured by issue 33), so not measured; R2's
    detection-level proxy is shown in its note only. R4: the run is on the paper's data with foundation features
    (the ``paper`` profile: VOC→COCO with DINOv2)."""
    out = []
    for f in fractions(results):
        for rid, (text, required) in PREMISE_TEXT.items():
            note = "measured by issue 33; not in these results"
            if rid == "R2" and {"osrvit", "baseline"} <= set(arms(results)):
                proxy = {a: values(results, a, "auroc_id_ood", f) for a in ("osrvit", "baseline")}
                note += (f". A detection-level proxy, not the premise (it scores the detectors' own detections, not "
                         f"ground-truth crops): AUROC ID–OOD of OSR-ViT {proxy['osrvit'].mean():.3f} against the "
                         f"baseline's {proxy['baseline'].mean():.3f} (mean over seeds)")
            if rid == "R3":
                note += ("; no plateau rule exists yet: THPN and the baseline train a fixed det_steps at every "
                         "fraction")
            out.append(Premise(f"{rid}@{_pct(f)}", f"{text} ({_pct(f)} data)", required, "not measured", None,
                               source="not in these results", note=note))
    paper = params.get("profile") == "paper"
    out.append(Premise(
        "R4", "the run uses the paper's data and foundation features (VOC→COCO with DINOv2)", "VOC→COCO and DINOv2",
        "VOC 2007+2012 → COCO 2017 val, DINOv2" if paper else
        "procedural shape scenes and a tiny ViT pre-trained on eight other shapes (the miniature)", paper,
        source="settings of the run (its profile)",
        note="the paper's numbers (C4) are only placed beside ours on the paper's data; the miniature's "
             "absolute levels are of another benchmark"))
    return out


# ----------------------------------------------------------------------------------------------- figures

KNOWN_COLOUR, UNKNOWN_COLOUR = "#1b9e77", "#d95f02"


def detections_figure(results: OsrvitResults, fraction: float = 1.0, seed: int = 0):
    """The first test images: the ground truth (known objects dashed green, unknown dashed orange) and each arm's
    final detections scoring at least 0.3 (known calls green with their class, unknown calls orange)."""
    run = next(r for r in results.runs if r.fraction == fraction and r.seed == seed)
    shown = [a for a in ("baseline", "osrvit") if a in run.examples]
    images, truths = results.test_images, results.test_truths
    n_known, scale, class_names = results.n_known, results.example_scale, results.class_names
    fig, axes = plt.subplots(len(shown) + 1, len(images), figsize=(2.2 * len(images), 2.3 * (len(shown) + 1)),
                             squeeze=False)
    for j, image in enumerate(images):
        for i, row in enumerate(["truth", *shown]):
            ax = axes[i, j]
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("ground truth" if row == "truth" else NAMES[row].split(" (")[0], fontsize=8)
            if row == "truth":
                items = [(b, lab, None) for b, lab in zip(truths[j].boxes, truths[j].labels, strict=True)]
            else:
                ex = run.examples[row][j]
                items = list(zip(ex.boxes, ex.labels, ex.scores, strict=True))
            for box, lab, score in items:
                if score is not None and score < 0.3:
                    continue  # the low-scoring calls would hide the rest; AP and recall count them all
                x1, y1, x2, y2 = (float(v) / scale for v in box)
                colour = KNOWN_COLOUR if lab < n_known else UNKNOWN_COLOUR
                ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color=colour, lw=1.2,
                                           ls="--" if score is None else "-"))
                if score is not None:
                    name = class_names[lab] if lab < n_known else "unknown"
                    ax.text(x1, y1 - 1, f"{name} {score:.2f}", color=colour, fontsize=5.5)
    fig.suptitle(f"{fraction:.0%} data, seed {seed}: known in green, unknown in orange (dashed: ground truth); "
                 "calls scoring ≥ 0.3", fontsize=8)
    fig.tight_layout()
    return fig


def aosp_figure(results: OsrvitResults):
    """Known AP@0.5 against unknown recall@k as the unknown threshold sweeps, per arm (one thin line per seed), one
    panel per data fraction; the dot marks the operating threshold (95% TPR)."""
    fr = fractions(results)
    fig, axes = plt.subplots(1, len(fr), figsize=(3.6 * len(fr), 3.2), squeeze=False, sharey=True)
    colours = {"baseline": "#7570b3", "osrvit": "#1b9e77", "osrvit-random": "#999999"}
    for ax, f in zip(axes[0], fr, strict=True):
        for arm in arms(results):
            for i, r in enumerate(_runs(results, f)):
                c = r.arms[arm].curve
                order = np.argsort(c["ood_recall"])
                ax.plot(np.array(c["ood_recall"])[order], np.array(c["id_map50"])[order], color=colours[arm],
                        lw=1, alpha=0.8, label=NAMES[arm] if i == 0 else None)
                ax.plot(r.arms[arm].ood_recall, r.arms[arm].id_map50, "o", color=colours[arm], ms=3)
        ax.set_title(f"{f:.0%} data", fontsize=9)
        ax.set_xlabel("unknown recall@k")
    axes[0, 0].set_ylabel("known AP@0.5")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def lambda_figure(results: OsrvitResults):
    """THPN's recall of known and unknown objects against λ (100% data), mean ± sd over seeds."""
    runs = _runs(results, 1.0)
    lams = sorted(runs[0].lambda_sweep.by_lambda)
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for which, colour in (("known", KNOWN_COLOUR), ("unknown", UNKNOWN_COLOUR)):
        v = np.array([[getattr(r.lambda_sweep.by_lambda[x], f"{which}_recall") for x in lams] for r in runs])
        ax.errorbar(lams, v.mean(0), yerr=v.std(0, ddof=1) if len(v) > 1 else None,
                    marker="o", color=colour, label=f"{which} objects", capsize=3)
    ax.set_xlabel("λ (0: OLN's localisation quality; 1: RPN's foreground score)")
    ax.set_ylabel(f"proposal recall, mean over k ∈ {runs[0].lambda_sweep.ks}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fraction_figure(results: OsrvitResults):
    """AOSP and unknown recall@k against the share of training data, per arm, mean ± sd over seeds."""
    fr = sorted(fractions(results))
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.0))
    colours = {"baseline": "#7570b3", "osrvit": "#1b9e77", "osrvit-random": "#999999"}
    for ax, metric in zip(axes, ("aosp", "ood_recall"), strict=True):
        for arm in arms(results):
            v = np.array([values(results, arm, metric, f) for f in fr])
            ax.errorbar(fr, v.mean(1), yerr=v.std(1, ddof=1) if v.shape[1] > 1 else None, marker="o",
                        color=colours[arm], label=NAMES[arm], capsize=3)
        ax.set_xscale("log")
        ax.set_xticks(fr, [f"{f:.0%}" for f in fr])
        ax.set_xlabel("training data")
        ax.set_ylabel(METRICS[metric])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def findings_sentence(results: OsrvitResults) -> str:
    """Where OSR-ViT wins and loses against the baseline at 100% data: known AP (paired image bootstrap) and, as the
    mean and the range over seeds, the AUROCs, the unknowns covered and called background, and AOSP divided by the
    known AP with no unknown calls (how much of AOSP is discovery rather than known AP)."""
    if not {"osrvit", "baseline"} <= set(arms(results)):
        return ""
    known_ap, _ = difference(results, "id_map50", ("osrvit", 1.0), ("baseline", 1.0))
    parts = [f"{METRICS['id_map50']} {known_ap.text()} (95% interval)"]
    for metric in ("auroc_ood_bg", "auroc_id_bg", "auroc_id_ood", "unknown_covered", "unknown_as_bg", "aosp_norm"):
        d = _seed_interval(results, metric)
        parts.append(f"{METRICS[metric]} {d['mean']:+.3f} (seeds {d['lo']:+.3f} to {d['hi']:+.3f})")
    low = min(fractions(results))
    post_hoc = ""
    if low < 1.0:
        d, _ = difference(results, "ood_recall", ("osrvit", low), ("baseline", low))
        post_hoc = (f" Seen after the run, not a claim judged before it: at {low:.0%} data, unknown recall@k "
                    f"OSR-ViT − baseline is {d.text()}.")
    return ("**Where the difference comes from** (OSR-ViT − baseline at 100% data): " + "; ".join(parts) + "."
            + post_hoc)


def _seed_interval(results: OsrvitResults, metric: str) -> dict[str, Any]:
    """A metric without bootstrap draws: the per-seed differences' mean and range."""
    d = values(results, "osrvit", metric) - values(results, "baseline", metric)
    return {"mean": float(d.mean()), "lo": float(d.min()), "hi": float(d.max())}
