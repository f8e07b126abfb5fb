"""OSR-ViT (arXiv:2404.10865): the kernels of open-set object detection and discovery, in plain torch and numpy.

torchvision does not import beside the CPU torch of this project, so the box operations are ours. Boxes are
``[x1, y1, x2, y2]`` in pixels throughout. The equations are those of the specification (``papers/osrvit.md``): the
hybrid proposal score of the tunable hybrid proposal network (THPN, written from the equations read in the first
author's ``mmdetection_osod`` fork, github.com/MatthewInkawhich/mmdetection_osod), the energy score, the open-set
decision, and the evaluation: COCO-style AP, class-agnostic recall, unknown recall and AOSP. AOSP's exact construction
is not in any source we have read: :func:`aosp_recon` is our reconstruction and is named so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from replbook.stats import auroc_rank

#: COCO's IoU thresholds of AP@[.5:.95] and AR: 0.5, 0.55, …, 0.95 (``np.linspace``, as pycocotools).
COCO_IOUS = np.linspace(0.5, 0.95, 10)

# ----------------------------------------------------------------------------------------------- boxes


def box_area(boxes: Tensor) -> Tensor:
    """[N, 4] → [N]; a box with x2 < x1 or y2 < y1 has area 0."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of every pair: a [N, 4], b [M, 4] → [N, M] (0 where the union is empty)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: Tensor, scores: Tensor, iou_thr: float, max_keep: int | None = None) -> Tensor:
    """Greedy non-maximum suppression: boxes [N, 4], scores [N] → kept indices [n] by descending score. A box is
    dropped when its IoU with a kept, higher-scoring box exceeds ``iou_thr`` (torchvision's rule); ``max_keep``
    stops after that many (the same first ones)."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores, descending=True, stable=True)
    iou = box_iou(boxes[order], boxes[order])
    remaining = torch.arange(len(order))
    keep = []
    while remaining.numel() and (max_keep is None or len(keep) < max_keep):
        i = remaining[0]
        keep.append(int(i))
        remaining = remaining[1:][iou[i, remaining[1:]] <= iou_thr]
    return order[torch.tensor(keep, dtype=torch.long)]


def encode_ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """The THPN / FCOS box coding: points [P, 2] (x, y), boxes [P, 4] → distances [P, 4] (left, top, right, bottom)
    from each point to its box's sides; all positive when the point lies inside."""
    x, y = points[:, 0], points[:, 1]
    return torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=1)


def decode_ltrb(points: Tensor, ltrb: Tensor) -> Tensor:
    """The inverse of :func:`encode_ltrb`: points [P, 2], distances [P, 4] → boxes [P, 4]."""
    x, y = points[:, 0], points[:, 1]
    return torch.stack([x - ltrb[:, 0], y - ltrb[:, 1], x + ltrb[:, 2], y + ltrb[:, 3]], dim=1)


def centerness_targets(points: Tensor, gt_boxes: Tensor) -> Tensor:
    """The localisation-quality target of THPN's second branch, points [P, 2], boxes [P, 4] → [P]:

    c = √( min(l, r)/max(l, r) · min(t, b)/max(t, b) ),

    1 at the box centre, 0 on a side, and 0 for a point outside its box.
    """
    ltrb = encode_ltrb(points, gt_boxes)
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    inside = ltrb.min(dim=1).values > 0
    ratio = (lr.min(1).values / lr.max(1).values.clamp(min=1e-12)) * (tb.min(1).values / tb.max(1).values.clamp(
        min=1e-12))
    return torch.where(inside, ratio.clamp(min=0).sqrt(), torch.zeros_like(ratio))


def hybrid_objectness(cls_logit: Tensor, ctr_logit: Tensor, lam: float) -> Tensor:
    """THPN's proposal score s = λ·σ(cls) + (1 − λ)·σ(ctr), elementwise, in [0, 1]. λ = 1 is a plain RPN
    (foreground classification, which learns to call unlabelled objects background); λ = 0 is OLN (localisation
    quality only, trained on positives, which generalises to unseen objects)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1]; got {lam}.")
    return lam * torch.sigmoid(cls_logit) + (1.0 - lam) * torch.sigmoid(ctr_logit)


def crop_and_resize(images: Tensor, boxes: Sequence[Tensor], size: int, context: float = 0.1) -> Tensor:
    """Bilinear crops of boxes widened by ``context`` of their side on every side (a RoI-align with one sample per
    output pixel): images [B, C, H, W], boxes a list of B tensors [n_i, 4] → [Σ n_i, C, size, size]. Outside the
    image the crop repeats the border."""
    if len(boxes) != images.shape[0]:
        raise ValueError(f"crop_and_resize needs one box tensor per image; got {len(boxes)} for {images.shape[0]}.")
    _, c, h, w = images.shape
    crops = []
    for i, b in enumerate(boxes):
        if b.shape[0] == 0:
            continue
        b = b.to(images.dtype)
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        bw = (b[:, 2] - b[:, 0]).clamp(min=1.0) * (1 + 2 * context)
        bh = (b[:, 3] - b[:, 1]).clamp(min=1.0) * (1 + 2 * context)
        # affine_grid maps [-1, 1] output coordinates to [-1, 1] input coordinates (align_corners=False: pixel
        # edges at ±1, so pixel x ↔ 2x/W − 1)
        theta = torch.zeros(b.shape[0], 2, 3, dtype=images.dtype, device=images.device)
        theta[:, 0, 0], theta[:, 0, 2] = bw / w, 2 * cx / w - 1
        theta[:, 1, 1], theta[:, 1, 2] = bh / h, 2 * cy / h - 1
        grid = F.affine_grid(theta, [b.shape[0], c, size, size], align_corners=False)
        crops.append(F.grid_sample(images[i:i + 1].expand(b.shape[0], -1, -1, -1), grid, mode="bilinear",
                                   padding_mode="border", align_corners=False))
    return torch.cat(crops) if crops else images.new_zeros(0, c, size, size)


# ----------------------------------------------------------------------------------------------- open-set decision


def energy_score(logits: Tensor, temperature: float = 1.0, background_last: bool = True) -> Tensor:
    """The energy score S_id = T · logsumexp(f / T) over the *known* logits f (the background logit, last, left out
    when ``background_last``): logits [N, K(+1)] → [N]; higher = more like a known class."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}.")
    known = logits[..., :-1] if background_last else logits
    return temperature * torch.logsumexp(known / temperature, dim=-1)


def threshold_at_tpr(known_scores: np.ndarray | Tensor, tpr: float = 0.95) -> float:
    """The largest threshold τ that keeps at least ``tpr`` of the known items at S ≥ τ: the ⌈tpr·n⌉-th highest
    score."""
    s = np.sort(np.asarray(known_scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("threshold_at_tpr needs at least one known score.")
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must lie in (0, 1]; got {tpr}.")
    k = int(np.ceil(tpr * s.size - 1e-9))
    return float(s[s.size - k])


def assign_open_set(p_bg: Tensor, s_id: Tensor, known_pred: Tensor, *, tau_bg: float, tau_ood: float,
                    n_known: int) -> Tensor:
    """The open-set decision per detection, all [N] → labels [N]: −1 (background) when p_bg > τ_bg; else
    ``n_known`` (unknown) when S_id < τ_ood; else the arg-max known class ``known_pred``."""
    out = torch.where(s_id < tau_ood, torch.full_like(known_pred, n_known), known_pred)
    return torch.where(p_bg > tau_bg, torch.full_like(known_pred, -1), out)


# ----------------------------------------------------------------------------------------------- evaluation


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`box_iou` in numpy (the evaluation's many small calls): a [N, 4], b [M, 4] → [N, M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_greedy(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, iou_thr: float,
                 iou: np.ndarray | None = None) -> np.ndarray:
    """COCO's matching in one image: detections in descending score each take the unmatched ground truth of highest
    IoU ≥ ``iou_thr``. det_boxes [n, 4], det_scores [n], gt_boxes [m, 4] → matched gt index per detection [n]
    (−1 = false positive), in the detections' original order. ``iou`` [n, m], when given, is their IoU matrix
    (callers that match subsets of one image's boxes compute it once)."""
    n = len(det_scores)
    match = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(gt_boxes) == 0:
        return match
    if iou is None:
        iou = box_iou_np(np.asarray(det_boxes, float), np.asarray(gt_boxes, float))
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for d in np.argsort(-det_scores, kind="stable"):
        cand = np.where(taken, -1.0, iou[d])
        g = int(np.argmax(cand))
        if cand[g] >= iou_thr:
            match[d], taken[g] = g, True
    return match


def ap_from_matches(scores: np.ndarray, tp: np.ndarray, n_gt: float, weights: np.ndarray | None = None) -> float:
    """COCO's 101-point interpolated average precision from pooled detections: scores [n], tp [n] (bool), ``n_gt``
    ground truths; ``weights`` [n] counts each detection that many times (a bootstrap resample of images). NaN when
    there is no ground truth."""
    if n_gt <= 0:
        return float("nan")
    if scores.size == 0:
        return 0.0
    w = np.ones(scores.size) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    tp_w, fp_w = np.cumsum(w[order] * tp[order]), np.cumsum(w[order] * ~tp[order])
    recall = tp_w / n_gt
    precision = tp_w / np.maximum(tp_w + fp_w, np.finfo(float).eps)
    # the precision envelope: the best precision at this recall or beyond
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    grid = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, grid, side="left")
    return float(np.where(idx < recall.size, envelope[np.minimum(idx, recall.size - 1)], 0.0).mean())


@dataclass
class ImageDetections:
    """One image's detections: boxes [n, 4], scores [n], labels [n] (class index)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def _no_crowd() -> np.ndarray:
    return np.zeros((0, 4))


def _no_label() -> np.ndarray:
    return np.zeros(0, np.int64)


@dataclass
class ImageTruth:
    """One image's ground truth: boxes [m, 4], labels [m]; and its crowd regions (COCO's ``iscrowd``), boxes
    [c, 4] and labels [c], which are never counted as objects: a detection they cover is ignored
    (:func:`crowd_ignored`), neither a hit nor a false positive."""

    boxes: np.ndarray
    labels: np.ndarray
    crowd_boxes: np.ndarray = field(default_factory=_no_crowd)
    crowd_labels: np.ndarray = field(default_factory=_no_label)


def crowd_ignored(det_boxes: np.ndarray, match: np.ndarray, crowd_boxes: np.ndarray, iou_thr: float) -> np.ndarray:
    """COCOeval's crowd rule: a detection that matched no object (``match`` −1, from :func:`match_greedy`) is ignored
    when a crowd region covers it, ``area(d ∩ c) / area(d) ≥ iou_thr`` (a crowd's "IoU" divides by the detection's area
    only, and a crowd may cover any number of detections). det_boxes [n, 4], match [n], crowd_boxes [c, 4] →
    ignored [n] (bool)."""
    ignored = np.zeros(len(det_boxes), dtype=bool)
    if len(det_boxes) == 0 or len(crowd_boxes) == 0:
        return ignored
    d, c = np.asarray(det_boxes, float), np.asarray(crowd_boxes, float)
    wh = np.clip(np.minimum(d[:, None, 2:], c[None, :, 2:]) - np.maximum(d[:, None, :2], c[None, :, :2]), 0, None)
    area = np.clip(d[:, 2] - d[:, 0], 0, None) * np.clip(d[:, 3] - d[:, 1], 0, None)
    cover = wh[..., 0] * wh[..., 1] / np.maximum(area, 1e-12)[:, None]
    return (match < 0) & (cover.max(1) >= iou_thr)


def _class_matches(dets: Sequence[ImageDetections], gts: Sequence[ImageTruth], cls: int, iou_thr: float,
                   max_dets: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per image: the scores and true-positive flags of class ``cls``'s top ``max_dets`` detections (those a crowd
    region of ``cls`` covers left out), and its number of ground truths [n_images]."""
    scores, tps, n_gt = [], [], np.zeros(len(gts))
    for i, (d, g) in enumerate(zip(dets, gts, strict=True)):
        dm, gm = d.labels == cls, g.labels == cls
        s, b = d.scores[dm], d.boxes[dm]
        top = np.argsort(-s, kind="stable")[:max_dets]
        s, b = s[top], b[top]
        match = match_greedy(b, s, g.boxes[gm], iou_thr)
        keep = ~crowd_ignored(b, match, g.crowd_boxes[g.crowd_labels == cls], iou_thr)
        scores.append(s[keep])
        tps.append(match[keep] >= 0)
        n_gt[i] = gm.sum()
    return scores, tps, n_gt


def mean_ap(dets: Sequence[ImageDetections], gts: Sequence[ImageTruth], classes: Sequence[int],
            iou_thrs: Sequence[float] = (0.5,), max_dets: int = 100) -> float:
    """COCO-style mAP: the mean over ``classes`` with ground truth and over ``iou_thrs`` of :func:`ap_from_matches`
    (AP@0.5 with the default; ``COCO_IOUS`` gives AP@[.5:.95])."""
    if len(dets) != len(gts):
        raise ValueError(f"mean_ap needs one detection set per image; got {len(dets)} for {len(gts)} images.")
    aps = []
    for thr in iou_thrs:
        for cls in classes:
            scores, tps, n_gt = _class_matches(dets, gts, cls, thr, max_dets)
            if n_gt.sum() == 0:
                continue
            aps.append(ap_from_matches(np.concatenate(scores), np.concatenate(tps), float(n_gt.sum())))
    return float(np.mean(aps)) if aps else float("nan")


def recall_at_k(dets: Sequence[ImageDetections], gts: Sequence[ImageTruth], k: int, iou_thr: float = 0.5,
                gt_mask: Sequence[np.ndarray] | None = None) -> float:
    """Class-agnostic recall: the share of ground truths (those of ``gt_mask`` per image, default all) matched one
    to one (:func:`match_greedy`) by an image's ``k`` highest-scoring detections, labels ignored."""
    hit, total = 0.0, 0.0
    for i, (d, g) in enumerate(zip(dets, gts, strict=True)):
        gb = g.boxes if gt_mask is None else g.boxes[gt_mask[i]]
        top = np.argsort(-d.scores, kind="stable")[:k]
        hit += float((match_greedy(d.boxes[top], d.scores[top], gb, iou_thr) >= 0).sum())
        total += len(gb)
    return hit / total if total else float("nan")


def average_recall(dets: Sequence[ImageDetections], gts: Sequence[ImageTruth], k: int,
                   gt_mask: Sequence[np.ndarray] | None = None) -> float:
    """COCO's AR@k: :func:`recall_at_k` averaged over IoU thresholds 0.5, 0.55, …, 0.95."""
    return float(np.mean([recall_at_k(dets, gts, k, t, gt_mask) for t in COCO_IOUS]))


@dataclass
class ScoredDetections:
    """One image's detections before the open-set decision: boxes [n, 4], objectness [n], the classifier's
    background probability p_bg [n], energy S_id [n], arg-max known class [n] and its probability [n]."""

    boxes: np.ndarray
    objectness: np.ndarray
    p_bg: np.ndarray
    s_id: np.ndarray
    known_pred: np.ndarray
    p_known: np.ndarray


def open_set_split(d: ScoredDetections, *, tau_bg: float, tau_ood: float,
                   n_known: int) -> tuple[ImageDetections, ImageDetections]:
    """Apply :func:`assign_open_set` to one image: (known detections, labels = class and score = objectness × class
    probability; unknown detections, label ``n_known`` and score = objectness)."""
    labels = assign_open_set(torch.as_tensor(d.p_bg), torch.as_tensor(d.s_id), torch.as_tensor(d.known_pred),
                             tau_bg=tau_bg, tau_ood=tau_ood, n_known=n_known).numpy()
    k, u = (labels >= 0) & (labels < n_known), labels == n_known
    known = ImageDetections(d.boxes[k], d.objectness[k] * d.p_known[k], labels[k])
    unknown = ImageDetections(d.boxes[u], d.objectness[u], labels[u])
    return known, unknown


class OpenSetEvaluation:
    """Known-class AP@0.5 and unknown recall@k of one detector's scored detections at each unknown threshold of
    ``taus``, with the matching done once, so that a bootstrap over images (``image_weights``) only re-pools.

    Labels: known classes are 0 … n_known − 1, unknown ground truths carry labels ≥ ``n_known``. Known detections
    are matched per class (COCO's rule, at most ``max_dets`` per image and class); unknown detections, the ``k``
    highest-scoring of an image, are matched class-agnostically to the unknown ground truths at IoU ≥ 0.5.
    """

    def __init__(self, dets: Sequence[ScoredDetections], gts: Sequence[ImageTruth], n_known: int, *, tau_bg: float,
                 taus: Sequence[float], k: int, max_dets: int = 100):
        if len(dets) != len(gts):
            raise ValueError(f"one detection set per image is needed; got {len(dets)} for {len(gts)} images.")
        self.taus, self.n_known = [float(t) for t in taus], n_known
        self.n_gt = np.array([[np.sum(g.labels == c) for c in range(n_known)] for g in gts], float).reshape(
            len(gts), n_known)
        self.unknown_total = np.array([np.sum(g.labels >= n_known) for g in gts], float)
        self.levels = []
        # each image's detection × ground-truth IoU, once for every threshold
        ious = [box_iou_np(d.boxes, g.boxes) for d, g in zip(dets, gts, strict=True)]
        for tau in self.taus:
            per_class: list[tuple[list, list, list]] = [([], [], []) for _ in range(n_known)]
            hits = np.zeros(len(gts))
            for i, (d, g) in enumerate(zip(dets, gts, strict=True)):
                labels = assign_open_set(torch.as_tensor(d.p_bg), torch.as_tensor(d.s_id),
                                         torch.as_tensor(d.known_pred), tau_bg=tau_bg, tau_ood=tau,
                                         n_known=n_known).numpy()
                for c in range(n_known):
                    idx = np.nonzero(labels == c)[0]
                    s = d.objectness[idx] * d.p_known[idx]
                    top = np.argsort(-s, kind="stable")[:max_dets]
                    gi = np.nonzero(g.labels == c)[0]
                    match = match_greedy(d.boxes[idx[top]], s[top], g.boxes[gi], 0.5, ious[i][np.ix_(idx[top], gi)])
                    keep = ~crowd_ignored(d.boxes[idx[top]], match, g.crowd_boxes[g.crowd_labels == c], 0.5)
                    per_class[c][0].append(s[top][keep])
                    per_class[c][1].append(match[keep] >= 0)
                    per_class[c][2].append(np.full(int(keep.sum()), i))
                idx = np.nonzero(labels == n_known)[0]
                s = d.objectness[idx]
                top = np.argsort(-s, kind="stable")[:k]
                gi = np.nonzero(g.labels >= n_known)[0]
                hits[i] = (match_greedy(d.boxes[idx[top]], s[top], g.boxes[gi], 0.5,
                                        ious[i][np.ix_(idx[top], gi)]) >= 0).sum()
            self.levels.append(([tuple(np.concatenate(part) if part else np.zeros(0) for part in cls)
                                 for cls in per_class], hits))

    def at(self, level: int, image_weights: np.ndarray | None = None) -> dict[str, float]:
        """{"id_map50", "ood_recall"} at ``taus[level]``; ``image_weights`` [n_images] count each image that often."""
        w = np.ones(len(self.unknown_total)) if image_weights is None else np.asarray(image_weights, float)
        per_class, hits = self.levels[level]
        aps = [ap_from_matches(s, tp, float(w @ self.n_gt[:, c]), w[img].astype(float) if img.size else None)
               for c, (s, tp, img) in enumerate(per_class) if w @ self.n_gt[:, c] > 0]
        total = float(w @ self.unknown_total)
        return {"id_map50": float(np.mean(aps)) if aps else float("nan"),
                "ood_recall": float(w @ hits) / total if total else float("nan")}

    def curve(self, image_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(unknown recall, known AP@0.5) at every threshold."""
        pts = [self.at(i, image_weights) for i in range(len(self.taus))]
        return np.array([p["ood_recall"] for p in pts]), np.array([p["id_map50"] for p in pts])


def sweep_thresholds(dets: Sequence[ScoredDetections], tau_bg: float, n_thresholds: int = 11) -> list[float]:
    """The unknown thresholds of the AOSP sweep: −∞ (no detection called unknown) and, just above each of the
    quantiles 0, 1/(n−1), …, 1 of the non-background detections' S_id, so that the last calls every one unknown."""
    s = np.concatenate([d.s_id[d.p_bg <= tau_bg] for d in dets]) if dets else np.zeros(0)
    qs = np.quantile(s, np.linspace(0, 1, n_thresholds)) if s.size else []
    return [-np.inf] + [float(np.nextafter(q, np.inf)) for q in qs]


def aosp_recon(recall: np.ndarray, precision: np.ndarray) -> float:
    """AOSP, **reconstructed** (the specification's §2.5; the paper's exact construction is unverified): the area
    under known-class AP as a function of unknown recall, by the trapezoid rule over the sweep's points sorted by
    recall (for equal recall, the best AP), from recall 0 (where the curve starts at the AP with no unknown calls) to
    the largest recall reached; nothing beyond it. In [0, 1]."""
    recall, precision = np.asarray(recall, float), np.nan_to_num(np.asarray(precision, float))
    if recall.size == 0 or np.isnan(recall).all():
        return float("nan")
    best: dict[float, float] = {}
    for r, p in zip(recall, precision, strict=True):
        best[r] = max(best.get(r, 0.0), p)
    r = np.array(sorted(best))
    p = np.array([best[x] for x in r])
    if r[0] > 0:
        # the τ = −∞ point has recall 0 by construction; a caller's curve that lacks it starts at its first AP
        r, p = np.concatenate([[0.0], r]), np.concatenate([[p[0]], p])
    return float(np.trapezoid(p, r))


def separation_aurocs(s_id: np.ndarray, foreground: np.ndarray, kind: np.ndarray) -> dict[str, float]:
    """The three AUROCs of the specification over detections labelled by ``kind`` [n] (0 = matched a known object,
    1 = an unknown object, 2 = background): ID vs OOD on the energy S_id (ID positive); ID vs background and OOD vs
    background on the foreground score (object positive). NaN where a group is empty."""
    out = {}
    for name, pos, neg, score in (("id_ood", 0, 1, s_id), ("id_bg", 0, 2, foreground), ("ood_bg", 1, 2, foreground)):
        m = (kind == pos) | (kind == neg)
        lab = kind[m] == pos
        out[f"auroc_{name}"] = float(auroc_rank(score[m], lab)) if 0 < lab.sum() < lab.size else float("nan")
    return out
