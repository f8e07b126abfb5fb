"""The OSR-ViT kernels (replbook.osr) against hand-worked cases: the specification's §6 examples, boxes, NMS, crops,
AP, recall, the open-set evaluation and the reconstructed AOSP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from replbook import osr


def test_hybrid_objectness_spec_example():
    cls, ctr = torch.tensor(2.0), torch.tensor(-1.0)
    for lam, want in ((0.0, 0.26894), (0.1, 0.33013), (0.5, 0.57487), (1.0, 0.88080)):
        assert float(osr.hybrid_objectness(cls, ctr, lam)) == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="lam"):
        osr.hybrid_objectness(cls, ctr, 1.5)


def test_centerness_spec_example_centre_side_and_outside():
    box = torch.tensor([[0.0, 0.0, 8.0, 6.0]])
    # l = 2, r = 6, t = 3, b = 3
    assert float(osr.centerness_targets(torch.tensor([[2.0, 3.0]]), box)) == pytest.approx(math.sqrt(1 / 3), abs=1e-6)
    assert float(osr.centerness_targets(torch.tensor([[4.0, 3.0]]), box)) == pytest.approx(1.0)
    assert float(osr.centerness_targets(torch.tensor([[0.0, 3.0]]), box)) == 0.0
    assert float(osr.centerness_targets(torch.tensor([[9.0, 3.0]]), box)) == 0.0


def test_energy_spec_example_and_background_excluded():
    logits = torch.tensor([[2.0, 0.0, 0.0, 5.0]])  # the last logit is background
    s = osr.energy_score(logits)
    assert float(s) == pytest.approx(math.log(math.e ** 2 + 2), abs=1e-5)  # 2.23954
    assert float(s) == pytest.approx(2.23954, abs=1e-5)
    assert float(osr.energy_score(logits[:, :3], background_last=False)) == pytest.approx(2.23954, abs=1e-5)
    # T = 2: 2 · ln(e + 2)
    assert float(osr.energy_score(logits, temperature=2.0)) == pytest.approx(2 * math.log(math.e + 2), abs=1e-5)
    label = osr.assign_open_set(torch.tensor([0.1]), s, torch.tensor([0]), tau_bg=0.5, tau_ood=2.5, n_known=3)
    assert label.tolist() == [3]  # flagged unknown


def test_assign_open_set_rules():
    p_bg = torch.tensor([0.7, 0.2, 0.2])
    s_id = torch.tensor([9.0, 1.0, 3.0])
    pred = torch.tensor([1, 2, 2])
    out = osr.assign_open_set(p_bg, s_id, pred, tau_bg=0.5, tau_ood=2.5, n_known=3)
    assert out.tolist() == [-1, 3, 2]  # background regardless of S_id; unknown; known class


def test_box_iou_and_area_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0]])
    iou = osr.box_iou(a, b)
    assert iou[0, 0] == pytest.approx(1 / 7)
    assert iou[0, 1] == 0 and iou[0, 2] == pytest.approx(1.0)
    assert iou[1, 2] == pytest.approx(0.25)
    assert np.allclose(osr.box_iou_np(a.numpy(), b.numpy()), iou.numpy())
    # a degenerate box has no area and no overlap
    assert float(osr.box_iou(torch.tensor([[1.0, 1.0, 1.0, 3.0]]), b)[0, 2]) == 0.0


def test_nms_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box 3 (0.95) suppresses box 0 (IoU 0.9) and box 1 (IoU 81/109 = 0.74 > 0.7); box 2 is apart
    assert osr.nms(boxes, scores, 0.7).tolist() == [3, 2]
    # at 0.8, box 1 (IoU with 3 is 0.74, with 0 0.82 but 0 is gone) survives
    assert osr.nms(boxes, scores, 0.8).tolist() == [3, 1, 2]
    assert osr.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_ltrb_coding_round_trip_by_hand():
    points = torch.tensor([[5.0, 4.0]])
    boxes = torch.tensor([[2.0, 1.0, 9.0, 6.0]])
    ltrb = osr.encode_ltrb(points, boxes)
    assert ltrb.tolist() == [[3.0, 3.0, 4.0, 2.0]]
    assert torch.equal(osr.decode_ltrb(points, ltrb), boxes)


def test_crop_and_resize_whole_image_quadrant_and_context():
    img = torch.arange(16.0).view(1, 1, 4, 4)
    whole = osr.crop_and_resize(img, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], size=4, context=0.0)
    assert torch.allclose(whole, img, atol=1e-5)
    quad = osr.crop_and_resize(img, [torch.tensor([[2.0, 0.0, 4.0, 2.0]])], size=2, context=0.0)
    assert torch.allclose(quad[0, 0], torch.tensor([[2.0, 3.0], [6.0, 7.0]]), atol=1e-5)
    # context 0.5 on the centre 2×2 box samples the whole image
    ctx = osr.crop_and_resize(img, [torch.tensor([[1.0, 1.0, 3.0, 3.0]])], size=4, context=0.5)
    assert torch.allclose(ctx, img, atol=1e-5)
    assert osr.crop_and_resize(img, [torch.zeros(0, 4)], size=3).shape == (0, 1, 3, 3)
    with pytest.raises(ValueError, match="one box tensor per image"):
        osr.crop_and_resize(img, [], size=3)


def test_threshold_at_tpr_by_hand():
    scores = np.arange(1.0, 21.0)  # 1 … 20
    tau = osr.threshold_at_tpr(scores, 0.95)
    assert tau == 2.0 and (scores >= tau).mean() == 0.95
    assert osr.threshold_at_tpr(scores, 1.0) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        osr.threshold_at_tpr(np.zeros(0))


def test_ap_101_point_by_hand():
    # two ground truths; detections tp, fp, tp: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    ap = osr.ap_from_matches(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 2)
    assert ap == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    # weights: counting every detection twice with twice the ground truth is the same curve
    assert osr.ap_from_matches(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 4,
                               np.array([2.0, 2.0, 2.0])) == pytest.approx(ap)
    assert osr.ap_from_matches(np.zeros(0), np.zeros(0, bool), 3) == 0.0
    assert math.isnan(osr.ap_from_matches(np.zeros(0), np.zeros(0, bool), 0))


def test_match_greedy_takes_best_unmatched_by_score():
    gts = np.array([[0.0, 0, 10, 10], [0, 0, 10, 12]])
    dets = np.array([[0.0, 0, 10, 11], [0, 0, 10, 10], [50, 50, 60, 60]])
    # the 0.9 detection (IoU 10/11 with gt0 and 11/12 with gt1) takes gt1; the 0.8 one then takes gt0
    m = osr.match_greedy(dets, np.array([0.9, 0.8, 0.7]), gts, 0.5)
    assert m.tolist() == [1, 0, -1]


def _one_image():
    truth = osr.ImageTruth(np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 3]))  # known 0, unknown
    dets = osr.ScoredDetections(
        boxes=np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]]), objectness=np.array([0.8, 0.9]),
        p_bg=np.array([0.1, 0.1]), s_id=np.array([5.0, 1.0]), known_pred=np.array([0, 0]),
        p_known=np.array([1.0, 1.0]))
    return dets, truth


def test_open_set_evaluation_by_hand():
    dets, truth = _one_image()
    ev = osr.OpenSetEvaluation([dets], [truth], 3, tau_bg=0.5, taus=[-np.inf, 3.0, 6.0], k=10)
    # τ = −∞: both called class 0; the unknown object's detection scores first and is a false positive
    assert ev.at(0) == {"id_map50": pytest.approx(0.5), "ood_recall": 0.0}
    assert ev.at(1) == {"id_map50": pytest.approx(1.0), "ood_recall": 1.0}
    assert ev.at(2) == {"id_map50": 0.0, "ood_recall": 1.0}
    recall, ap = ev.curve()
    # points (0, 0.5), (1, 1), (1, 0): the best AP at recall 1 counts, so the area is (0.5 + 1) / 2
    assert osr.aosp_recon(recall, ap) == pytest.approx(0.75)


def test_open_set_weights_equal_duplicated_images():
    d1, t1 = _one_image()
    d2 = osr.ScoredDetections(np.array([[0.0, 0, 9, 9]]), np.array([0.5]), np.array([0.2]), np.array([4.0]),
                              np.array([1]), np.array([0.7]))
    t2 = osr.ImageTruth(np.array([[0.0, 0, 10, 10]]), np.array([1]))
    taus = [-np.inf, 2.0, 4.5]
    weighted = osr.OpenSetEvaluation([d1, d2], [t1, t2], 3, tau_bg=0.5, taus=taus, k=10)
    duplicated = osr.OpenSetEvaluation([d1, d2, d2, d2], [t1, t2, t2, t2], 3, tau_bg=0.5, taus=taus, k=10)
    for level in range(3):
        assert weighted.at(level, np.array([1.0, 3.0])) == pytest.approx(duplicated.at(level))


def test_aosp_recon_trapezoid_by_hand():
    assert osr.aosp_recon(np.array([0.0, 0.5, 1.0]), np.array([0.8, 0.6, 0.2])) == pytest.approx(0.55)
    # unsorted, a repeated recall keeps its best AP, and a curve that starts above 0 is extended flat to 0
    assert osr.aosp_recon(np.array([1.0, 0.5, 0.5]), np.array([0.2, 0.1, 0.6])) == pytest.approx(0.5 * 0.6 + 0.2)
    assert math.isnan(osr.aosp_recon(np.array([np.nan]), np.array([0.3])))


def test_recall_at_k_and_average_recall():
    truth = osr.ImageTruth(np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 4]))
    dets = osr.ImageDetections(np.array([[20.0, 20, 30, 30], [0, 0, 10, 7.9], [40, 40, 50, 50]]),
                               np.array([0.9, 0.5, 0.7]), np.zeros(3, int))
    assert osr.recall_at_k([dets], [truth], 1) == 0.5
    assert osr.recall_at_k([dets], [truth], 3) == 1.0
    assert osr.recall_at_k([dets], [truth], 3, gt_mask=[truth.labels >= 3]) == 1.0
    # IoU 0.79 for the second: recalled at thresholds 0.5 … 0.75 (6 of 10), the first at all ten
    assert osr.average_recall([dets], [truth], 3) == pytest.approx((10 + 6) / 20)


@pytest.mark.parametrize("with_crowds", [False, True])
def test_mean_ap_cross_checked_with_pycocotools(with_crowds):
    """Our AP equals COCOeval's, crowd regions included: a detection a crowd of its class covers is ignored."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    gts, dets, images, anns, results = [], [], [], [], []
    for i in range(12):
        n = int(rng.integers(1, 4))
        xy = rng.uniform(0, 40, (n, 2))
        wh = rng.uniform(5, 20, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, 2, n)
        crowd = np.zeros((0, 4))
        crowd_labels = np.zeros(0, np.int64)
        if with_crowds and i % 2 == 0:  # a crowd region beside the objects, with detections inside it
            cxy = rng.uniform(30, 50, (1, 2))
            crowd = np.concatenate([cxy, cxy + rng.uniform(10, 14, (1, 2))], 1)
            crowd_labels = rng.integers(0, 2, 1)
        gts.append(osr.ImageTruth(boxes, labels, crowd, crowd_labels))
        jitter = boxes + rng.normal(0, 2, boxes.shape)
        extra = np.concatenate([rng.uniform(0, 40, (2, 2)), rng.uniform(45, 60, (2, 2))], 1)
        inside = (np.array([[1.0, 1, 6, 5], [3.0, 2, 9, 9]]) + np.tile(crowd[:, :2], (1, 2)) if len(crowd)
                  else np.zeros((0, 4)))
        db = np.concatenate([jitter, extra, inside])
        dl = np.concatenate([labels, rng.integers(0, 2, 2), np.repeat(crowd_labels, 2)])
        ds = rng.uniform(0, 1, len(db))
        dets.append(osr.ImageDetections(db, ds, dl))
        images.append({"id": i, "width": 64, "height": 64})
        for j, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": 100 * i + j + 1, "image_id": i, "category_id": int(lab) + 1, "iscrowd": 0,
                         "bbox": [b[0], b[1], w, h], "area": w * h})
        for j, (b, lab) in enumerate(zip(crowd, crowd_labels, strict=True)):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": 100 * i + 50 + j, "image_id": i, "category_id": int(lab) + 1, "iscrowd": 1,
                         "bbox": [b[0], b[1], w, h], "area": w * h})
        for b, lab, s in zip(db, dl, ds, strict=True):
            results.append({"image_id": i, "category_id": int(lab) + 1, "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(results), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert osr.mean_ap(dets, gts, [0, 1]) == pytest.approx(ev.stats[1], abs=1e-6)
    if with_crowds:  # the crowds mattered: counting their detections as false positives gives another AP
        plain = [osr.ImageTruth(g.boxes, g.labels) for g in gts]
        assert osr.mean_ap(dets, plain, [0, 1]) < ev.stats[1] - 1e-3
    assert osr.mean_ap(dets, gts, [0, 1], iou_thrs=osr.COCO_IOUS) == pytest.approx(ev.stats[0],
                                                                                                 abs=1e-6)


def test_separation_aurocs():
    kind = np.array([0, 0, 1, 1, 2, 2, -1])
    s_id = np.array([5.0, 4.0, 1.0, 4.5, 0.0, 0.0, 9.0])
    fg = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.3, 0.5])
    out = osr.separation_aurocs(s_id, fg, kind)
    assert out["auroc_id_ood"] == pytest.approx(0.75)  # pairs (5>1, 5>4.5, 4>1, 4<4.5)
    assert out["auroc_id_bg"] == 1.0
    assert out["auroc_ood_bg"] == pytest.approx(0.75)  # (0.7>0.1, 0.7>0.3, 0.2>0.1, 0.2<0.3)
    assert math.isnan(osr.separation_aurocs(s_id[:2], fg[:2], kind[:2])["auroc_id_ood"])


def test_nms_max_keep_keeps_the_first():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [0, 0, 10, 9]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert osr.nms(boxes, scores, 0.5, max_keep=2).tolist() == osr.nms(boxes, scores, 0.5)[:2].tolist() == [3, 1]


def test_open_set_evaluation_agrees_with_the_direct_metrics():
    rng = np.random.default_rng(1)
    dets, gts = [], []
    for _ in range(15):
        n, m = int(rng.integers(0, 8)), int(rng.integers(1, 5))
        gxy = rng.uniform(0, 40, (m, 2))
        gb = np.concatenate([gxy, gxy + rng.uniform(5, 15, (m, 2))], 1)
        gts.append(osr.ImageTruth(gb, rng.integers(0, 5, m)))
        pick = rng.integers(0, m, n)
        db = gb[pick] + rng.normal(0, 2, (n, 4))
        dets.append(osr.ScoredDetections(db, rng.uniform(0, 1, n), rng.uniform(0, 1, n), rng.normal(2, 1, n),
                                         rng.integers(0, 3, n), rng.uniform(0.3, 1, n)))
    taus = [-np.inf, 1.5, 2.5]
    ev = osr.OpenSetEvaluation(dets, gts, 3, tau_bg=0.6, taus=taus, k=4)
    for level, tau in enumerate(taus):
        split = [osr.open_set_split(d, tau_bg=0.6, tau_ood=tau, n_known=3) for d in dets]
        want_ap = osr.mean_ap([s[0] for s in split], gts, range(3))
        want_recall = osr.recall_at_k([s[1] for s in split], gts, 4, 0.5, [g.labels >= 3 for g in gts])
        assert ev.at(level) == {"id_map50": pytest.approx(want_ap), "ood_recall": pytest.approx(want_recall)}


def test_crowd_ignored_hand_case():
    crowd = np.array([[0.0, 0, 20, 20]])
    boxes = np.array([[2.0, 2, 6, 6],     # inside the crowd: covered 1.0
                      [15.0, 0, 25, 10],  # half inside: covered 0.5
                      [18.0, 0, 28, 10],  # a fifth inside: 0.2
                      [2.0, 2, 6, 6]])    # inside, but it matched an object: never ignored
    match = np.array([-1, -1, -1, 0])
    assert osr.crowd_ignored(boxes, match, crowd, 0.5).tolist() == [True, True, False, False]
    assert osr.crowd_ignored(boxes, match, crowd, 0.75).tolist() == [True, False, False, False]
    assert not osr.crowd_ignored(boxes, match, np.zeros((0, 4)), 0.5).any()


def test_open_set_evaluation_ignores_crowds_as_mean_ap_does():
    rng = np.random.default_rng(2)
    dets, gts = [], []
    for _ in range(10):
        m = int(rng.integers(1, 4))
        gxy = rng.uniform(0, 30, (m, 2))
        gb = np.concatenate([gxy, gxy + rng.uniform(5, 15, (m, 2))], 1)
        crowd = np.array([[40.0, 40, 60, 60]])
        gts.append(osr.ImageTruth(gb, rng.integers(0, 5, m), crowd, rng.integers(0, 3, 1)))
        db = np.concatenate([gb + rng.normal(0, 2, gb.shape), [[42.0, 42, 50, 50], [45.0, 41, 58, 55]]])
        n = len(db)
        dets.append(osr.ScoredDetections(db, rng.uniform(0, 1, n), rng.uniform(0, 0.5, n), rng.normal(2, 1, n),
                                         rng.integers(0, 3, n), rng.uniform(0.3, 1, n)))
    ev = osr.OpenSetEvaluation(dets, gts, 3, tau_bg=0.6, taus=[-np.inf, 2.0], k=4)
    for level, tau in enumerate([-np.inf, 2.0]):
        split = [osr.open_set_split(d, tau_bg=0.6, tau_ood=tau, n_known=3) for d in dets]
        assert ev.at(level)["id_map50"] == pytest.approx(osr.mean_ap([s[0] for s in split], gts, range(3)))

