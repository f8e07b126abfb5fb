"""Tables, figures and claims of the generalized-OOD chapter: the survey's taxonomy rendered from its YAML, the
detector benchmark, the ranking against OpenOOD v1.5, and the verdicts.

Everything here reads the saved results (:class:`~replbook.experiments.oodv2.common.Oodv2Results`) and two files of
transcribed reference data that the page renders and compares against, never computes from:
``data/oodv2_taxonomy.yaml`` (the survey's taxonomy) and ``data/openood_v15.csv`` (OpenOOD v1.5's leaderboard)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from scipy.stats import rankdata, spearmanr

from replbook.experiments.oodv2.common import FAMILY, OPENOOD_NAMES, Examples, Oodv2Results, SeedResult
from replbook.intervals import Interval, seed_bootstrap
from replbook.page import mean_sd
from replbook.paths import project_root
from replbook.verdicts import (
    Claim,
    Premise,
    Verdict,
    apply_premises,
    cap,
    judge_all,
    judge_effect,
    not_comparable,
    premise,
)

#: Repository files the page reads (they enter its stamp: editing one re-renders the page).
PAGE_FILES = ("data/oodv2_taxonomy.yaml", "data/openood_v15.csv")

OPENOOD = ("OpenOOD v1.5 leaderboard (zjysteven/OpenOOD model_info @ 28d3a40b; data/openood_v15.csv; not "
           "cross-checked with the paper)")
STATUS_ORDER = ["highly_active", "active", "integrated_into_hard_ood_detection", "inactive"]
STATUS_COLOUR = {"highly_active": "#5aae61", "active": "#a6dba0", "integrated_into_hard_ood_detection": "#fdb863",
                 "inactive": "#bababa"}


# --- the taxonomy --------------------------------------------------------------------------------------------------


def load_taxonomy(path=None) -> dict[str, Any]:
    """The survey's taxonomy as data (``data/oodv2_taxonomy.yaml``), checked for the fields the book renders."""
    path = path or project_root() / "data" / "oodv2_taxonomy.yaml"
    raw = yaml.safe_load(open(path, encoding="utf-8"))
    required = ("id", "name", "shift", "id_classes", "id_classification", "transductive", "v1_benchmarks",
                "vlm_era_status")
    for entry in raw.get("fields", []):
        missing = [k for k in required if k not in entry]
        if missing:
            raise ValueError(f"{path}: field {entry.get('id', '?')!r} lacks {missing}.")
        if entry["vlm_era_status"] not in STATUS_COLOUR:
            raise ValueError(f"{path}: field {entry['id']!r} has vlm_era_status {entry['vlm_era_status']!r}; "
                             f"expected one of {list(STATUS_COLOUR)}.")
    return raw


def taxonomy_table(taxonomy: dict[str, Any]) -> pd.DataFrame:
    rows = [{"field": f["name"], "shift": f["shift"], "ID classes": f["id_classes"],
             "classify ID too": "yes" if f["id_classification"] else "no",
             "transductive": "yes" if f["transductive"] else "no",
             "v1 benchmarks": "; ".join(f["v1_benchmarks"]),
             "VLM era": f["vlm_era_status"].replace("_", " "),
             "LVLM era": f.get("lvlm_era", "–")} for f in taxonomy["fields"]]
    return pd.DataFrame(rows).set_index("field")


def _shift_column(shift: str) -> int:
    """0 covariate, 1 either, 2 semantic: read from the field's ``shift`` text."""
    head = shift.split("(")[0]
    if "or" in head.split():
        return 1
    return 0 if head.strip().startswith("covariate") else 2


def _classes_row(id_classes: str) -> int:
    """0 one ID class, 1 one or many / any, 2 many."""
    text = str(id_classes)
    if text.startswith("one") and "many" not in text:
        return 0
    return 2 if text == "many" else 1


def plot_taxonomy(taxonomy: dict[str, Any]):
    """The fields placed by what shifts (x) and how many ID classes there are (y), coloured by their status in
    the VLM era; a thick border if the task also classifies the ID samples."""
    fig, ax = plt.subplots(figsize=(8.6, 4.2))
    placed: dict[tuple[int, int], int] = {}
    for f in taxonomy["fields"]:
        x, y = _shift_column(f["shift"]), _classes_row(f["id_classes"])
        n = placed.get((x, y), 0)
        placed[(x, y)] = n + 1
        name = f["name"].replace(" (", "\n(")  # long qualifiers on a second line
        ax.text(x, y + 0.22 - 0.44 * n if (x, y) == (2, 2) else y, name, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "fc": STATUS_COLOUR[f["vlm_era_status"]], "ec": "black",
                      "lw": 2.5 if f["id_classification"] else 0.8})
    ax.set_xlim(-0.9, 2.9)
    ax.set_ylim(-0.6, 2.7)
    ax.set_xticks([0, 1, 2], ["covariate shift", "either", "semantic shift"])
    ax.set_yticks([0, 1, 2], ["one ID class", "one or many / any", "many ID classes"])
    handles = [plt.Rectangle((0, 0), 1, 1, fc=STATUS_COLOUR[s]) for s in STATUS_ORDER]
    ax.legend(handles, [s.replace("_", " ") for s in STATUS_ORDER], title="VLM era", fontsize=7, loc="upper left",
              title_fontsize=8)
    ax.set_title("The generalized-OOD fields (thick border: the ID samples are also classified)", fontsize=9)
    fig.tight_layout()
    return fig


# --- the benchmark -------------------------------------------------------------------------------------------------


def metrics_frame(results: list[SeedResult]) -> pd.DataFrame:
    """Every seed's metric rows (detector, split, group, AUROC, FPR@95 both ways, AUPR) as one table."""
    return pd.DataFrame([row for r in results for row in r.metrics])


def detector_table(results: list[SeedResult], group: str, metric: str = "auroc") -> pd.DataFrame:
    """detector × split of ``group`` (near / far / covariate): mean ± sd over seeds, in %."""
    df = metrics_frame(results)
    df = df[df["group"] == group]
    if df.empty:
        return pd.DataFrame({"note": [f"no {group} splits in this run"]})
    table = df.groupby(["detector", "split"])[metric].apply(lambda v: mean_sd(v.to_numpy(), 1, 100)).unstack()
    table.columns = [c.split(": ", 1)[1] for c in table.columns]
    order = df.groupby("detector")[metric].mean().sort_values(ascending=metric != "auroc").index
    return table.loc[order]


def group_means(results: list[SeedResult], metric: str = "auroc", classifier_only: bool = False) -> pd.DataFrame:
    """detector × group: mean over splits and seeds (``classifier_only``: without the toy VLM's scores)."""
    df = metrics_frame(results)
    if classifier_only:
        df = df[df["detector"].isin(FAMILY)]
    return df.pivot_table(index="detector", columns="group", values=metric, aggfunc="mean")


def plot_near_far(results: list[SeedResult]):
    """Each detector's near-OOD against its far-OOD AUROC (means), by family; the diagonal is 'as hard'."""
    gm = group_means(results)
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    for det, row in gm.iterrows():
        family = FAMILY.get(det, "vision-language")
        colour = {"output": "#1f77b4", "feature": "#d62728", "vision-language": "#2ca02c"}[family]
        ax.scatter(row["far"], row["near"], color=colour, s=25)
        ax.annotate(det, (row["far"], row["near"]), fontsize=7, xytext=(3, 2), textcoords="offset points")
    lo = min(gm["near"].min(), gm["far"].min()) - 0.02
    ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8, ls=":")
    for fam, colour in (("output", "#1f77b4"), ("feature", "#d62728"), ("vision-language (toy)", "#2ca02c")):
        ax.scatter([], [], color=colour, label=fam)
    ax.set(xlabel="far-OOD AUROC (mean over sources and seeds)", ylabel="near-OOD AUROC (held-out garments)",
           title="Near- vs far-OOD: below the diagonal, near is harder")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_fpr_conventions(results: list[SeedResult]):
    """FPR@95 under the two conventions per detector (near-OOD): the same scores, different numbers."""
    df = metrics_frame(results)
    near = df[df["group"] == "near"].groupby("detector")[["fpr95_ood", "fpr95_id"]].mean().sort_values("fpr95_ood")
    fig, ax = plt.subplots(figsize=(7.4, 3.6))
    pos = np.arange(len(near))
    ax.bar(pos - 0.2, near["fpr95_ood"], 0.4, label="OOD positive (OpenOOD v1.5)")
    ax.bar(pos + 0.2, near["fpr95_id"], 0.4, label="ID positive (MCM papers)")
    ax.set_xticks(pos, near.index, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="FPR at 95% TPR", title="Near-OOD FPR@95 under the two conventions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def openood_table(path=None) -> pd.DataFrame:
    path = path or project_root() / "data" / "openood_v15.csv"
    return pd.read_csv(path)


#: Near-duplicate detectors collapsed into one unit before ranking (their scores are monotone transforms of each
#: other, or nearly: counting both would count one detector twice).
COLLAPSE = {"TempScale": "MSP", "Energy": "MaxLogit", "RelativeMahalanobis": "Mahalanobis"}
BENCHMARKS = ("cifar10", "cifar100")


def _reference(bench: str = "cifar10", arch: str = "ResNet18") -> pd.DataFrame:
    """OpenOOD v1.5's rows for a benchmark, indexed by our detector names, AUROC in [0, 1]."""
    ref = openood_table()
    ref = ref[(ref["benchmark"] == bench) & (ref["arch"] == arch)].set_index("postprocessor")
    ours = {v: k for k, v in OPENOOD_NAMES.items()}
    ref = ref[ref.index.isin(ours)].rename(index=ours)
    return ref[["near_auroc", "far_auroc"]].rename(columns={"near_auroc": "near", "far_auroc": "far"}) / 100


def collapse(table: pd.DataFrame) -> pd.DataFrame:
    """detector × (near, far) → unit × (near, far): near-duplicates averaged into one unit."""
    units = table.rename(index=lambda d: COLLAPSE.get(d, d))
    return units.groupby(level=0).mean()


def rank_pairs(results: list[SeedResult]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(benchmark, group) → (ours, OpenOOD's) AUROC over the collapsed detectors both have."""
    ours = collapse(group_means(results, classifier_only=True)[["near", "far"]])
    out = {}
    for bench in BENCHMARKS:
        theirs = collapse(_reference(bench))
        common = [d for d in ours.index if d in theirs.index]
        for group in ("near", "far"):
            out[(bench, group)] = (ours.loc[common, group].to_numpy(), theirs.loc[common, group].to_numpy())
    return out


def ranking_comparison(results: list[SeedResult]) -> pd.DataFrame:
    """Spearman rank correlation between our detectors' AUROC and OpenOOD v1.5's (ResNet-18, CIFAR-10 and
    CIFAR-100), over the detectors both have, near-duplicates collapsed, for near- and far-OOD."""
    rows = []
    for (bench, group), (ours, theirs) in rank_pairs(results).items():
        if len(ours) < 3:
            continue
        rho, pval = spearmanr(ours, theirs)
        rows.append({"OpenOOD benchmark": bench, "split": group, "detectors (collapsed)": len(ours),
                     "Spearman ρ": round(float(rho), 3), "p": round(float(pval), 3)})
    return pd.DataFrame(rows)


#: R2: fewer ranked units than this give no verdict on the ranking (a bootstrap over so few is degenerate).
MIN_RANKED = 8


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row pair of a, b [R, n] (NaN where a row is constant)."""
    ra, rb = rankdata(a, axis=-1), rankdata(b, axis=-1)
    ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    return np.divide((ra * rb).sum(-1), den, out=np.full(den.shape, np.nan), where=den > 0)


def mean_rho_interval(results: list[SeedResult], n_boot: int = 2000, seed: int = 0) -> Interval:
    """The mean of the four Spearman ρ (near and far, CIFAR-10 and CIFAR-100) with a percentile interval from
    resampling the collapsed detectors (the units ranked) with replacement; ``n``: the detectors ranked."""
    pairs = list(rank_pairs(results).values())
    n = len(pairs[0][0])
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    with warnings.catch_warnings():  # a resample of one repeated detector has no ranking: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        boots = np.nanmean([_spearman_rows(o[idx], t[idx]) for o, t in pairs], axis=0)
    point = float(np.mean([_spearman_rows(o[None], t[None])[0] for o, t in pairs]))
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return Interval(point, float(lo), float(hi), "percentile bootstrap over detectors", n,
                    source="seeds[:].metrics | the mean of four Spearman ρ between our AUROC by group (near, far; "
                           "classifier detectors, near-duplicates collapsed, means over splits and seeds) and "
                           "data/openood_v15.csv (CIFAR-10, CIFAR-100)")


def ranked_units(results: list[SeedResult]) -> int:
    """How many collapsed detectors both we and OpenOOD have, on the benchmark with fewer (C4's units; R2)."""
    pairs = rank_pairs(results)
    return min((len(ours) for ours, _ in pairs.values()), default=0)


def plot_examples(examples: Examples):
    """A few images of every split, from the results: what the detectors see (the paper profile: OpenOOD's
    lists)."""
    rows, per_split = examples.images.shape[:2]
    fig, axes = plt.subplots(rows, per_split, figsize=(per_split * 0.8, rows * 0.85))
    for i, name in enumerate(examples.names):
        for j in range(per_split):
            image = np.clip(examples.images[i, j].transpose(1, 2, 0), 0, 1)
            axes[i, j].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(left=0.3, wspace=0.05, hspace=0.05)
    return fig


def accuracy_table(results: list[SeedResult]) -> pd.DataFrame:
    names = list(results[0].accuracy)
    return pd.DataFrame({"accuracy (%)": [mean_sd([r.accuracy[n] for r in results], 1, 100) for n in names]},
                        index=names)


def _per_seed_group(results: list[SeedResult]) -> pd.DataFrame:
    df = metrics_frame(results)
    return df.pivot_table(index=["seed", "detector"], columns="group", values="auroc", aggfunc="mean")


#: The effect a reproduction must reach where the reference does not supply one (AUROC): one point.
NOMINAL_EFFECT = 0.01
#: C4: the agreement a transferable ranking must reach, mean Spearman ρ.
RHO_EFFECT = 0.5


def reference_transfer() -> dict[str, float]:
    """The rule applied to the reference: Spearman ρ between OpenOOD's own CIFAR-10 and CIFAR-100 rankings of the
    collapsed detectors, near and far."""
    c10, c100 = collapse(_reference("cifar10")), collapse(_reference("cifar100"))
    common = [d for d in c10.index if d in c100.index]
    return {g: float(spearmanr(c10.loc[common, g], c100.loc[common, g])[0]) for g in ("near", "far")}


def paired_interval(results: list[SeedResult], stat, source: str) -> tuple[Interval, list[Interval]]:
    """``stat(near, far)`` (dicts detector → AUROC, or → bootstrap replicates) as its mean over seeds, with a 95%
    interval from the seed means of the replicates (test items resampled, models fixed) and each seed's interval
    (:func:`replbook.intervals.seed_bootstrap`)."""
    per_seed = _per_seed_group(results)
    points, boots = [], []
    for r in results:
        gm = per_seed.xs(r.seed, level="seed")
        points.append(float(stat(gm["near"].to_dict(), gm["far"].to_dict())))
        boots.append(np.asarray(stat(r.boot["near"], r.boot["far"]), dtype=np.float64))
    return seed_bootstrap(points, boots, source=source)


def centred(est: Interval) -> Interval:
    """The interval as this chapter's rules read it: its estimate is the interval's centre (the rules were written
    so, before the numbers; the seed mean is what the "ours" column shows). Its ``from`` says so."""
    paths, _, how = est.source.partition(" | ")
    return replace(est, mean=(est.lo + est.hi) / 2,
                   source=f"{paths} | the centre of the 95% interval ({est.method}) of {how or 'it'}")


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _ours(d: Interval, what: str) -> str:
    return f"{what} {d.scaled(100).text(1)} AUROC points (seed mean, 95% CI)"


def on_reference(stat, detectors: list[str]) -> dict[str, float]:
    """The claim's statistic on OpenOOD's leaderboard, per CIFAR benchmark (NaN where a detector is missing)."""
    out = {}
    for bench in BENCHMARKS:
        ref = _reference(bench)
        has = set(detectors) <= set(ref.index)
        out[bench] = float(stat(ref["near"].to_dict(), ref["far"].to_dict())) if has else float("nan")
    return out


def reference_effect(values: dict[str, float]) -> tuple[float, str, bool]:
    """The effect to reach, from the reference's values: their smallest when every benchmark shows the claim
    (positive), else the nominal one; the paper-column text, which says whether the reference shows it; and whether
    it does (on every benchmark)."""
    text = ", ".join(f"{b} {_pts(v)}" for b, v in values.items())
    if any(np.isnan(v) for v in values.values()):
        return NOMINAL_EFFECT, f"not on OpenOOD's leaderboard for every benchmark ({text})", False
    if all(v > 0 for v in values.values()):
        return min(values.values()), f"OpenOOD shows it ({text})", True
    return NOMINAL_EFFECT, f"OpenOOD itself does not show it ({text})", False


#: The cap where the reference that sets a claim's effect does not show the claim itself (issue 28, finding 6).
REFERENCE_CAP = "partly"


def judge_part(results: list[SeedResult], stat, detectors: list[str], what: str) -> tuple[Verdict, Interval, str]:
    """One part of a claim: ``stat`` on our seeds (paired interval) judged by the directional rule against the
    effect OpenOOD's rows give it (:func:`reference_effect`), at most *partly* where OpenOOD does not show it on
    both benchmarks (opposite sign, or not on the leaderboard); returns the verdict, our interval and the
    reference's text."""
    effect, ref_text, shown = reference_effect(on_reference(stat, detectors))
    source = f'seeds[:].boot["near"]; seeds[:].boot["far"] | {what}, seed means of the paired bootstrap replicates'
    d, seeds = paired_interval(results, stat, source)
    v = judge_effect(centred(d), effect, seeds=seeds, what=what)
    if not shown:
        v = cap(v, REFERENCE_CAP, f"the reference that sets the effect: {ref_text}")
    return v, d, ref_text


def _far_gain(det: str):
    def stat(near, far):
        return np.asarray(far[det]) - np.asarray(far["MSP"])
    return stat


def _extra_drop(det: str):
    def stat(near, far):
        return (np.asarray(far[det]) - np.asarray(near[det])) - (np.asarray(far["MSP"]) - np.asarray(near["MSP"]))
    return stat


def claim_c1(results: list[SeedResult], profile: str) -> Claim:
    """C1: output-space scores (MaxLogit, Energy) beat MSP on far-OOD, each paired far-OOD difference judged
    against OpenOOD's smallest gain."""
    parts, ours, paper = {}, [], []
    for det in ("MaxLogit", "Energy"):
        parts[det], d, ref_text = judge_part(results, _far_gain(det), [det, "MSP"], f"far AUROC, {det} − MSP")
        ours.append(_ours(d, f"{det} − MSP:"))
        paper.append(f"{det} − MSP, far: {ref_text}")
    return Claim.judged("C1", "output-space scores (MaxLogit, Energy) beat MSP on far-OOD", "; ".join(paper),
                        OPENOOD, "; ".join(ours), profile, judge_all(parts),
                        "rule: judge_effect on each paired far-OOD difference against OpenOOD's smallest gain",
                        premises=("R1",))


def claim_c2(results: list[SeedResult], profile: str, feature_distance: list[str]) -> Claim:
    """C2: feature-distance detectors excel on far-OOD (far AUROC − MSP's) but lag on near-OOD (their far − near
    drop beyond MSP's), each part judged against OpenOOD's smallest value where it shows it."""
    parts, ours, paper = {}, [], []
    for det in feature_distance:
        for label, stat in (("excels on far", _far_gain(det)),
                            ("drops more from far to near than MSP", _extra_drop(det))):
            name = f"{det} {label}"
            parts[name], d, ref_text = judge_part(results, stat, [det, "MSP"], name)
            ours.append(_ours(d, f"{name}:"))
            paper.append(f"{name}: {ref_text}")
    return Claim.judged(
        "C2", "feature-distance detectors (Mahalanobis, ViM) excel on far-OOD but lag on near-OOD",
        "; ".join(paper), OPENOOD, "; ".join(ours), profile, judge_all(parts),
        "rule: for each detector, far AUROC − MSP's (excels) and its far − near drop beyond MSP's (lags), judged "
        f"against OpenOOD's smallest value where it shows the claim, else +{NOMINAL_EFFECT:g} and at most partly",
        premises=("R1",))


def claim_c3(results: list[SeedResult], profile: str, common: list[str]) -> Claim:
    """C3: near-OOD is harder than far-OOD: the median over the detectors both we and OpenOOD have of far − near."""
    def gap(near, far):
        return np.median([np.asarray(far[d]) - np.asarray(near[d]) for d in common], axis=0)

    v, d, ref_text = judge_part(results, gap, common, "median far − near AUROC")
    return Claim.judged("C3", "near-OOD is harder than far-OOD",
                        f"median far − near AUROC over the {len(common)} detectors: {ref_text}", OPENOOD,
                        _ours(d, f"median far − near over the same {len(common)} detectors:"), profile, v,
                        "rule: judge_effect on the median over detectors (a few feature detectors with large gaps "
                        "would carry a mean) against OpenOOD's smaller value where it shows it, else "
                        f"+{NOMINAL_EFFECT:g} and at most partly", premises=("R1",))


def claim_c4(results: list[SeedResult], profile: str, ranks: pd.DataFrame) -> Claim:
    """C4: our ranking agrees with OpenOOD's on both CIFAR benchmarks: the mean Spearman ρ against ρ = 0.5."""
    rho = mean_rho_interval(results)
    v = judge_effect(centred(rho), RHO_EFFECT, what="mean Spearman ρ")
    per = "; ".join(f"{r['OpenOOD benchmark']} {r['split']} {r['Spearman ρ']:+.2f}" for _, r in ranks.iterrows())
    between = reference_transfer()
    if max(between.values()) < RHO_EFFECT:
        v = cap(v, REFERENCE_CAP, f"OpenOOD's own CIFAR-10 vs CIFAR-100 ρ (near {between['near']:+.2f}, far "
                                  f"{between['far']:+.2f}) falls short of ρ = {RHO_EFFECT}: the reference does not "
                                  f"show a transferable ranking")
    return Claim.judged(
        "C4", "the detector ranking transfers from OpenOOD's CIFAR benchmarks to ours",
        f"the leaderboard's order (CIFAR-10 and CIFAR-100); OpenOOD's own CIFAR-10 vs CIFAR-100 ρ: near "
        f"{between['near']:+.2f}, far {between['far']:+.2f}"
        + (f" (below {RHO_EFFECT}: the leaderboard itself does not show a transferable ranking)"
           if max(between.values()) < RHO_EFFECT else ""), OPENOOD,
        f"mean ρ {rho.mean:+.2f} [{rho.lo:+.2f}, {rho.hi:+.2f}] over {rho.n} collapsed detectors; {per}", profile, v,
        f"rule: the mean ρ over near/far × CIFAR-10/100, its interval by resampling detectors, against ρ = "
        f"{RHO_EFFECT}, at most partly where OpenOOD's own ranking does not transfer", premises=("R1", "R2"))


def claim_c5(results: list[SeedResult], profile: str, mcm_name: str, gl_name: str) -> Claim:
    """C5: zero-shot MCM with class-name prompts detects OOD; GL-MCM adds local evidence. Shown, never judged."""
    per_seed = _per_seed_group(results)
    ood_groups = ["near", "far"]
    mcm = per_seed.xs(mcm_name, level="detector")[ood_groups].mean(axis=1)
    gl = per_seed.xs(gl_name, level="detector")[ood_groups].mean(axis=1)
    toy = "toy" in mcm_name
    has_msp = "MSP" in per_seed.index.get_level_values("detector")
    msp = per_seed.xs("MSP", level="detector")[ood_groups].mean(axis=1) if has_msp else None
    return Claim.judged(
        "C5", f"GL-MCM improves on MCM ({'toy VLM stand-in for CLIP' if toy else 'CLIP, zero-shot'})", None,
        "GL-MCM paper (Miyai et al. 2023), ImageNet-1K tables: not transcribed",
        f"MCM {100 * mcm.mean():.1f}, GL-MCM {100 * gl.mean():.1f} mean AUROC"
        + (f" (classifier MSP {100 * msp.mean():.1f})" if msp is not None else "")
        + f"; GL-MCM higher in {int((gl > mcm).sum())} of {len(mcm)} runs", profile,
        not_comparable("a toy tower on 28×28 garments is not CLIP: the direction is shown, no verdict is drawn"
                       if toy else "the paper's numbers are not transcribed, so there is nothing to compare against"),
        premises=("R3", "R4"))


#: R1: the lower of OpenOOD v1.5's two ResNet-18 ID test accuracies (CIFAR-100 77.25 %, CIFAR-10 95.06 %).
MIN_ID_ACCURACY = 0.77


def premises(results: Oodv2Results, params: dict[str, Any]) -> list[Premise]:
    """R1: the classifier is in the reference's accuracy regime (ID test accuracy ≥ 0.77 in every seed: the lowest
    seed is the value); R2: at least :data:`MIN_RANKED` collapsed detectors to rank (C4); R3: the VLM is CLIP, R4: the
    GL-MCM paper's numbers are transcribed (C5: neither holds here, so C5 is not comparable)."""
    acc = [s.accuracy.get("clean") for s in results.seeds]
    low = min(acc) if acc and None not in acc else None
    r1 = premise("R1", "the classifier is in OpenOOD's accuracy regime: ID test accuracy, lowest seed", low,
                 at_least=MIN_ID_ACCURACY, fmt="{:.3f}", source='seeds[:].accuracy["clean"]',
                 note="bound: the lower of OpenOOD v1.5's ResNet-18 ID accuracies (CIFAR-100 77.25 %, CIFAR-10 "
                      "95.06 %); seeds "
                      + (", ".join(f"{a:.3f}" for a in acc) if low is not None else "without a clean accuracy")
                      + "; a property of the classifier every detector scores, not a detector's AUROC")
    units = ranked_units(results.seeds)
    r2 = premise("R2", "enough detectors to rank: collapsed detectors both we and OpenOOD have", units,
                 at_least=MIN_RANKED, fmt="{:.0f}", source="seeds[:].metrics",
                 note="classifier detectors on both CIFAR benchmarks, near-duplicates counted once; fewer make "
                      "the bootstrap over detectors degenerate (C4)")
    vlms = sorted({row["detector"].split("(", 1)[1].rstrip(")") for r in results.seeds for row in r.metrics
                   if row["detector"].startswith("MCM (")})
    r3 = Premise("R3", "the vision-language model is CLIP, pre-trained, as in the MCM and GL-MCM papers", "CLIP",
                 ", ".join(vlms) if vlms else "no VLM scored", (vlms == ["CLIP"]) if vlms else None,
                 "seeds[:].metrics", "the toy tower is CLIP's shape only: 28×28 garments and class-name embeddings "
                                     "of a sentence encoder (C5)")
    r4 = Premise("R4", "the GL-MCM paper's ImageNet-1K numbers are transcribed", "transcribed", "not transcribed",
                 False, "", "to compare against; see the spec's paper values (C5)")
    return [r1, r2, r3, r4]


def claims(results: Oodv2Results, params: dict[str, Any]) -> list[Claim]:
    """C1-C3 on AUROC differences paired over test items (seed means, pooled intervals), each judged against what
    OpenOOD's CIFAR-10 and CIFAR-100 rows show by the same statistic, at most *partly* where OpenOOD does not show
    it; C4 on the mean rank correlation with both benchmarks, near-duplicates collapsed; C5 not comparable (a toy
    tower). A claim whose detectors were not run is left out; a claim whose premise (:func:`premises`) does not hold
    is not comparable."""
    seeds, profile = results.seeds, params["profile"]
    dets = set(_per_seed_group(seeds).index.get_level_values("detector"))
    out = []
    if {"MSP", "MaxLogit", "Energy"} <= dets:
        out.append(claim_c1(seeds, profile))
    feature_distance = [d for d in ("Mahalanobis", "ViM") if d in dets]
    if feature_distance and "MSP" in dets:
        out.append(claim_c2(seeds, profile, feature_distance))
    out.append(claim_c3(seeds, profile, sorted(d for d in dets if d in OPENOOD_NAMES)))
    ranks = ranking_comparison(seeds)
    if len(ranks):
        out.append(claim_c4(seeds, profile, ranks))
    mcm_name = next((d for d in sorted(dets) if d.startswith("MCM (")), None)
    gl_name = next((d for d in sorted(dets) if d.startswith("GL-MCM (")), None)
    if mcm_name and gl_name:
        out.append(claim_c5(seeds, profile, mcm_name, gl_name))
    return apply_premises(out, premises(results, params))
