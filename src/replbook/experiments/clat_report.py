"""Figures, tables and claims of the CLAT chapter."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from replbook.experiments.clat import ARMS, SeedResult, best_minus_last, paired_difference
from replbook.models import SmallCNN
from replbook.record import Claim

SOURCE = "abstract and public reviews [abs]; Table 1 not transcribed"
LAYER_NAMES = ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2 (logits)"]


def plot_curves(results: list[SeedResult]):
    """Robust test accuracy during stage 1 and, continuing from it, each stage-2 arm (mean ± sd over seeds)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    s1 = np.array([[c["robust"] for c in r.stage1_curve] for r in results])
    e1 = np.arange(1, s1.shape[1] + 1)
    ax.plot(e1, s1.mean(0), color="black", label="stage 1: PGD-AT")
    ax.fill_between(e1, s1.mean(0) - s1.std(0), s1.mean(0) + s1.std(0), color="black", alpha=0.1)
    for arm in ARMS:
        a = np.array([[c["robust"] for c in r.curves[arm]] for r in results])
        e2 = np.arange(len(e1) + 1, len(e1) + a.shape[1] + 1)
        ax.plot(e2, a.mean(0), label=f"stage 2: {arm}")
        ax.fill_between(e2, a.mean(0) - a.std(0), a.mean(0) + a.std(0), alpha=0.15)
    ax.axvline(len(e1) + 0.5, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="epoch", ylabel="robust test accuracy (PGD)", title="Robust accuracy during training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def final_table(results: list[SeedResult]) -> pd.DataFrame:
    rows = []
    for name in ("stage 1", *ARMS):
        for metric in ("clean", "robust"):
            vals = [r.final[name][metric] for r in results]
            rows.append({"model": name, "metric": metric, "mean": np.mean(vals),
                         "sd": np.std(vals, ddof=1) if len(vals) > 1 else 0.0})
    return pd.DataFrame(rows).pivot_table(index="model", columns="metric", values=["mean", "sd"]).round(3)


def plot_final(results: list[SeedResult]):
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    names = ["stage 1", *ARMS]
    for j, metric in enumerate(("clean", "robust")):
        means = [np.mean([r.final[n][metric] for r in results]) for n in names]
        sds = [np.std([r.final[n][metric] for r in results]) for n in names]
        ax.bar(np.arange(len(names)) + 0.38 * j, means, 0.38, yerr=sds, capsize=3, label=metric)
    ax.set_xticks(np.arange(len(names)) + 0.19, names)
    ax.set(ylabel="test accuracy", title="Final accuracy (mean ± sd over seeds; robust = PGD)")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_selection(results: list[SeedResult]):
    """How often each layer was selected at each reselection epoch, over seeds."""
    epochs = [s["epoch"] for s in results[0].selections]
    counts = np.zeros((len(LAYER_NAMES), len(epochs)))
    for r in results:
        for j, s in enumerate(r.selections):
            for i in s["selected"]:
                counts[i, j] += 1
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    im = ax.imshow(counts, aspect="auto", cmap="Blues", vmin=0, vmax=len(results))
    ax.set_yticks(range(len(LAYER_NAMES)), LAYER_NAMES)
    ax.set_xticks(range(len(epochs)), [f"ep {e}" for e in epochs])
    ax.set(title="Layers CLAT selected (seeds per cell)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def layer_shares() -> pd.DataFrame:
    model = SmallCNN()
    total = sum(p.numel() for p in model.parameters())
    return pd.DataFrame([{"layer": n, "parameters": sum(p.numel() for p in layer.parameters()),
                          "share": sum(p.numel() for p in layer.parameters()) / total}
                         for n, layer in zip(LAYER_NAMES, model.layers, strict=True)])


def _fmt(d: dict[str, float]) -> str:
    if np.isnan(d["lo"]):
        return f"{100 * d['mean']:+.1f} points (n = {d['n']}, no interval)"
    return f"{100 * d['mean']:+.1f} points [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] (n = {d['n']} seeds)"


def _verdict(d: dict[str, float]) -> str:
    if np.isnan(d["lo"]):
        return "not comparable"
    if d["lo"] > 0:
        return "reproduced"
    if d["hi"] < 0:
        return "not reproduced"
    return "partly" if d["mean"] > 0 else "not reproduced"


def make_claims(results: list[SeedResult], params: dict[str, Any]) -> list[Claim]:
    profile = params["profile"]
    claims = []
    for cid, metric, what in (("C1", "robust", "robust (PGD) accuracy"), ("C2", "clean", "clean accuracy")):
        d = paired_difference([r.final["CLAT"][metric] for r in results],
                              [r.final["continued AT"][metric] for r in results])
        claims.append(Claim(f"{cid}: CLAT improves {what} over continued AT", "> 2 points [abs]", SOURCE,
                            "CLAT − continued AT: " + _fmt(d), profile, _verdict(d),
                            "rule: paired t-interval over seeds above 0 (reproduced), below 0 (not reproduced), "
                            "straddling 0 with a positive mean (partly)"))
    fractions = [s["trainable_fraction"] for r in results for s in r.selections]
    claims.append(Claim("C3: CLAT trains about 5% of the parameters", "≈ 5% [abs]", SOURCE,
                        f"{100 * np.mean(fractions):.1f}% (range {100 * min(fractions):.1f}–"
                        f"{100 * max(fractions):.1f}%) with k = {params['k']} of {params['candidates']} layers",
                        profile, "reproduced" if max(fractions) <= 0.10 else "not reproduced",
                        "rule: at most 10% of the parameters trainable"))
    gaps = {arm: np.mean([best_minus_last(r.curves[arm]) for r in results]) for arm in ARMS}
    claims.append(Claim("C4: CLAT mitigates robust overfitting", "qualitative [abs]", SOURCE,
                        f"best − last robust accuracy in stage 2: CLAT {100 * gaps['CLAT']:.1f} vs continued AT "
                        f"{100 * gaps['continued AT']:.1f} points (seed mean)", profile,
                        "reproduced" if gaps["CLAT"] < gaps["continued AT"] else "not reproduced",
                        "rule: CLAT's mean best-minus-last gap is smaller"))
    return claims


def metrics_record(results: list[SeedResult]) -> dict[str, Any]:
    return {f"seed{r.seed}": {"final": r.final, "stage1_curve": r.stage1_curve, "curves": r.curves,
                              "selections": r.selections} for r in results}
