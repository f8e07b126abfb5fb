"""Out-of-distribution detectors and metrics, written from their formulas (the detectors the generalized-OOD survey
reviews and OpenOOD v1.5 benchmarks; Miyai et al., TMLR 2025, arXiv:2407.21794).

**Convention: every detector returns an outlier score, higher = more OOD.** OpenOOD reports the negation (a
confidence, higher = more ID). Logits are [N, K], features [N, D]; the classifier head is ``weight`` [K, D] and
``bias`` [K] (``nn.Linear`` layout). pytorch-ood implements most of these, but its import pulls torchvision, which
does not load beside this project's CPU torch: the formulas are written here and tested against hand cases.

Logit scores (T a temperature):

    MSP       −max_k softmax(f / T)_k                                     (Hendrycks & Gimpel 2017)
    MaxLogit  −max_k f_k                                                  (Hendrycks et al. 2022)
    Energy    −T · logsumexp(f / T)                                       (Liu et al. 2020)
    Entropy   −Σ_k p_k log p_k
    GEN       Σ_{k ∈ top-M} p_k^γ (1 − p_k)^γ                             (Liu et al. 2023)
    ODIN      MSP at temperature T of x − ε · sign(−∇_x log max_k softmax(f(x) / T)_k)   (Liang et al. 2018)

Feature scores: Mahalanobis (class means, shared covariance; Lee et al. 2018), relative Mahalanobis (minus the
distance to one class-agnostic Gaussian; Ren et al. 2021), KNN (k-th nearest normalised training feature; Sun et al.
2022), ViM (residual outside the principal subspace as a virtual logit; Wang et al. 2022), and the activation
shapers that feed Energy: ReAct (clip; Sun et al. 2021), ASH-S (prune and rescale; Djurisic et al. 2023), SCALE
(rescale only; Xu et al. 2024), DICE (sparsify the head's weights; Sun & Li 2022); SHE (Hopfield energy against the
class patterns; Zhang et al. 2023). Vision-language: MCM (Ming et al. 2022) and GL-MCM (Miyai et al. 2023).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn

from replbook.stats import auroc_rank

# --- logit scores --------------------------------------------------------------------------------------------------


def _check_logits(logits: torch.Tensor, name: str = "logits") -> torch.Tensor:
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"{name} must be [N, K] with K >= 2 classes; got shape {tuple(logits.shape)}.")
    if not torch.isfinite(logits).all():
        raise ValueError(f"{name} contain NaN or infinite values; check the model's outputs.")
    return logits.float()


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}.")


def msp(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[N, K] → [N]: −max softmax probability (TempScale with ``temperature`` ≠ 1)."""
    _check_temperature(temperature)
    return -F.softmax(_check_logits(logits) / temperature, dim=1).amax(1)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, t_min: float = 0.01, t_max: float = 100.0) -> float:
    """TempScale's T: the temperature minimising the negative log-likelihood of held-out ID logits [N, K] with
    labels [N] (Guo et al. 2017), searched within [t_min, t_max].

    The NLL, mean(logsumexp(β f) − β f_y), is convex in β = 1/T, so a bounded scalar search finds its minimum
    exactly; on separable logits (every label the argmax) it decreases without end and T stops at ``t_min``,
    where an unbounded optimiser runs to T = 0 and returns NaN.
    """
    logits = _check_logits(logits).detach().double()
    target = logits.gather(1, labels.view(-1, 1)).squeeze(1)

    def nll(beta: float) -> float:
        return float((torch.logsumexp(beta * logits, dim=1) - beta * target).mean())

    best = minimize_scalar(nll, bounds=(1.0 / t_max, 1.0 / t_min), method="bounded", options={"xatol": 1e-6})
    return float(1.0 / best.x)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """[N, K] → [N]: −max logit."""
    return -_check_logits(logits).amax(1)


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[N, K] → [N]: the free energy −T · logsumexp(f / T)."""
    _check_temperature(temperature)
    return -temperature * torch.logsumexp(_check_logits(logits) / temperature, dim=1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """[N, K] → [N]: the predictive entropy −Σ p log p (nats)."""
    logp = F.log_softmax(_check_logits(logits), dim=1)
    return -(logp.exp() * logp).sum(1)


def gen(logits: torch.Tensor, gamma: float = 0.1, top_m: int = 100) -> torch.Tensor:
    """[N, K] → [N]: generalized entropy Σ over the ``top_m`` largest p_k of p_k^γ (1 − p_k)^γ."""
    if not 0 < gamma < 1:
        raise ValueError(f"gamma must lie in (0, 1); got {gamma}.")
    p = F.softmax(_check_logits(logits), dim=1)
    top = p.topk(min(top_m, p.shape[1]), dim=1).values
    return (top.pow(gamma) * (1 - top).pow(gamma)).sum(1)


def odin(model: nn.Module, x: torch.Tensor, temperature: float = 1000.0, epsilon: float = 0.0014) -> torch.Tensor:
    """[N, ...] inputs → [N]: MSP at ``temperature`` after a step of size ``epsilon`` that raises the temperature-
    scaled max softmax (ODIN; no data-range clamp, as in the paper). The model's mode is left as it is."""
    _check_temperature(temperature)
    x = x.detach().clone().requires_grad_(True)
    logits = model(x) / temperature
    log_max = F.log_softmax(logits, dim=1).amax(1).sum()
    (grad,) = torch.autograd.grad(log_max, x)
    with torch.no_grad():
        return msp(model(x + epsilon * grad.sign()), temperature)


# --- feature scores ------------------------------------------------------------------------------------------------


def _check_features(features: torch.Tensor, name: str = "features") -> torch.Tensor:
    if features.ndim != 2:
        raise ValueError(f"{name} must be [N, D]; got shape {tuple(features.shape)}.")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contain NaN or infinite values.")
    return features.double()


class _Fitted:
    """A detector that must be fitted on in-distribution training features before it scores."""

    fitted = False

    def _require_fit(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} must be fitted on in-distribution training features first "
                               f"(call .fit(...)).")


def _precision(centred: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """Inverse of the covariance of centred rows [N, D], with ``shrinkage`` · mean variance on the diagonal."""
    cov = centred.T @ centred / len(centred)
    ridge = shrinkage * cov.diagonal().mean().clamp_min(1e-12)
    return torch.linalg.pinv(cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype), hermitian=True)


def _mahalanobis_sq(z: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """[N, D], [K, D], [D, D] → [N, K] squared Mahalanobis distances."""
    diff = z[:, None, :] - means[None]
    return torch.einsum("nkd,de,nke->nk", diff, precision, diff)


class Mahalanobis(_Fitted):
    """min_k (z − μ_k)ᵀ Σ⁻¹ (z − μ_k): class means μ_k and one covariance Σ shared by the classes (tied LDA)."""

    def __init__(self, shrinkage: float = 1e-6):
        self.shrinkage = shrinkage

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> Mahalanobis:
        z = _check_features(features)
        if labels.shape != (len(z),):
            raise ValueError(f"labels must be [N] = [{len(z)}]; got shape {tuple(labels.shape)}.")
        self.classes = labels.unique()
        self.means = torch.stack([z[labels == c].mean(0) for c in self.classes])
        centred = z - self.means[torch.searchsorted(self.classes, labels)]
        self.precision = _precision(centred, self.shrinkage)
        self.fitted = True
        return self

    def class_distances(self, features: torch.Tensor) -> torch.Tensor:
        self._require_fit()
        return _mahalanobis_sq(_check_features(features), self.means, self.precision)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return self.class_distances(features).amin(1).float()


class RelativeMahalanobis(Mahalanobis):
    """min_k [MD_k(z) − MD_0(z)], MD_0 the distance to one Gaussian fitted to all training features."""

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> RelativeMahalanobis:
        super().fit(features, labels)
        z = _check_features(features)
        self.global_mean = z.mean(0, keepdim=True)
        self.global_precision = _precision(z - self.global_mean, self.shrinkage)
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        background = _mahalanobis_sq(_check_features(features), self.global_mean, self.global_precision)
        return (self.class_distances(features) - background).amin(1).float()


class KNN(_Fitted):
    """Distance from the (L2-normalised) feature to its k-th nearest training feature."""

    def __init__(self, k: int = 50, normalize: bool = True):
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}.")
        self.k, self.normalize = k, normalize

    def _prep(self, features: torch.Tensor, name: str = "features") -> torch.Tensor:
        z = _check_features(features, name).float()
        return F.normalize(z, dim=1) if self.normalize else z

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> KNN:
        self.bank = self._prep(features)
        if self.k > len(self.bank):
            raise ValueError(f"k = {self.k} exceeds the {len(self.bank)} training features.")
        self.fitted = True
        return self

    def score(self, features: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        self._require_fit()
        z = self._prep(features)
        out = [torch.cdist(z[i : i + chunk], self.bank).topk(self.k, dim=1, largest=False).values[:, -1]
               for i in range(0, len(z), chunk)]
        return torch.cat(out)


class ViM(_Fitted):
    """Virtual-logit matching. With the origin u = −W⁺b (the point the head maps to zero logits), P the principal
    subspace of dimension ``dim`` of the training features about u, and α = mean max logit / mean ‖residual‖ on the
    training set: score = α ‖(z − u)_{⊥P}‖ − logsumexp(f)."""

    def __init__(self, dim: int, weight: torch.Tensor, bias: torch.Tensor):
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"weight must be [K, D] and bias [K]; got {tuple(weight.shape)} and "
                             f"{tuple(bias.shape)}.")
        if not 0 < dim < weight.shape[1]:
            raise ValueError(f"dim must lie in [1, {weight.shape[1] - 1}] (below the feature width); got {dim}.")
        self.dim = dim
        self.weight, self.bias = weight.detach().double(), bias.detach().double()
        self.origin = -torch.linalg.pinv(self.weight) @ self.bias

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T + self.bias

    def _residual_norm(self, z: torch.Tensor) -> torch.Tensor:
        return ((z - self.origin) @ self.null_space).norm(dim=1)

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> ViM:
        z = _check_features(features)
        if z.shape[1] != self.weight.shape[1]:
            raise ValueError(f"features have width {z.shape[1]}, the head expects {self.weight.shape[1]}.")
        centred = z - self.origin
        eigvals, eigvecs = torch.linalg.eigh(centred.T @ centred / len(z))
        order = eigvals.argsort(descending=True)
        self.null_space = eigvecs[:, order[self.dim :]]  # [D, D − dim]
        self.alpha = float(self._logits(z).amax(1).mean() / self._residual_norm(z).mean().clamp_min(1e-12))
        self.fitted = True
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        self._require_fit()
        z = _check_features(features)
        return (self.alpha * self._residual_norm(z) - torch.logsumexp(self._logits(z), dim=1)).float()


class _HeadShaper(_Fitted):
    """Energy of the head applied to reshaped penultimate activations; the threshold is a percentile of the
    training activations (ReAct) or of each sample's own activations (ASH, SCALE)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, percentile: float):
        if not 0 <= percentile < 100:
            raise ValueError(f"percentile must lie in [0, 100); got {percentile}.")
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"weight must be [K, D] and bias [K]; got {tuple(weight.shape)} and "
                             f"{tuple(bias.shape)}.")
        self.weight, self.bias, self.percentile = weight.detach().float(), bias.detach().float(), percentile

    def shape(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None = None):
        self.fitted = True
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        self._require_fit()
        z = _check_features(features).float()
        return energy(self.shape(z) @ self.weight.T + self.bias)


class ReAct(_HeadShaper):
    """Clip activations at the ``percentile``-th percentile c of the training activations, then Energy."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, percentile: float = 90.0):
        super().__init__(weight, bias, percentile)

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> ReAct:
        z = _check_features(features).float()
        self.threshold = float(torch.quantile(z.flatten()[: 10_000_000], self.percentile / 100))
        self.fitted = True
        return self

    def shape(self, z: torch.Tensor) -> torch.Tensor:
        return z.clamp(max=self.threshold)


def _scale_factor(z: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """exp(s₁ / s₂): the sum of all activations over the sum of the kept ones, per sample [N, 1]."""
    return torch.exp(z.sum(1, keepdim=True) / kept.sum(1, keepdim=True).clamp_min(1e-12))


def _top_mask(z: torch.Tensor, percentile: float) -> torch.Tensor:
    """Per sample, keep the activations at or above its own ``percentile``-th percentile."""
    keep = max(1, round(z.shape[1] * (1 - percentile / 100)))
    threshold = z.topk(keep, dim=1).values[:, -1:]
    return z >= threshold


class ASH(_HeadShaper):
    """ASH-S: per sample, zero the activations below its ``percentile``-th percentile and scale the rest by
    exp(s₁ / s₂) (s₁, s₂: activation sums before and after pruning), then Energy."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, percentile: float = 90.0):
        super().__init__(weight, bias, percentile)

    def shape(self, z: torch.Tensor) -> torch.Tensor:
        kept = z * _top_mask(z, self.percentile)
        return kept * _scale_factor(z, kept)


class SCALE(_HeadShaper):
    """SCALE: scale all activations by ASH-S's factor exp(s₁ / s₂) without pruning, then Energy."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, percentile: float = 85.0):
        super().__init__(weight, bias, percentile)

    def shape(self, z: torch.Tensor) -> torch.Tensor:
        return z * _scale_factor(z, z * _top_mask(z, self.percentile))


class DICE(_HeadShaper):
    """DICE: keep the head's weights whose mean contribution w_kd · mean_d(z) on the training set is among the top
    (100 − ``percentile``)%, zero the rest, then Energy."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, percentile: float = 70.0):
        super().__init__(weight, bias, percentile)

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> DICE:
        contribution = self.weight * _check_features(features).float().mean(0)[None]
        threshold = torch.quantile(contribution.flatten(), self.percentile / 100)
        self.masked_weight = self.weight * (contribution > threshold)
        self.fitted = True
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        self._require_fit()
        return energy(_check_features(features).float() @ self.masked_weight.T + self.bias)


class SHE(_HeadShaper):
    """Simplified Hopfield energy: −⟨z, m_ŷ⟩, with m_k the mean training feature of the samples of class k that the
    head classifies correctly and ŷ the predicted class."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__(weight, bias, 0.0)

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> SHE:
        z = _check_features(features).float()
        pred = (z @ self.weight.T + self.bias).argmax(1)
        patterns = torch.zeros_like(self.weight)
        for k in range(len(self.weight)):
            hit = (labels == k) & (pred == k)
            if hit.any():
                patterns[k] = z[hit].mean(0)
        self.patterns, self.fitted = patterns, True
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        self._require_fit()
        z = _check_features(features).float()
        pred = (z @ self.weight.T + self.bias).argmax(1)
        return -(z * self.patterns[pred]).sum(1)


# --- vision-language -----------------------------------------------------------------------------------------------


def _cosine(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    if image.shape[-1] != text.shape[-1]:
        raise ValueError(f"image and text embeddings differ in width: {image.shape[-1]} vs {text.shape[-1]}.")
    return F.normalize(image.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T


def mcm(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[N, D], [K, D] → [N]: −max_k softmax(cos(v, t_k) / τ)_k (maximum concept matching; CLIP uses τ = 0.01)."""
    _check_temperature(temperature)
    if image_embeddings.ndim != 2 or text_embeddings.ndim != 2:
        raise ValueError("image_embeddings must be [N, D] and text_embeddings [K, D].")
    return -F.softmax(_cosine(image_embeddings, text_embeddings) / temperature, dim=1).amax(1)


def glmcm(global_embeddings: torch.Tensor, local_embeddings: torch.Tensor, text_embeddings: torch.Tensor,
          temperature: float = 1.0, local_weight: float = 1.0) -> torch.Tensor:
    """[N, D], [N, P, D] (P local patches), [K, D] → [N]: −(MCM confidence of the global embedding + λ · the
    highest MCM confidence over the local ones)."""
    _check_temperature(temperature)
    if local_embeddings.ndim != 3 or local_embeddings.shape[0] != global_embeddings.shape[0]:
        raise ValueError(f"local_embeddings must be [N, P, D] with N = {global_embeddings.shape[0]}; got "
                         f"{tuple(local_embeddings.shape)}.")
    local = F.softmax(_cosine(local_embeddings, text_embeddings) / temperature, dim=-1).amax(-1).amax(-1)
    return mcm(global_embeddings, text_embeddings, temperature) - local_weight * local


# --- metrics -------------------------------------------------------------------------------------------------------


def _aupr(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """Area under the precision-recall curve, higher score = positive, as OpenOOD v1.5 and pytorch-ood compute it:
    sklearn's ``precision_recall_curve`` (one point per distinct threshold, up to the first one that reaches full
    recall, plus the point (recall 0, precision 1)) integrated by the trapezoidal rule."""
    scores = torch.cat([pos, neg]).double()
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    order = scores.argsort(descending=True, stable=True)
    scores, labels = scores[order], labels[order]
    tp, fp = labels.cumsum(0), (1 - labels).cumsum(0)
    last = torch.ones(len(scores), dtype=torch.bool)  # the last index of each run of tied scores
    last[:-1] = scores[1:] != scores[:-1]
    tp, fp = tp[last], fp[last]
    full = int(torch.searchsorted(tp, tp[-1]))  # the first threshold with full recall; later points are dropped
    tp, fp = tp[: full + 1], fp[: full + 1]
    recall = torch.cat([torch.zeros(1, dtype=tp.dtype), tp / len(pos)])
    precision = torch.cat([torch.ones(1, dtype=tp.dtype), tp / (tp + fp)])
    return float(torch.trapezoid(precision, recall))


def _fpr_at_tpr(pos: torch.Tensor, neg: torch.Tensor, tpr: float) -> float:
    """Fraction of negatives at or above the highest threshold that keeps at least ``tpr`` of the positives."""
    k = math.ceil(tpr * len(pos) - 1e-9)
    threshold = pos.sort(descending=True).values[k - 1]
    return float((neg >= threshold).double().mean())


def ood_metrics(scores_id: torch.Tensor, scores_ood: torch.Tensor, positive: str = "ood", tpr: float = 0.95,
                ) -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out and FPR@``tpr`` from outlier scores (higher = more OOD) of ID and OOD samples.

    ``positive="ood"`` (OpenOOD v1.5, pytorch-ood): FPR is the share of ID flagged as OOD at the threshold that
    catches ``tpr`` of the OOD samples. ``positive="id"`` (MCM, GL-MCM, the older papers): the share of OOD
    accepted as ID at the threshold that keeps ``tpr`` of the ID samples. AUROC is the same under both.
    AUPR-In treats ID as the positive class (score −s), AUPR-Out OOD.
    """
    if positive not in ("ood", "id"):
        raise ValueError(f"positive must be 'ood' or 'id'; got {positive!r}.")
    s_id, s_ood = torch.as_tensor(scores_id).double().flatten(), torch.as_tensor(scores_ood).double().flatten()
    if len(s_id) == 0 or len(s_ood) == 0:
        raise ValueError("scores_id and scores_ood must both be non-empty.")
    if not (torch.isfinite(s_id).all() and torch.isfinite(s_ood).all()):
        raise ValueError("scores contain NaN or infinite values; check the detector.")
    auroc = auroc_rank(torch.cat([s_id, s_ood]).numpy(), np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))])
    fpr = _fpr_at_tpr(s_ood, s_id, tpr) if positive == "ood" else _fpr_at_tpr(-s_id, -s_ood, tpr)
    return {"auroc": float(auroc), "aupr_in": _aupr(-s_id, -s_ood), "aupr_out": _aupr(s_ood, s_id), "fpr95": fpr}


LOGIT_SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "MSP": msp, "MaxLogit": max_logit, "Energy": energy, "Entropy": entropy, "GEN": gen,
}
