"""Tables, figures and the claims (with their verdict rules) of the Min-K%++ chapter."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from replbook.experiments.minkpp.common import LABELS, MinkppResults, SeedResult
from replbook.intervals import Interval, seed_bootstrap, signed_interval
from replbook.minkpp import score_name
from replbook.verdicts import (
    Claim,
    Premise,
    apply_premises,
    judge_conjunction,
    judge_effect,
    judge_noninferior,
    not_comparable,
    premise,
)

#: Table 1 of the paper, WikiMIA_length32, original setting, AUROC %. Transcribed from the official project page,
#: which reproduces this block; not yet checked against the PDF.
PAPER_WIKIMIA32 = pd.DataFrame(
    {
        "Mamba-1.4B": [61.0, 62.2, 60.9, 61.9, 64.1, 63.2, 66.8],
        "Pythia-6.9B": [63.8, 63.6, 62.2, 64.3, 65.8, 66.3, 70.3],
        "LLaMA-13B": [67.5, 57.9, 64.0, 67.8, 65.8, 68.0, 84.8],
        "LLaMA-30B": [69.4, 63.5, 64.1, 69.8, 67.6, 70.1, 84.3],
        "LLaMA-65B": [70.7, 68.8, 66.5, 71.1, 69.6, 71.3, 85.1],
        "Avg": [66.5, 63.2, 63.5, 67.0, 66.6, 67.8, 78.3],
    },
    index=["Loss", "Ref", "Lowercase", "Zlib", "Neighbor", "Min-K%", "Min-K%++"],
)
PAPER_WIKIMIA32_SOURCE = "Table 1, WikiMIA_length32 (via the official project page [abs]; not checked against the PDF)"
#: The same, short enough for a table cell.
SHORT_WIKIMIA32 = "Table 1, WikiMIA-32 (project page [abs]; unverified vs PDF)"

#: Table 2, MIMIR (13-gram 0.8 split, non-deduplicated Pythia), AUROC % averaged over 7 domains. Same status.
PAPER_MIMIR = pd.DataFrame(
    {
        "160M": [52.1, 52.2, 52.3, 52.0, 52.6, 52.4],
        "1.4B": [53.1, 54.6, 53.2, 52.9, 53.6, 54.1],
        "2.8B": [53.5, 55.6, 53.6, 53.2, 54.2, 55.3],
        "6.9B": [54.4, 57.4, 54.3, 53.8, 55.2, 57.0],
        "12B": [54.9, 58.7, 54.8, "n/a", 55.9, 58.7],
    },
    index=["Loss", "Ref", "Zlib", "Neighbor", "Min-K%", "Min-K%++"],
)
PAPER_MIMIR_SOURCE = ("Table 2, MIMIR average of 7 domains (via the official project page [abs]; not checked against "
                      "the PDF)")

#: Committed outputs of the official repository (results/), WikiMIA_length32 with Pythia-2.8B, AUROC % at the fixed
#: k = 0.2 (no selection on test): the paper profile's sanity check.
PAPER_PYTHIA28_FIXED = {"loss": 61.4, "zlib": 62.1, "ref": 61.3, "mink": 61.7, "minkpp": 64.0}

def last_epoch(results: list[SeedResult]) -> int:
    return max(results[0].epochs)


def pooled(results: list[SeedResult], epoch: int, stat: Callable[[dict[str, Any]], Any],
           source: str = "") -> tuple[Interval, list[Interval]]:
    """A statistic of the test AUROCs (``stat`` maps name → AUROC, or name → bootstrap replicates, to a value) as
    its seed mean with the interval of the seed means of its bootstrap replicates, and every seed's own interval
    (:func:`replbook.intervals.seed_bootstrap`)."""
    points = [float(stat({n: v["auroc"] for n, v in r.epochs[epoch]["test"].items()})) for r in results]
    boots = [np.asarray(stat(r.boot[epoch]), dtype=np.float64) for r in results]
    return seed_bootstrap(points, boots, source=source)


def k_range_gap(ks: list[float]) -> Callable[[dict[str, Any]], Any]:
    """The statistic of C3: Min-K%'s AUROC range over the k sweep minus Min-K%++'s (positive: Min-K%++ is the less
    sensitive to k)."""
    def stat(auroc: dict[str, Any]) -> Any:
        ranges = {}
        for method in ("mink", "minkpp"):
            stacked = np.stack([np.asarray(auroc[score_name(method, k)], dtype=np.float64) for k in ks])
            ranges[method] = stacked.max(0) - stacked.min(0)
        return ranges["mink"] - ranges["minkpp"]
    return stat


def difference(a: str, b: str) -> Callable[[dict[str, Any]], Any]:
    return lambda auroc: np.asarray(auroc[a], dtype=np.float64) - np.asarray(auroc[b], dtype=np.float64)


def _summary_rows(results: list[SeedResult], fixed_k: float, epoch: int) -> list[dict[str, Any]]:
    """auroc_summary's rows with numbers: method, k, auroc, lo, hi, sd, tpr05 (+ mean of the seeds' bounds),
    tpr01, fpr95."""
    rows = []

    def add(label: str, names: list[str], k_note: str) -> None:
        per_seed = [r.epochs[epoch]["test"][n] for r, n in zip(results, names, strict=True)]
        boots = [np.asarray(r.boot[epoch][n], dtype=np.float64) for r, n in zip(results, names, strict=True)]
        mean = {m: float(np.mean([p[m] for p in per_seed]))
                for m in ("auroc", "tpr05", "tpr05_lo", "tpr05_hi", "tpr01", "fpr95")}
        lo, hi = np.percentile(np.mean(boots, axis=0), [2.5, 97.5])
        sd = float(np.std([p["auroc"] for p in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0
        rows.append({"method": label, "k": k_note, **mean, "lo": float(lo), "hi": float(hi), "sd": sd,
                     "per_seed": [p["auroc"] for p in per_seed]})

    n = len(results)
    for method in ("loss", "zlib", "ref", "confidence"):
        if method in results[0].epochs[epoch]["test"]:
            add(LABELS[method], [method] * n, "-")
    for method in ("mink", "minkpp"):
        add(LABELS[method], [score_name(method, fixed_k)] * n, f"{fixed_k} (fixed)")
        chosen = [r.epochs[epoch]["k"][method]["val"] for r in results]
        add(LABELS[method], [score_name(method, k) for k in chosen], f"{_ks(chosen)} (validation)")
        chosen = [r.epochs[epoch]["k"][method]["best"] for r in results]
        add(LABELS[method], [score_name(method, k) for k in chosen], f"{_ks(chosen)} (best on test: shown only)")
    return rows


def auroc_summary(results: list[SeedResult], fixed_k: float, epoch: int | None = None) -> pd.DataFrame:
    """At ``epoch`` (default: the highest exposure): each method's test AUROC as the seed mean with its 95% interval
    (bootstrap over test items, pooled over seeds), its spread over seeds, TPR at 5% FPR (seed mean, with the mean of
    the seeds' own 95% bounds), and the seed means of TPR at 1% FPR and of FPR at 95% TPR, for the fixed k, the
    validation-selected k and the best k on test."""
    epoch = last_epoch(results) if epoch is None else epoch
    return pd.DataFrame([
        {"method": r["method"], "k": r["k"],
         "AUROC, seed mean [95% CI]": signed_interval(r["auroc"], r["lo"], r["hi"], signed=False),
         "sd over seeds": round(r["sd"], 3),
         "TPR@5%FPR, seed mean [avg of seed 95% CIs]": signed_interval(r["tpr05"], r["tpr05_lo"], r["tpr05_hi"],
                                                                       signed=False),
         "TPR@1%FPR": round(r["tpr01"], 3), "FPR@95%TPR": round(r["fpr95"], 3)}
        for r in _summary_rows(results, fixed_k, epoch)])


def _ks(ks: list[float]) -> str:
    return "/".join(f"{k:g}" for k in ks)


def plot_exposure(results: list[SeedResult], fixed_k: float, title: str = "Membership AUROC against exposure"):
    """AUROC against training epochs (exposure), mean ± sd over seeds, at the fixed k."""
    epochs = sorted(results[0].epochs)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    names = ([(m, m) for m in ("loss", "zlib", "ref", "confidence")]
             + [(m, score_name(m, fixed_k)) for m in ("mink", "minkpp")])
    for method, name in names:
        if name not in results[0].epochs[epochs[0]]["test"]:
            continue
        vals = np.array([[r.epochs[e]["test"][name]["auroc"] for e in epochs] for r in results])
        mean, sd = vals.mean(0), vals.std(0)
        ax.plot(epochs, mean, marker="o", label=LABELS[method] + (f" (k={fixed_k})" if "@" in name else ""),
                lw=2.5 if method == "minkpp" else 1.5, ls=":" if method == "confidence" else "-")
        ax.fill_between(epochs, mean - sd, mean + sd, alpha=0.15)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="training epochs on the members (exposure)", ylabel="test AUROC", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_k_sweep(results: list[SeedResult], ks: list[float]):
    """AUROC against k at the highest exposure for Min-K% and Min-K%++, mean ± sd over seeds."""
    epoch = last_epoch(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for method in ("mink", "minkpp"):
        vals = np.array([[r.epochs[epoch]["test"][score_name(method, k)]["auroc"] for k in ks] for r in results])
        ax.errorbar(ks, vals.mean(0), yerr=vals.std(0), marker="o", capsize=3, label=LABELS[method])
    ax.set(xlabel="k (fraction of lowest-scoring tokens kept)", ylabel="test AUROC",
           title=f"Sensitivity to k (epoch {epoch})")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_roc(results: list[SeedResult], fixed_k: float):
    """ROC curves of seed 0 at the highest exposure, log-scaled FPR to show the low-FPR region."""
    r, epoch = results[0], last_epoch(results)
    labels = r.split["labels"][r.split["test"]]
    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    for name in ["loss", "zlib", "ref", score_name("mink", fixed_k), score_name("minkpp", fixed_k)]:
        if name not in r.scores[epoch]:
            continue
        fpr, tpr, _ = roc_curve(labels, r.scores[epoch][name][r.split["test"]])
        ax.plot(np.maximum(fpr, 1e-3), tpr, label=LABELS[name.split("@")[0]])
    ax.plot([1e-3, 1], [1e-3, 1], color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="false positive rate", ylabel="true positive rate",
           title=f"ROC, seed {r.seed}, epoch {epoch}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


#: The effects a reproduction must reach (AUROC). Miniature: the paper's gains in the shift-free MIMIR setting at the
#: 1.4B-6.9B models (Table 2): over Min-K% +0.5 to +1.8 (we take +1), over Loss +1.0 to +2.6 and over Zlib +0.9 to
#: +2.7 (we take the middle, +1.7); WikiMIA's +10.5 rides on a temporal shift the miniature does not have. Paper
#: profile (WikiMIA-32, Pythia-2.8B): the official repository's committed gains at k = 0.2.
EFFECTS = {"miniature": {"mink": 0.01, "loss": 0.017, "zlib": 0.017, "range": 0.01},
           "paper": {"mink": 0.023, "loss": 0.026, "zlib": 0.019, "ref": 0.027, "range": 0.01}}
#: Min-K%++ is "on par" with Ref on MIMIR (−0.5 to +0.2 points): no worse than Ref by more than this margin.
REF_MARGIN = 0.01

PAPER_C1 = "WikiMIA-32: 78.3 vs 67.8 (+10.5, avg of 5 models); MIMIR: −0.2 to +2.8 (160M to 12B)"
PAPER_C2 = {"loss": "WikiMIA-32: 78.3 vs 66.5; MIMIR: +0.3 to +3.8",
            "zlib": "WikiMIA-32: 78.3 vs 67.0; MIMIR: +0.1 to +3.9",
            "ref": "WikiMIA-32: 78.3 vs 63.2; MIMIR: on par, −0.5 to +0.2 (Ref ≥ Min-K%++ at 1.4B, 2.8B, 6.9B)"}
SOURCE_BOTH = "Tables 1 (WikiMIA-32) and 2 (MIMIR), via the project page [abs]; unverified vs PDF"


def _interval_text(d: Interval, seeds: list[Interval], unit: str = "Δ AUROC") -> str:
    per_seed = ", ".join(s.text() for s in seeds)
    return f"{unit} {d.text()} (seed mean, 95% CI); per seed {per_seed}"


#: The two LMs of the miniature: the claim ids' suffix and the name written into each claim.
LMS = {"tiny": ("", "tiny GPT"), "smollm2": ("-smollm2", "SmolLM2-135M, LoRA fine-tuned")}
#: The results field that holds each LM's seeds (a claim's ``from`` names it).
FIELDS = {"tiny": "lm", "smollm2": "smollm2"}


def _auroc_path(at: str, epoch: int, name: str) -> str:
    """The per-seed test AUROCs of score ``name`` at ``epoch`` in the results field ``at``, as a ``from`` path."""
    return f"{at}[:].epochs[{epoch}].test[{json.dumps(name)}].auroc"


def _difference_source(at: str, epoch: int, a: str, b: str) -> str:
    """``from`` of a seed mean of AUROC(a) − AUROC(b): the mean :func:`pooled` reports."""
    return f"=mean({_auroc_path(at, epoch, a)} - {_auroc_path(at, epoch, b)})"


def claim_c1(results: list[SeedResult], profile: str, k: float, effect: float, at: str = "lm") -> Claim:
    """C1: Min-K%++ − Min-K% at k, seed mean at the highest exposure, against ``effect``; ``at`` is the results field
    that holds ``results``."""
    epoch = last_epoch(results)
    a, b = score_name("minkpp", k), score_name("mink", k)
    d, seeds = pooled(results, epoch, difference(a, b), _difference_source(at, epoch, a, b))
    best_k = [r.epochs[epoch]["diff"]["mink_best"]["diff"] for r in results]
    v = judge_effect(d, effect, seeds=seeds, what="Min-K%++ − Min-K%")
    return Claim.judged("C1", f"Min-K%++ beats Min-K% (reference-free), k = {k}", PAPER_C1, SOURCE_BOTH,
                  _interval_text(d, seeds) + f"; at the best k on test (shown, not judged): {np.mean(best_k):+.3f}",
                  profile, v, f"rule: judge_effect against +{effect:g} at epoch {epoch}")


def claim_c2(results: list[SeedResult], profile: str, k: float, base: str, letter: str, effect: float,
             at: str = "lm") -> Claim:
    """C2a/C2b: Min-K%++ − Loss (Zlib), as C1."""
    epoch = last_epoch(results)
    a = score_name("minkpp", k)
    d, seeds = pooled(results, epoch, difference(a, base), _difference_source(at, epoch, a, base))
    v = judge_effect(d, effect, seeds=seeds, what=f"Min-K%++ − {LABELS[base]}")
    return Claim.judged(f"C2{letter}", f"Min-K%++ beats {LABELS[base]}", PAPER_C2[base], SOURCE_BOTH,
                  _interval_text(d, seeds), profile, v, f"rule: as C1, against +{effect:g}")


def claim_c2c(results: list[SeedResult], profile: str, k: float, lm: str, ref_epochs: Any, effect: float,
              at: str = "lm") -> Claim:
    """C2c: Min-K%++ no worse than Ref (MIMIR's parity); on WikiMIA (paper profile) a win. On SmolLM2 the same
    rule, but Ref's reference there is the base model (an oracle), which premise R6 records."""
    epoch = last_epoch(results)
    a = score_name("minkpp", k)
    d, seeds = pooled(results, epoch, difference(a, "ref"), _difference_source(at, epoch, a, "ref"))
    if profile == "paper" and lm == "tiny":  # on WikiMIA the paper claims a win over Ref
        v = judge_effect(d, effect, seeds=seeds, what="Min-K%++ − Ref")
        rule = f"rule: on WikiMIA the paper claims a win: judge_effect against +{effect:g}"
    else:
        v = judge_noninferior(d, REF_MARGIN, what="Min-K%++ − Ref")
        rule = (f"rule: non-inferiority with margin δ = {REF_MARGIN:g} (the paper claims parity on MIMIR, a win "
                f"only on WikiMIA); ")
        rule += (f"our Ref model is a same-size LM trained {ref_epochs} epoch(s) on stdlib docstrings, a weaker "
                 f"reference than the paper's" if lm == "tiny" else
                 "Ref's reference here is the base model itself, the target's own weights before fine-tuning (R6)")
    return Claim.judged("C2c", "Min-K%++ is on par with Ref (no worse), which needs a reference model", PAPER_C2["ref"],
                  SOURCE_BOTH, _interval_text(d, seeds), profile, v, rule)


def claim_c3(results: list[SeedResult], profile: str, ks: list[float], effect: float, at: str = "lm") -> Claim:
    """C3: Min-K%++'s AUROC range over the k sweep is smaller than Min-K%'s."""
    statement = "Min-K%++ is robust to k"
    if len(ks) < 2:
        return Claim.judged("C3", statement, None, "ablation section [abs]", "one k only", profile,
                            not_comparable("a single k has no range"), "", missing=("a sweep of at least two k",))
    epoch = last_epoch(results)
    d, seeds = pooled(results, epoch, k_range_gap(ks),
                      f"{at}[:].epochs[{epoch}].test; {at}[:].boot[{epoch}] | per seed, the range over the k sweep "
                      f"of Min-K%'s test AUROC minus Min-K%++'s (report.k_range_gap), averaged over seeds")
    v = judge_effect(d, effect, seeds=seeds, what="range(Min-K%) − range(Min-K%++)")
    return Claim.judged("C3", statement, None, "ablation section [abs]; values not transcribed",
                  _interval_text(d, seeds, "AUROC range over k, Min-K% minus Min-K%++:") + f" (k ∈ {{{_ks(ks)}}})",
                  profile, v, f"rule: judge_effect on the range difference against +{effect:g}")


#: P1–P5 (paper profile): our AUROC counts as the committed one when ours − committed lies within ±δ (AUROC
#: points), both ends of its interval (an equivalence test: two "no worse than" parts, one each way).
PAPER_MARGIN = 2.0


def paper_rows(results: list[SeedResult], profile: str, target_model: str, val_fraction: float) -> list[Claim]:
    """P1–P5 (paper profile): each method's AUROC at k = 0.2 against the official repository's committed value,
    judged as equivalence within ±:data:`PAPER_MARGIN` points (premise R1 of the paper profile says whether the run
    scored the model the committed values are of)."""
    epoch = last_epoch(results)
    r, claims = results[0].epochs[epoch], []
    n_test = len(results[0].split.get("test", ()))
    for number, method in enumerate(("loss", "zlib", "ref", "mink", "minkpp"), start=1):
        name = method if method in ("loss", "zlib", "ref") else score_name(method, 0.2)
        if name not in r["test"]:
            continue
        ours, lo, hi = (100 * r["test"][name][key] for key in ("auroc", "lo", "hi"))
        committed = PAPER_PYTHIA28_FIXED[method]
        est = Interval(ours - committed, lo - committed, hi - committed, "bootstrap over test items", n_test,
                       source=f"=lm[0].epochs[{epoch}].test[{json.dumps(name)}].auroc * 100 - {committed!r}")
        what = "ours − committed (AUROC points)"
        v = judge_conjunction({
            f"no lower than committed − {PAPER_MARGIN:g}": judge_noninferior(est, PAPER_MARGIN, what=what),
            f"no higher than committed + {PAPER_MARGIN:g}": judge_noninferior(est, PAPER_MARGIN, what=what,
                                                                             higher_is_better=False)})
        claims.append(Claim.judged(
            f"P{number}", f"{LABELS[method]} AUROC, WikiMIA_length32{', k = 0.2' if '@' in name else ''}",
            f"{committed} (Pythia-2.8B)", "committed results/ of the official repository [code]",
            f"{ours:.1f} [{lo:.1f}, {hi:.1f}] ({target_model})", profile, v,
            f"rule: equivalence within δ = {PAPER_MARGIN:g} AUROC points: the interval of ours − committed (our "
            f"test split, {100 * (1 - val_fraction):.0f}% of the items; the committed value uses all) lies within "
            f"±{PAPER_MARGIN:g}"))
    return claims


def claim_a1(results: list[SeedResult], profile: str, k: float, lm: str) -> Claim:
    """A1: the absolute AUROC levels, never comparable in the miniature: premise R4 (R5 for SmolLM2) fails."""
    epoch = last_epoch(results)
    level = np.mean([r.epochs[epoch]["test"][score_name("minkpp", k)]["auroc"] for r in results])
    pid = "R4" if lm == "tiny" else "R5"
    why = (f"no rule: the paper's absolute levels compare only on a pre-trained LLM of the paper's scale with "
           f"pre-training membership, which premise {pid} says this run is not ("
           + ("a tiny LM trained from scratch on a random member split of Python docs)" if lm == "tiny" else
              "fine-tuning membership of a 135M-parameter LM, LoRA for a few epochs)"))
    return Claim.judged("A1", "Absolute AUROC levels on WikiMIA / MIMIR",
                        "Min-K%++ 78.3 (WikiMIA-32 avg); 52.4-58.7 (MIMIR)",
                        f"{SHORT_WIKIMIA32}; Table 2, MIMIR (same status)",
                        f"Min-K%++ {level:.3f} on the miniature (k = {k}, seed mean)", profile, not_comparable(why))


def needs(cid: str, lm: str, profile: str) -> tuple[str, ...]:
    """The premises claim ``cid`` (without its LM suffix) of LM ``lm`` needs (:func:`premises`)."""
    if profile == "paper" and lm == "tiny":
        return ("R1",)
    if lm == "tiny":
        return ("R4",) if cid == "A1" else ("R1",)
    if cid == "A1":
        return ("R5",)
    return ("R2", "R3", "R6") if cid == "C2c" else ("R2", "R3")


def lm_claims(results: list[SeedResult], lm: str, profile: str, k: float, ks: list[float], ref_epochs: int,
              target_model: str, val_fraction: float) -> list[Claim]:
    """One LM's claims (``lm`` is ``"tiny"``, the tiny GPT or the paper profile's model, or ``"smollm2"``: ids end
    in ``-smollm2``, Ref's reference is the base model, and there are no paper-profile rows), judged by the rules
    stated in the notebook before the numbers, each naming the premises it needs (not yet applied)."""
    if lm not in LMS:
        raise ValueError(f"lm must be one of {sorted(LMS)}; got {lm!r}.")
    suffix, lm_name = LMS[lm]
    at = FIELDS[lm]
    effect = EFFECTS["paper" if profile == "paper" and lm == "tiny" else "miniature"]
    test = results[0].epochs[last_epoch(results)]["test"]
    claims = [claim_c1(results, profile, k, effect["mink"], at)]
    claims += [claim_c2(results, profile, k, base, letter, effect[base], at)
               for letter, base in (("a", "loss"), ("b", "zlib")) if base in test]
    if "ref" in test:
        claims.append(claim_c2c(results, profile, k, lm, ref_epochs, effect.get("ref", 0.0), at))
    claims.append(claim_c3(results, profile, ks, effect["range"], at))
    if profile == "paper" and lm == "tiny":
        claims += paper_rows(results, profile, target_model, val_fraction)
    else:
        claims.append(claim_a1(results, profile, k, lm))
    claims = [replace(c, premises=needs(c.id, lm, profile)) for c in claims]
    if lm != "tiny":  # the same rules, with the LM in every id and statement
        claims = [replace(c, id=c.id + suffix, claim=f"{c.claim} ({lm_name})") for c in claims]
    return claims


# ---------------------------------------------------------------------------------------------------- premises

#: R1 / R2: the member/non-member perplexity gap, log(perplexity of non-members / of members), every seed must
#: reach at the judged exposure (members about 10% less perplexing): without memorisation there is nothing to detect.
GAP_MIN = 0.10
#: R3: the largest |log ratio| a seed may show on SmolLM2's base model (exposure 0), where the split is random.
BASE_GAP_MAX = 0.15
#: R4 / R5: the paper's smallest target (Pythia-160M, MIMIR), in parameters.
PAPER_SMALLEST = 160e6


def log_gaps(results: list[SeedResult], epoch: int) -> list[float] | None:
    """Per seed, log(perplexity of non-members / of members) at ``epoch`` (None where it was not recorded)."""
    if not results or any(epoch not in r.perplexity for r in results):
        return None
    return [float(np.log(r.perplexity[epoch]["non_member"] / r.perplexity[epoch]["member"])) for r in results]


def _gap_expression(at: str, epoch: int) -> str:
    return f"log({at}[:].perplexity[{epoch}].non_member / {at}[:].perplexity[{epoch}].member)"


def _seeds_text(value: float, gaps: list[float], what: str) -> str:
    return f"{value:.3f} ({what} of the seeds' {', '.join(f'{g:+.3f}' for g in gaps)})"


def gap_premise(pid: str, results: list[SeedResult], at: str, lm_name: str) -> Premise:
    """R1 (tiny GPT) / R2 (SmolLM2): every seed's member/non-member perplexity gap at the judged exposure."""
    epoch = last_epoch(results)
    gaps = log_gaps(results, epoch)
    p = premise(pid, f"{lm_name}: a member/non-member perplexity gap after exposure (epoch {epoch}): log(perplexity "
                     f"of non-members / of members) in every seed", None if gaps is None else min(gaps),
                at_least=GAP_MIN, fmt="{:.2f}", source=f"=min({_gap_expression(at, epoch)})",
                note="the group means of the Loss score (the reference arm of C2a), not any attack's AUROC: a "
                     "reference level that makes the comparison measurable")
    return p if gaps is None else replace(p, measured=_seeds_text(min(gaps), gaps, "min"))


def base_premise(results: list[SeedResult], at: str) -> Premise:
    """R3: no membership signal in SmolLM2's base model (exposure 0): every seed's |log ratio| is small."""
    gaps = log_gaps(results, 0)
    p = premise("R3", "SmolLM2: no membership signal at exposure 0 (the base model, a random split): |log(perplexity "
                      "of non-members / of members)| in every seed", None if gaps is None else max(map(abs, gaps)),
                at_most=BASE_GAP_MAX, fmt="{:.2f}", source=f"=max(abs({_gap_expression(at, 0)}))",
                note="the base model before any fine-tuning, a state no claim compares")
    return p if gaps is None else replace(p, measured=_seeds_text(max(map(abs, gaps)), gaps, "largest |·|"))


def tiny_gpt_parameters(vocab: int, context: int, d_model: int, n_layers: int) -> int:
    """Parameters of ``replbook.models.TinyGPT`` (head tied to the token embedding): token and position embeddings,
    per block two LayerNorms, the fused q/k/v and output projections and the 4× MLP (with biases), and the final
    LayerNorm."""
    return vocab * d_model + context * d_model + n_layers * (12 * d_model**2 + 13 * d_model) + 2 * d_model


def premises(results: MinkppResults, params: dict[str, Any]) -> list[Premise]:
    """The chapter's premises, measured in this run: R1 (tiny GPT) and R2 (SmolLM2) a member/non-member perplexity
    gap at the judged exposure; R3 no membership signal in SmolLM2's base model; R4 / R5 a pre-trained LLM of the
    paper's scale (never, in the miniature: A1 is not comparable through them); R6 a Ref reference that is not the
    target's own base weights (SmolLM2's is). The paper profile has one: R1, the run scores the model and data of the
    official committed numbers."""
    if params["profile"] == "paper":
        pythia = params["target_model"].rstrip("/").lower().endswith("pythia-2.8b")
        data = params["dataset"] == "WikiMIA_length32"
        return [Premise("R1", "the run scores the model and data of the official committed results and gains: "
                              "Pythia-2.8B on WikiMIA_length32", "Pythia-2.8B on WikiMIA_length32",
                        f"{params['target_model']} on {params['dataset']}", pythia and data,
                        "parameters target_model, dataset",
                        "the effects of C1-C3 and the values of P1-P5 are Pythia-2.8B's")]
    out = [gap_premise("R1", results.lm, "lm", "tiny GPT")]
    if results.smollm2:
        out += [gap_premise("R2", results.smollm2, "smollm2", "SmolLM2"), base_premise(results.smollm2, "smollm2")]
    n = tiny_gpt_parameters(params["vocab_size"], params["chunk_len"], params["d_model"], params["n_layers"])
    members = len(results.lm[0].split.get("members", ())) if results.lm else 0
    scale = ("a pre-trained LLM of the paper's scale whose members are its pre-training data (the paper's smallest "
             "target: Pythia-160M)")
    required = f"≥ {PAPER_SMALLEST / 1e6:.0f} M parameters, pre-training membership"
    out.append(Premise("R4", f"tiny GPT: {scale}", required,
                       f"tiny GPT, ≈ {n / 1e6:.2f} M parameters, trained from scratch on {members} member chunks",
                       False, "parameters vocab_size, chunk_len, d_model, n_layers; lm[0].split",
                       "the paper's absolute AUROC levels (A1) compare only on such a model"))
    if results.smollm2:
        out.append(Premise("R5", f"SmolLM2: {scale}", required,
                           "SmolLM2-135M (135 M parameters); its members are LoRA fine-tuning data", False,
                           "parameters lm_epochs, lm_rank", "the paper's absolute AUROC levels (A1-smollm2) compare "
                                                            "only on such a model"))
        out.append(Premise("R6", "SmolLM2: Ref's reference is a smaller model of the same family, not the target's "
                                 "own base weights", "a separate reference model",
                           "the base model itself: the target's own weights before fine-tuning (an oracle)", False,
                           "the SmolLM2 section's construction (Ref scores against the base model)",
                           "how the Ref arm is built, not its AUROC"))
    return out


def claims(results: MinkppResults, params: dict[str, Any]) -> list[Claim]:
    """Every claim of the chapter: the tiny GPT's (or the paper profile's model's), then the SmolLM2 section's; a
    claim whose premise does not hold is not comparable (:func:`replbook.verdicts.apply_premises`)."""
    values = (params["profile"], params["fixed_k"], params["ks"], params["ref_epochs"], params["target_model"],
              params["val_fraction"])
    out = lm_claims(results.lm, "tiny", *values) + (lm_claims(results.smollm2, "smollm2", *values)
                                                    if results.smollm2 else [])
    stated = premises(results, params)
    by_id = {p.id: p for p in stated}
    # A1 has no rule of its own: its reason names what its premise measured
    out = [replace(c, reason=c.reason + "; " + "; ".join(f"{pid} measured: {by_id[pid].measured}, required: "
                                                          f"{by_id[pid].required}" for pid in c.premises))
           if c.rule is not None and c.rule.kind == "none" and c.premises else c for c in out]
    return apply_premises(out, stated)


def perplexity_table(results: list[SeedResult]) -> pd.DataFrame:
    """Member and non-member perplexity of the target LM after each epoch, mean over seeds (miniature only)."""
    epochs = sorted(results[0].perplexity)
    return pd.DataFrame(
        {group: [np.mean([r.perplexity[e][group] for r in results]) for e in epochs]
         for group in ("member", "non_member")}, index=pd.Index(epochs, name="epoch"),
    ).round(1)


def verdicts_side_by_side(tiny: list[Claim], smollm2: list[Claim]) -> pd.DataFrame:
    """C1-C3 for the two LMs in one table: each verdict from its own rule, with the estimate it was read from."""
    smol = {c.id.removesuffix(LMS["smollm2"][0]): c for c in smollm2}
    rows = []
    for c in tiny:
        if not c.id.startswith("C") or c.id not in smol:
            continue
        rows.append({"claim": c.id, "statement": c.claim, "tiny GPT": c.verdict,
                     "tiny GPT estimate": c.ours.split(" (seed mean")[0], "SmolLM2": smol[c.id].verdict,
                     "SmolLM2 estimate": smol[c.id].ours.split(" (seed mean")[0]})
    return pd.DataFrame(rows).set_index("claim")


def base_control(results: list[SeedResult], fixed_k: float) -> pd.DataFrame:
    """The control of the SmolLM2 section: every method's test AUROC on the base model (exposure 0), seed mean with
    its 95% interval, each seed's value, and whether the interval holds 0.5 (a random split must look like chance to
    a model that has not been fine-tuned). Ref is omitted: its reference is the base model, so its score is 0 for
    every text."""
    rows = [r for r in _summary_rows(results, fixed_k, 0) if r["method"] != LABELS["ref"] and "best" not in r["k"]]
    return pd.DataFrame([{"method": r["method"], "k": r["k"],
                          "AUROC, seed mean [95% CI]": signed_interval(r["auroc"], r["lo"], r["hi"], signed=False),
                          "per seed": ", ".join(f"{a:.3f}" for a in r["per_seed"]),
                          "interval holds 0.5": r["lo"] <= 0.5 <= r["hi"]} for r in rows])


def control_sentence(control: pd.DataFrame) -> str:
    """One sentence on the control table: how many intervals hold 0.5, and the largest deviation."""
    held = int(control["interval holds 0.5"].sum())
    means = control["AUROC, seed mean [95% CI]"].str.split(" ").str[0].astype(float)
    worst = int((means - 0.5).abs().idxmax())
    return (f"{held} of {len(control)} intervals hold 0.5; the largest deviation is {control.method[worst]} "
            f"(k {control.k[worst]}) at {means[worst]:.3f}")


def throughput_table(results: list[SeedResult]) -> pd.DataFrame:
    """Tokens per second measured in this run (scoring with the full 49k-token distribution, LoRA training), per
    seed; training is absent where the adapters came from the cache."""
    return pd.DataFrame([{"seed": r.seed, **{k: round(v, 1) for k, v in r.throughput.items()}} for r in results]
                        ).set_index("seed")
