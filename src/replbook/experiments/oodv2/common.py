"""What the OOD miniature and paper profile share: the detector list and settings, scoring every detector on a
classifier's outputs, the metric rows, and the chapter's results type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from replbook import ood
from replbook.codec import ResultsData
from replbook.stats import auroc_rank

#: Our detector names → OpenOOD v1.5's postprocessor names (``oodv2_openood_v15.csv``); Entropy has no row there.
OPENOOD_NAMES = {"MSP": "MSP", "TempScale": "TempScale", "MaxLogit": "MLS", "Energy": "EBO", "GEN": "GEN",
                 "ODIN": "ODIN", "Mahalanobis": "MDS", "RelativeMahalanobis": "RMDS", "KNN": "KNN", "ViM": "VIM",
                 "ReAct": "ReAct", "ASH": "ASH", "SCALE": "SCALE", "DICE": "DICE", "SHE": "SHE"}
DETECTORS = ("MSP", "TempScale", "MaxLogit", "Energy", "Entropy", "GEN", "ODIN", "Mahalanobis",
             "RelativeMahalanobis", "KNN", "ViM", "ReAct", "ASH", "SCALE", "DICE", "SHE")
#: The survey's grouping (and OpenOOD's): scores of the classifier's outputs vs of its features.
FAMILY = {**{d: "output" for d in ("MSP", "TempScale", "MaxLogit", "Energy", "Entropy", "GEN", "ODIN")},
          **{d: "feature" for d in ("Mahalanobis", "RelativeMahalanobis", "KNN", "ViM", "ReAct", "ASH", "SCALE",
                                     "DICE", "SHE")}}


@dataclass(frozen=True)
class Scoring:
    """Which detectors to score and their settings (the parameters of the same names)."""

    detectors: list[str]
    knn_k: int
    vim_dim: int
    react_percentile: float
    ash_percentile: float
    scale_percentile: float
    dice_percentile: float
    odin_temperature: float
    odin_epsilon: float


@dataclass
class SeedResult:
    """One seed (one trained classifier, or one OpenOOD checkpoint): a metric row per detector and split, the ID
    accuracy (clean and per covariate shift), TempScale's temperature, and the bootstrap replicates the claims'
    intervals are read from."""

    seed: int
    metrics: list[dict[str, Any]] = field(default_factory=list)  # one row per detector and split
    accuracy: dict[str, float] = field(default_factory=dict)  # clean and per corruption
    temperature: float = 1.0  # TempScale's fitted temperature
    #: group ("near", "far") → detector → [n_boot] replicates of the group's mean AUROC, every detector on the same
    #: resampled ID and OOD items (paired); saved in the arrays file
    boot: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass
class Examples:
    """The few images per split that the examples figure shows: ``names`` (one per row: the ID test set, then the
    OOD and covariate-shifted splits) and ``images`` [rows, per split, C, H, W], float32 in [0, 1] (unnormalised)."""

    names: list[str]
    images: np.ndarray


@dataclass
class Oodv2Results(ResultsData):
    """The chapter's results: ``seeds`` (the miniature's seeds, or OpenOOD's checkpoints s0..s2 with CLIP's rows
    added to the first in the paper profile) and the ``examples`` the page shows."""

    seeds: list[SeedResult]
    examples: Examples


@torch.no_grad()
def model_outputs(model: torch.nn.Module, x: torch.Tensor, batch: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.cat([model.features(x[i : i + batch]) for i in range(0, len(x), batch)])
    return feats, model.head(feats)


def score_all(model: torch.nn.Module, scoring: Scoring, fit_feats: torch.Tensor, fit_labels: torch.Tensor,
              temperature: float, x_by_split: dict[str, torch.Tensor],
              outputs: dict[str, tuple[torch.Tensor, torch.Tensor]],
              ) -> dict[str, dict[str, torch.Tensor]]:
    """detector → split → outlier scores [N] (higher = more OOD). ``model`` has ``features(x)`` (penultimate
    features) and ``head`` (the linear classifier on them); the feature detectors are fitted on ``fit_feats``.
    ``outputs``: split → (features, logits) of ``x_by_split`` (:func:`model_outputs`); ODIN reruns the model on the
    inputs."""
    w, b = model.head.weight.detach(), model.head.bias.detach()
    fitted = {
        "Mahalanobis": lambda: ood.Mahalanobis().fit(fit_feats, fit_labels),
        "RelativeMahalanobis": lambda: ood.RelativeMahalanobis().fit(fit_feats, fit_labels),
        "KNN": lambda: ood.KNN(k=scoring.knn_k).fit(fit_feats),
        "ViM": lambda: ood.ViM(scoring.vim_dim, w, b).fit(fit_feats),
        "ReAct": lambda: ood.ReAct(w, b, scoring.react_percentile).fit(fit_feats),
        "ASH": lambda: ood.ASH(w, b, scoring.ash_percentile).fit(fit_feats),
        "SCALE": lambda: ood.SCALE(w, b, scoring.scale_percentile).fit(fit_feats),
        "DICE": lambda: ood.DICE(w, b, scoring.dice_percentile).fit(fit_feats),
        "SHE": lambda: ood.SHE(w, b).fit(fit_feats, fit_labels),
    }
    logit_fns = {"MSP": ood.msp, "TempScale": lambda f: ood.msp(f, temperature), "MaxLogit": ood.max_logit,
                 "Energy": ood.energy, "Entropy": ood.entropy, "GEN": ood.gen}
    scores: dict[str, dict[str, torch.Tensor]] = {}
    for det in scoring.detectors:
        if det in logit_fns:
            scores[det] = {s: logit_fns[det](logits) for s, (_, logits) in outputs.items()}
        elif det == "ODIN":
            t, eps = scoring.odin_temperature, scoring.odin_epsilon
            scores[det] = {s: torch.cat([ood.odin(model, x[i : i + 1000], t, eps) for i in range(0, len(x), 1000)])
                           for s, x in x_by_split.items()}
        else:
            detector = fitted[det]()
            scores[det] = {s: detector.score(feats) for s, (feats, _) in outputs.items()}
    return scores


def metric_rows(scores: dict[str, dict[str, torch.Tensor]], splits: list[str], seed: int) -> list[dict]:
    rows = []
    for det, by_split in scores.items():
        for split in splits:
            m = ood.ood_metrics(by_split["ID"], by_split[split], positive="ood")
            m_id = ood.ood_metrics(by_split["ID"], by_split[split], positive="id")
            rows.append({"seed": seed, "detector": det, "split": split, "group": split.split(":")[0],
                         "auroc": m["auroc"], "fpr95_ood": m["fpr95"], "fpr95_id": m_id["fpr95"],
                         "aupr_in": m["aupr_in"], "aupr_out": m["aupr_out"]})
    return rows


def group_replicates(scores: dict[str, dict[str, torch.Tensor]], splits: list[str], n_boot: int, seed: int,
                     groups: tuple[str, ...] = ("near", "far")) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap replicates of each detector's mean AUROC over the splits of each group (OOD positive).

    Per replicate, the ID test items and each OOD split's items are resampled with replacement, the same indices
    for every detector, so that differences between detectors (and between near and far) are paired; a group's
    value is the mean over its splits, as the tables report it. Returns group → detector → [n_boot].
    """
    rng = np.random.default_rng(seed)
    sizes = {split: len(values) for split, values in next(iter(scores.values())).items()}
    n_id = sizes["ID"]
    id_idx = rng.integers(0, n_id, (n_boot, n_id))
    out: dict[str, dict[str, np.ndarray]] = {}
    for group in groups:
        members = [s for s in splits if s.split(":")[0] == group]
        if not members:
            continue
        ood_idx = {s: rng.integers(0, sizes[s], (n_boot, sizes[s])) for s in members}
        out[group] = {}
        for det, by_split in scores.items():
            id_scores = by_split["ID"].detach().cpu().double().numpy()[id_idx]
            per_split = []
            for s in members:
                ood_scores = by_split[s].detach().cpu().double().numpy()[ood_idx[s]]
                labels = np.r_[np.zeros(n_id), np.ones(ood_scores.shape[1])]
                per_split.append(auroc_rank(np.concatenate([id_scores, ood_scores], axis=1), labels))
            out[group][det] = np.mean(per_split, axis=0)
    return out
