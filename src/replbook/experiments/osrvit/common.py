"""The OSR-ViT protocol both profiles run: train the proposal network and the supervised baseline on the known
objects of a (fraction of the) training set, fit the ViT classifier's head on crops, then score every detector on
the test images with the same open-set decision and the same evaluation.

Arms (each at every data fraction and seed):

* ``baseline``: an end-to-end supervised dense detector (K known classes + background per location, FCOS-style):
  the closed-set detector the paper compares with; an unknown is a detection of low energy.
* ``osrvit``: THPN's class-agnostic proposals, cropped, embedded by a frozen pre-trained ViT, classified by a linear
  head over K known classes + background trained on crops of the known objects and of low-IoU proposals.
* ``osrvit-random``: the same with the ViT at its random initialisation (the control: is it the pre-training, or the
  proposals and the head?).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from replbook import osr
from replbook.cache import train_or_load
from replbook.codec import ResultsData
from replbook.models.dense_detector import DenseDetector
from replbook.models.vit_encoder import ImageEncoder

ARMS = ("baseline", "osrvit", "osrvit-random")
#: The dense detectors every run trains: THPN for the OSR-ViT arms, and the baseline.
DETECTORS = ("thpn", "baseline")


# ----------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Schedule:
    """Which (data fraction, seed) runs, and how: ``workers`` one-thread processes, or ``threads`` torch threads."""

    fractions: list[float]
    seeds: int
    workers: int
    threads: int


@dataclass(frozen=True)
class DetectorSetup:
    """The dense detectors' width and training (THPN and the baseline alike)."""

    det_width: int
    det_steps: int
    det_batch: int
    det_lr: float


@dataclass(frozen=True)
class Protocol:
    """What every (fraction, seed) runs after the detectors: the arms, THPN's proposals and its λ sweep, the
    classifier's crops and head, the open-set decision and the evaluation (the parameters of the same names)."""

    arms: list[str]
    lam: float
    lambdas: list[float]
    pre_nms: int
    nms_iou: float
    n_proposals: int
    final_nms: float
    max_dets: int
    temperature: float
    crop_size: int
    context: float
    head_epochs: int
    head_lr: float
    bg_iou: float
    bg_per_image: int
    bg_tpr: float
    tpr: float
    k: int
    n_thresholds: int
    n_boot: int
    n_examples: int


# ----------------------------------------------------------------------------------------------- results


@dataclass
class ArmResult:
    """One arm's metrics on the test images at one (fraction, seed) (:func:`evaluate_arm`): the thresholds set on
    validation, the metrics at the operating threshold, AOSP, the threshold sweep's ``curve`` ("ood_recall",
    "id_map50", the first point calling nothing unknown) and ``boot``: "id_map50", "ood_recall" and "aosp" on every
    bootstrap resample of the test images [n_boot] (float32; the resamples every arm shares)."""

    tau_ood: float
    tau_bg: float
    unknown_covered: float
    unknown_as_bg: float
    id_map50: float
    id_map: float
    ood_recall: float
    ca_ar: float
    auroc_id_ood: float
    auroc_id_bg: float
    auroc_ood_bg: float
    aosp: float
    curve: dict[str, np.ndarray]
    boot: dict[str, np.ndarray]


@dataclass
class LambdaPoint:
    """THPN's proposals at one λ: recall of known and unknown objects (hits averaged over the proposal budgets,
    summed over the test images, divided by their objects), the summed hits, and the summed hits of every bootstrap
    resample of the test images [n_boot] (the arms' resamples)."""

    known_recall: float
    unknown_recall: float
    known_hits: float
    unknown_hits: float
    known_hits_boot: np.ndarray
    unknown_hits_boot: np.ndarray


@dataclass
class LambdaSweep:
    """THPN's λ sweep on the test images (:func:`lambda_sweep`): the proposal budgets ``ks``, the known and unknown
    objects (in all, and on every resample [n_boot]) and each λ's :class:`LambdaPoint`."""

    ks: list[int]
    known_total: int
    unknown_total: int
    known_total_boot: np.ndarray
    unknown_total_boot: np.ndarray
    by_lambda: dict[float, LambdaPoint]


@dataclass
class SeedRun:
    """One (data fraction, seed): the training images it saw, every arm's :class:`ArmResult`, THPN's λ sweep, and
    (at 100% data, seed 0: the run the figure draws) every arm's final detections on the first test images
    (background calls left out; labels ≥ K are unknown calls)."""

    fraction: float
    seed: int
    n_train_images: int
    arms: dict[str, ArmResult]
    lambda_sweep: LambdaSweep | None = None
    examples: dict[str, list[osr.ImageDetections]] = field(default_factory=dict)


@dataclass
class OsrvitResults(ResultsData):
    """The chapter's results: every (fraction, seed) run, the known classes' names, and the first test images
    (``test_images``: [n, H, W] grey or [n, h, w, 3] RGB thumbnails, float32 in [0, 1]; boxes are divided by
    ``example_scale`` to draw on them) with their ground truth."""

    runs: list[SeedRun]
    n_known: int
    class_names: list[str]
    test_images: np.ndarray
    test_truths: list[osr.ImageTruth]
    example_scale: int = 1


@dataclass
class DetectionSplit:
    """Images and their ground truth. ``images`` supports ``len`` and indexing to a [C, H, W] tensor in [0, 1]
    (all of one size): a tensor for the miniature, a lazy reader for the paper profile. Ground-truth labels: known
    classes 0 … K − 1; unknown objects (test only) ≥ K."""

    images: Any
    truths: list[osr.ImageTruth]

    def __len__(self) -> int:
        return len(self.truths)

    def content_key(self) -> Any:
        """What identifies the images in a cache key: the tensor itself, or a lazy reader's file digests."""
        return self.images if isinstance(self.images, Tensor) else self.images.digests

    def batch(self, idx: Sequence[int]) -> Tensor:
        return torch.stack([torch.as_tensor(self.images[int(i)]) for i in idx])

    def subset(self, idx: Sequence[int]) -> DetectionSplit:
        """The images ``idx``: a tensor is indexed; a lazy reader is viewed, not read."""
        if isinstance(self.images, Tensor):
            images = self.images[torch.as_tensor(list(idx), dtype=torch.long)]
        else:
            images = IndexedImages(self.images, idx)
        return DetectionSplit(images, [self.truths[int(i)] for i in idx])


class IndexedImages:
    """A lazy view of some images of a lazy reader (``base[idx[i]]``), with the ``digests`` of the files it shows
    (the cache keys of the paper profile)."""

    def __init__(self, base: Any, idx: Sequence[int]):
        self.base, self.idx = base, [int(i) for i in idx]

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> Tensor:
        return self.base[self.idx[i]]

    @property
    def digests(self) -> list[str]:
        return [self.base.digests[i] for i in self.idx]


# ----------------------------------------------------------------------------------------------- dense detectors


def assign_locations(points: Tensor, boxes: Tensor, valid: Tensor | None = None) -> Tensor:
    """The ground truth each location learns from: a location inside one or more boxes takes the smallest (FCOS's
    rule), else −1. points [P, 2], boxes [m, 4] → [P]; or boxes [B, m, 4] padded, with ``valid`` [B, m] marking the
    real ones → [B, P]."""
    single = boxes.dim() == 2
    boxes = boxes[None] if single else boxes
    valid = torch.ones(boxes.shape[:2], dtype=torch.bool) if valid is None else valid
    if boxes.shape[1] == 0:
        out = torch.full((boxes.shape[0], points.shape[0]), -1, dtype=torch.long)
        return out[0] if single else out
    x, y = points[None, :, None, 0], points[None, :, None, 1]  # [1, P, 1]
    b = boxes[:, None]  # [B, 1, m, 4]
    dist = torch.stack([x - b[..., 0], y - b[..., 1], b[..., 2] - x, b[..., 3] - y], -1)  # [B, P, m, 4]
    inside = (dist.min(-1).values > 0) & valid[:, None, :].to(dist.device)
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))[:, None, :].expand_as(inside)
    best = torch.where(inside, area, torch.full_like(area, math.inf)).argmin(-1)
    out = torch.where(inside.any(-1), best, torch.full_like(best, -1))
    return out[0] if single else out


def iou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """1 − IoU of matched boxes [n, 4] (OLN's box loss is IoU-based) → [n]."""
    lt, rb = torch.maximum(pred[:, :2], target[:, :2]), torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = osr.box_area(pred) + osr.box_area(target) - inter
    return 1 - inter / union.clamp(min=1e-6)


def detector_loss(model: DenseDetector, out: dict[str, Tensor], truths: Sequence[osr.ImageTruth], hw: tuple[int, int],
                  *, box_weight: float = 1.0) -> dict[str, Tensor]:
    """The training loss of a dense detector on a batch's ground truth (known objects only), every term summed and
    divided by the number of positive locations (FCOS's normalisation).

    THPN (one class logit): foreground BCE over every location (inside a labelled box = 1) + centerness BCE against
    :func:`replbook.osr.centerness_targets` on the positive locations only (OLN's localisation quality, which never
    sees a negative) + IoU loss of the decoded boxes on the positives. The baseline (K + 1 logits, background last):
    cross-entropy over every location + the same centerness and box terms.
    """
    dev = out["ctr"].device
    points = model.points(*hw).to(dev)
    m = max([len(t.boxes) for t in truths] + [1])
    boxes = torch.zeros(len(truths), m, 4, device=dev)
    labels = torch.zeros(len(truths), m, dtype=torch.long, device=dev)
    valid = torch.zeros(len(truths), m, dtype=torch.bool, device=dev)
    for i, t in enumerate(truths):
        boxes[i, :len(t.boxes)] = torch.as_tensor(t.boxes, dtype=torch.float32)
        labels[i, :len(t.labels)] = torch.as_tensor(t.labels, dtype=torch.long)
        valid[i, :len(t.boxes)] = True
    gt = assign_locations(points, boxes, valid)  # [B, P]
    pos = gt >= 0
    n_pos = max(int(pos.sum()), 1)
    if model.n_cls == 1:
        cls_loss = F.binary_cross_entropy_with_logits(out["cls"][..., 0], pos.float(), reduction="sum")
    else:
        target = torch.where(pos, labels.gather(1, gt.clamp(min=0)), torch.full_like(gt, model.n_cls - 1))
        cls_loss = F.cross_entropy(out["cls"].reshape(-1, model.n_cls), target.reshape(-1), reduction="sum")
    matched = boxes.gather(1, gt.clamp(min=0)[..., None].expand(-1, -1, 4))[pos]  # [n_pos, 4]
    pos_points = points[None].expand(len(truths), -1, -1)[pos]
    if len(matched):
        ctr_loss = F.binary_cross_entropy_with_logits(out["ctr"][pos], osr.centerness_targets(pos_points, matched),
                                                      reduction="sum")
        box_loss = iou_loss(osr.decode_ltrb(pos_points, out["ltrb"][pos]), matched).sum()
    else:
        ctr_loss = box_loss = out["ctr"].sum() * 0.0
    parts = {"cls": cls_loss / n_pos, "ctr": ctr_loss / n_pos, "box": box_weight * box_loss / n_pos}
    parts["total"] = parts["cls"] + parts["ctr"] + parts["box"]
    return parts


def flip_batch(images: Tensor, truths: Sequence[osr.ImageTruth], flip: Tensor) -> tuple[Tensor, list[osr.ImageTruth]]:
    """Mirror the images where ``flip`` [B] is true, and their boxes."""
    w = images.shape[-1]
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    out = []
    for f, t in zip(flip.tolist(), truths, strict=True):
        if f and len(t.boxes):
            b = t.boxes.copy()
            b[:, [0, 2]] = w - t.boxes[:, [2, 0]]
            out.append(osr.ImageTruth(b, t.labels))
        else:
            out.append(t)
    return images, out


def train_detector(model: DenseDetector, data: DetectionSplit, *, steps: int, batch_size: int, lr: float,
                   seed: int) -> dict[str, list[float]]:
    """Adam on :func:`detector_loss` with random horizontal flips, on the model's device; returns the loss every 10
    steps."""
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    curve: dict[str, list[float]] = {"step": [], "cls": [], "ctr": [], "box": []}
    for step in range(steps):
        idx = torch.randint(len(data), (min(batch_size, len(data)),), generator=gen)
        images = data.batch(idx)
        images, truths = flip_batch(images, [data.truths[int(i)] for i in idx],
                                    torch.rand(len(idx), generator=gen) < 0.5)
        parts = detector_loss(model, model(images.to(dev)), truths, tuple(images.shape[-2:]))
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        sched.step()
        if step % 10 == 0 or step == steps - 1:
            curve["step"].append(step)
            for k in ("cls", "ctr", "box"):
                curve[k].append(float(parts[k].detach()))
    model.eval()
    return curve


#: Everything that decides a detector's trained weights (the cache key's code).
DETECTOR_CODE = (train_detector, detector_loss, assign_locations, iou_loss, flip_batch, osr.centerness_targets,
                 osr.encode_ltrb, osr.decode_ltrb, osr.box_area, DenseDetector)


def train_dense(setup: DetectorSetup, name: str, sub: DetectionSplit, seed: int, n_known: int, *, prefix: str,
                in_channels: int = 1, device: torch.device | str = "cpu",
                extra_hyper: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict]:
    """THPN (``name`` "thpn": one foreground logit) or the baseline ("baseline": K + 1 logits) trained on ``sub``,
    from the cache when this code, these settings (``setup``, and ``extra_hyper`` such as the image size) and these
    images trained it before. Returns the model and its loss curve."""
    torch.manual_seed(seed)
    model = DenseDetector(1 if name == "thpn" else n_known + 1, width=setup.det_width, in_channels=in_channels)
    model = model.to(device)
    hyper = {"det_width": setup.det_width, "det_steps": setup.det_steps, "det_batch": setup.det_batch,
             "det_lr": setup.det_lr, **(extra_hyper or {}), "seed": seed}
    curve = train_or_load(
        f"{prefix}-{name}", model,
        lambda: train_detector(model, sub, steps=setup.det_steps, batch_size=setup.det_batch, lr=setup.det_lr,
                               seed=seed),
        data=(sub.content_key(), [(t.boxes, t.labels) for t in sub.truths]),
        hyper=hyper, code=DETECTOR_CODE)
    return model, curve


@dataclass
class DenseOutput:
    """One image's detections from a dense detector, after NMS: boxes [n, 4], score [n], class logits [n, n_cls]."""

    boxes: Tensor
    score: Tensor
    logits: Tensor


@torch.no_grad()
def detect_dense(model: DenseDetector, data: DetectionSplit, *, lam: float, pre_nms: int, nms_iou: float,
                 max_out: int, batch_size: int = 64) -> list[DenseOutput]:
    """Every location's box, scored, top ``pre_nms``, NMS at ``nms_iou``, top ``max_out``. THPN's score is
    :func:`replbook.osr.hybrid_objectness` at ``lam``; the baseline's is √((1 − p_bg)·σ(ctr)) (FCOS's class score ×
    centerness, geometric mean); ``lam`` is unused there."""
    model.eval()
    dev = next(model.parameters()).device
    outs = []
    for start in range(0, len(data), batch_size):
        images = data.batch(range(start, min(start + batch_size, len(data))))
        h, w = images.shape[-2:]
        out = {k: v.cpu() for k, v in model(images.to(dev)).items()}
        points = model.points(h, w)
        for b in range(images.shape[0]):
            boxes = osr.decode_ltrb(points, out["ltrb"][b])
            boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                                 boxes[:, 3].clamp(0, h)], 1)
            if model.n_cls == 1:
                score = osr.hybrid_objectness(out["cls"][b, :, 0], out["ctr"][b], lam)
            else:
                p_fg = 1 - torch.softmax(out["cls"][b], -1)[:, -1]
                score = (p_fg * torch.sigmoid(out["ctr"][b])).sqrt()
            top = torch.argsort(score, descending=True)[:pre_nms]
            keep = top[osr.nms(boxes[top], score[top], nms_iou, max_keep=max_out)]
            outs.append(DenseOutput(boxes[keep], score[keep], out["cls"][b, keep]))
    return outs


def lambda_sweep(model: DenseDetector, data: DetectionSplit, n_known: int, lams: Sequence[float], *, k: int,
                 pre_nms: int, nms_iou: float, boot_weights: np.ndarray) -> LambdaSweep:
    """THPN's proposals rescored at each λ: per image, how many known and how many unknown ground truths its best
    proposals recall (one to one, IoU ≥ 0.5), averaged over the proposal budgets 1, 2, 5 and ``k`` (the mean of
    recall@k over log-spaced k: the area under recall against log k that the first author's OLN fork reports, on
    the budgets that matter for scenes of a few objects; at ``k`` alone every λ recalls nearly everything). The
    per-image hits and objects are summed over the images, and over each bootstrap resample of them
    (``boot_weights`` [n_boot, n_images], the arms' resamples), so that the report can pair differences."""
    ks = sorted({1, 2, 5, k})
    known_total = np.array([int((t.labels < n_known).sum()) for t in data.truths], float)
    unknown_total = np.array([int((t.labels >= n_known).sum()) for t in data.truths], float)
    by_lambda = {}
    for lam in lams:
        props = detect_dense(model, data, lam=lam, pre_nms=pre_nms, nms_iou=nms_iou, max_out=max(ks))
        hits: dict[str, list[float]] = {"known": [], "unknown": []}
        for pr, t in zip(props, data.truths, strict=True):
            b, sc = pr.boxes.numpy().astype(np.float64), pr.score.numpy().astype(np.float64)  # by descending score
            for name, mask in (("known", t.labels < n_known), ("unknown", t.labels >= n_known)):
                hits[name].append(float(np.mean([(osr.match_greedy(b[:j], sc[:j], t.boxes[mask], 0.5) >= 0).sum()
                                                  for j in ks])))
        known, unknown = np.array(hits["known"]), np.array(hits["unknown"])
        by_lambda[float(lam)] = LambdaPoint(
            known_recall=sum(hits["known"]) / max(1, int(known_total.sum())),
            unknown_recall=sum(hits["unknown"]) / max(1, int(unknown_total.sum())),
            known_hits=float(known.sum()), unknown_hits=float(unknown.sum()),
            known_hits_boot=(boot_weights @ known).astype(np.float32),
            unknown_hits_boot=(boot_weights @ unknown).astype(np.float32))
    return LambdaSweep(ks, int(known_total.sum()), int(unknown_total.sum()),
                       (boot_weights @ known_total).astype(np.float32),
                       (boot_weights @ unknown_total).astype(np.float32), by_lambda)


# ----------------------------------------------------------------------------------------------- ViT classifier


@torch.no_grad()
def encode_crops(encoder: ImageEncoder, data: DetectionSplit, boxes: Sequence[Tensor], *, crop_size: int,
                 context: float, chunk: int = 256) -> Tensor:
    """The encoder's feature [Σ n_i, D] of every box's crop (:func:`replbook.osr.crop_and_resize`, on the
    encoder's device), image by image, at most ``chunk`` crops per forward pass (the paper profile's 1,000 proposals
    per image at 224² would not fit at once)."""
    encoder.eval()
    dev = encoder.mean.device
    feats = []
    for i in range(len(data)):
        b = torch.as_tensor(boxes[i], dtype=torch.float32)
        if len(b) == 0:
            continue
        image = data.batch([i]).to(dev)
        for part in b.split(chunk):
            feats.append(encoder(osr.crop_and_resize(image, [part.to(dev)], crop_size, context)).cpu())
    return torch.cat(feats) if feats else torch.zeros(0, encoder.feature_dim)


def background_boxes(proposals: Sequence[DenseOutput], truths: Sequence[osr.ImageTruth], *, iou_max: float,
                     per_image: int) -> list[Tensor]:
    """Per image, up to ``per_image`` of the highest-scoring proposals whose IoU with every labelled box is below
    ``iou_max``: the background examples of the classifier's head."""
    out = []
    for p, t in zip(proposals, truths, strict=True):
        if len(t.boxes):
            iou = osr.box_iou(p.boxes, torch.as_tensor(t.boxes, dtype=torch.float32)).max(1).values
            keep = p.boxes[iou < iou_max]
        else:
            keep = p.boxes
        out.append(keep[:per_image])
    return out


def fit_head(features: Tensor, labels: Tensor, n_cls: int, *, epochs: int, lr: float, seed: int,
             batch_size: int = 256) -> nn.Linear:
    """A linear head on frozen features by Adam on cross-entropy, classes weighted by inverse frequency."""
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], n_cls)
    counts = torch.bincount(labels, minlength=n_cls).float()
    weight = torch.where(counts > 0, counts.sum() / (n_cls * counts.clamp(min=1)), torch.zeros_like(counts))
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(labels), generator=gen).split(batch_size):
            loss = F.cross_entropy(head(features[idx]), labels[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head


def train_crops(data: DetectionSplit, proposals: Sequence[DenseOutput], n_known: int, *, bg_iou: float,
                bg_per_image: int) -> tuple[list[Tensor], Tensor]:
    """The classifier's training boxes per image (every labelled box, then its background proposals) and their
    labels [Σ n_i] (the known class, or ``n_known`` for background)."""
    bg = background_boxes(proposals, data.truths, iou_max=bg_iou, per_image=bg_per_image)
    boxes, labels = [], []
    for t, b in zip(data.truths, bg, strict=True):
        boxes.append(torch.cat([torch.as_tensor(t.boxes, dtype=torch.float32).reshape(-1, 4), b]))
        labels += [torch.as_tensor(t.labels, dtype=torch.long), torch.full((len(b),), n_known, dtype=torch.long)]
    return boxes, torch.cat(labels)


# ----------------------------------------------------------------------------------------------- scoring


def scored(boxes: Tensor, objectness: Tensor, logits: Tensor, *, final_nms: float, max_dets: int,
           temperature: float = 1.0) -> osr.ScoredDetections:
    """One image's detections with the classifier's K + 1 logits (background last) → the quantities of the
    open-set decision, after a class-agnostic NMS at ``final_nms`` ordered by objectness × (1 − p_bg)."""
    p = torch.softmax(logits, -1)
    p_bg = p[:, -1]
    order_score = objectness * (1 - p_bg)
    keep = osr.nms(boxes, order_score, final_nms, max_keep=max_dets) if len(boxes) else torch.zeros(0, dtype=torch.long)
    known_p, known_pred = p[keep, :-1].max(1) if len(keep) else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return osr.ScoredDetections(boxes[keep].numpy().astype(np.float64), objectness[keep].numpy().astype(np.float64),
                                p_bg[keep].numpy().astype(np.float64),
                                osr.energy_score(logits[keep], temperature).numpy().astype(np.float64),
                                known_pred.numpy(), known_p.numpy().astype(np.float64))


def detection_kinds(d: osr.ScoredDetections, truth: osr.ImageTruth, n_known: int) -> np.ndarray:
    """Per detection: 0 when it covers a known object (IoU ≥ 0.5), 1 an unknown object, 2 background (IoU < 0.3
    with every object), −1 in between (left out of the AUROCs)."""
    if len(d.boxes) == 0:
        return np.zeros(0, int)
    if len(truth.boxes) == 0:
        return np.full(len(d.boxes), 2)
    iou = osr.box_iou(torch.as_tensor(d.boxes), torch.as_tensor(truth.boxes, dtype=torch.float64)).numpy()
    best, arg = iou.max(1), iou.argmax(1)
    kind = np.where(best >= 0.5, np.where(truth.labels[arg] < n_known, 0, 1), np.where(best < 0.3, 2, -1))
    return kind


def thresholds_from_validation(dets: Sequence[osr.ScoredDetections], truths: Sequence[osr.ImageTruth],
                               n_known: int, *, bg_tpr: float, tpr: float) -> tuple[float, float]:
    """Both thresholds of the open-set decision, per detector, from its validation detections that cover a known
    object (IoU ≥ 0.5): τ_bg keeps ``bg_tpr`` of them out of background (p_bg ≤ τ_bg), then τ_ood keeps ``tpr`` of
    those (S_id ≥ τ_ood). The same rule for every arm, so that differently calibrated classifiers are compared at
    the same share of known objects kept. With no known object detected: (1.0, −∞), nothing background or unknown."""
    known = [detection_kinds(d, t, n_known) == 0 for d, t in zip(dets, truths, strict=True)]
    p_bg = np.concatenate([d.p_bg[k] for d, k in zip(dets, known, strict=True)]) if dets else np.zeros(0)
    if p_bg.size == 0:
        return 1.0, float("-inf")
    tau_bg = 1.0 - osr.threshold_at_tpr(1.0 - p_bg, bg_tpr)
    s = np.concatenate([d.s_id[k & (d.p_bg <= tau_bg)] for d, k in zip(dets, known, strict=True)])
    return tau_bg, osr.threshold_at_tpr(s, tpr)


def unknown_fate(dets: Sequence[osr.ScoredDetections], truths: Sequence[osr.ImageTruth], n_known: int,
                 tau_bg: float) -> dict[str, float]:
    """Where the unknown objects go: the share that some detection covers (IoU ≥ 0.5), and of those the share
    whose best-covering detection is called background (the diagnostic of a classifier taught that unlabelled
    objects are background)."""
    covered, as_bg, total = 0, 0, 0
    for d, t in zip(dets, truths, strict=True):
        gi = np.nonzero(t.labels >= n_known)[0]
        total += len(gi)
        if len(gi) == 0 or len(d.boxes) == 0:
            continue
        iou = osr.box_iou_np(d.boxes, t.boxes[gi])
        best = iou.argmax(0)
        hit = iou.max(0) >= 0.5
        covered += int(hit.sum())
        as_bg += int((d.p_bg[best[hit]] > tau_bg).sum())
    return {"unknown_covered": covered / total if total else float("nan"),
            "unknown_as_bg": as_bg / covered if covered else float("nan")}


def evaluate_arm(dets: Sequence[osr.ScoredDetections], truths: Sequence[osr.ImageTruth], n_known: int, *,
                 tau_ood: float, tau_bg: float, k: int, n_thresholds: int,
                 boot_weights: np.ndarray) -> ArmResult:
    """Every metric of one arm on the test images: at the operating threshold τ_ood, known AP@0.5 and AP@[.5:.95],
    unknown recall@k, class-agnostic AR@k of the non-background detections, the three AUROCs; the AOSP sweep
    (:func:`replbook.osr.aosp_recon`); and the same AP@0.5, unknown recall and AOSP on each bootstrap resample of
    the images (``boot_weights`` [n_boot, n_images])."""
    taus = [tau_ood] + osr.sweep_thresholds(dets, tau_bg, n_thresholds)
    ev = osr.OpenSetEvaluation(dets, truths, n_known, tau_bg=tau_bg, taus=taus, k=k)
    point = ev.at(0)
    split = [osr.open_set_split(d, tau_bg=tau_bg, tau_ood=tau_ood, n_known=n_known) for d in dets]
    id_map = osr.mean_ap([s[0] for s in split], truths, range(n_known), iou_thrs=osr.COCO_IOUS)
    fg = [osr.ImageDetections(d.boxes[d.p_bg <= tau_bg], (d.objectness * (1 - d.p_bg))[d.p_bg <= tau_bg],
                              np.zeros(int((d.p_bg <= tau_bg).sum()), int)) for d in dets]
    recall, ap = ev.curve()
    recall, ap = recall[1:], ap[1:]
    kinds = np.concatenate([detection_kinds(d, t, n_known) for d, t in zip(dets, truths, strict=True)])
    s_id = np.concatenate([d.s_id for d in dets])
    fg_score = 1 - np.concatenate([d.p_bg for d in dets])
    boot: dict[str, list[float]] = {"id_map50": [], "ood_recall": [], "aosp": []}
    for w in boot_weights:
        at = ev.at(0, w)
        r, a = ev.curve(w)
        boot["id_map50"].append(at["id_map50"])
        boot["ood_recall"].append(at["ood_recall"])
        boot["aosp"].append(osr.aosp_recon(r[1:], a[1:]))
    return ArmResult(tau_ood=tau_ood, tau_bg=tau_bg, **unknown_fate(dets, truths, n_known, tau_bg),
                     id_map50=point["id_map50"], id_map=id_map, ood_recall=point["ood_recall"],
                     ca_ar=osr.average_recall(fg, truths, k), **osr.separation_aurocs(s_id, fg_score, kinds),
                     aosp=osr.aosp_recon(recall, ap), curve={"ood_recall": recall, "id_map50": ap},
                     boot={name: np.asarray(v, np.float32) for name, v in boot.items()})


def bootstrap_weights(n_images: int, n_boot: int, seed: int = 20240416) -> np.ndarray:
    """[n_boot, n_images] counts of a multinomial resample of the test images: shared by every arm, fraction and seed
    so that their differences are paired."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n_images, n_images), minlength=n_images)
                     for _ in range(n_boot)]).astype(float)


# ----------------------------------------------------------------------------------------------- one seed


@dataclass
class Splits:
    """The protocol's data: ``train`` (known objects labelled), ``val`` (the same distribution: τ_ood's known
    detections) and ``test`` (known and unknown objects labelled); ``n_known`` classes."""

    train: DetectionSplit
    val: DetectionSplit
    test: DetectionSplit
    n_known: int


def fraction_indices(n: int, fraction: float, seed: int) -> np.ndarray:
    """The first ⌈fraction · n⌉ images of a seeded permutation: at one seed the 10% set lies inside the 25% set,
    which lies inside the whole, so fractions differ only in how much data they see."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    return np.sort(order[:max(1, math.ceil(fraction * n))])


def arm_detections(arm: str, protocol: Protocol, splits: Splits, sub: DetectionSplit,
                   detectors: dict[str, nn.Module], encoders: dict[str, ImageEncoder], seed: int,
                   proposals: dict[str, list[DenseOutput]]) -> dict[str, list[osr.ScoredDetections]]:
    """One arm's scored detections on the validation and test images. ``proposals``: THPN's on the training subset
    ("train"), "val" and "test", shared by the arms that classify them."""
    pr, n_known = protocol, splits.n_known
    nms_kw = dict(pre_nms=pr.pre_nms, nms_iou=pr.nms_iou, max_out=pr.n_proposals)
    final = dict(final_nms=pr.final_nms, max_dets=pr.max_dets, temperature=pr.temperature)
    out = {}
    if arm == "baseline":
        for name in ("val", "test"):
            dense = detect_dense(detectors["baseline"], getattr(splits, name), lam=1.0, **nms_kw)
            out[name] = [scored(d.boxes, d.score, d.logits, **final) for d in dense]
        return out
    encoder = encoders[arm]
    boxes, labels = train_crops(sub, proposals["train"], n_known, bg_iou=pr.bg_iou, bg_per_image=pr.bg_per_image)
    feats = encode_crops(encoder, sub, boxes, crop_size=pr.crop_size, context=pr.context)
    head = fit_head(feats, labels, n_known + 1, epochs=pr.head_epochs, lr=pr.head_lr, seed=seed)
    for name in ("val", "test"):
        props = proposals[name]
        feats = encode_crops(encoder, getattr(splits, name), [d.boxes for d in props], crop_size=pr.crop_size,
                             context=pr.context)
        with torch.no_grad():
            logits = head(feats).split([len(d.boxes) for d in props])
        out[name] = [scored(d.boxes, d.score, lg, **final) for d, lg in zip(props, logits, strict=True)]
    return out


def run_seed(protocol: Protocol, splits: Splits, encoders: dict[str, ImageEncoder], fraction: float, seed: int,
             train_detectors: Any) -> SeedRun:
    """One (data fraction, seed): the detectors trained on the fraction (``train_detectors(sub, seed)`` returns
    the {"thpn", "baseline"} models), every arm of ``protocol.arms`` scored and evaluated, THPN's
    λ sweep, and, at 100% data and seed 0 (the run the figure draws), the first test images' detections."""
    torch.manual_seed(seed)
    pr = protocol
    sub = splits.train.subset(fraction_indices(len(splits.train), fraction, seed))
    detectors = train_detectors(sub, seed)
    boot = bootstrap_weights(len(splits.test), pr.n_boot)
    result = SeedRun(fraction, seed, len(sub), {})
    proposals = {}
    if "thpn" in detectors:
        nms_kw = dict(lam=pr.lam, pre_nms=pr.pre_nms, nms_iou=pr.nms_iou, max_out=pr.n_proposals)
        proposals = {name: detect_dense(detectors["thpn"], split, **nms_kw)
                     for name, split in (("train", sub), ("val", splits.val), ("test", splits.test))}
    for arm in pr.arms:
        dets = arm_detections(arm, pr, splits, sub, detectors, encoders, seed, proposals)
        tau_bg, tau = thresholds_from_validation(dets["val"], splits.val.truths, splits.n_known,
                                                 bg_tpr=pr.bg_tpr, tpr=pr.tpr)
        result.arms[arm] = evaluate_arm(dets["test"], splits.test.truths, splits.n_known, tau_ood=tau,
                                        tau_bg=tau_bg, k=pr.k, n_thresholds=pr.n_thresholds, boot_weights=boot)
        if fraction == 1.0 and seed == 0:
            result.examples[arm] = [example_record(d, tau, tau_bg, splits.n_known)
                                    for d in dets["test"][:pr.n_examples]]
    if "thpn" in detectors:
        result.lambda_sweep = lambda_sweep(detectors["thpn"], splits.test, splits.n_known, pr.lambdas, k=pr.k,
                                           pre_nms=pr.pre_nms, nms_iou=pr.nms_iou, boot_weights=boot)
    return result


def example_record(d: osr.ScoredDetections, tau_ood: float, tau_bg: float, n_known: int) -> osr.ImageDetections:
    """One test image's final detections for the figure: boxes, open-set label (K unknown) and score (float32),
    the background calls left out."""
    known, unknown = osr.open_set_split(d, tau_bg=tau_bg, tau_ood=tau_ood, n_known=n_known)
    return osr.ImageDetections(np.concatenate([known.boxes, unknown.boxes]).astype(np.float32),
                               np.concatenate([known.scores, unknown.scores]).astype(np.float32),
                               np.concatenate([known.labels, unknown.labels]).astype(np.int64))
