"""OSR-ViT (arXiv:2404.10865): the chapter's parameters and its one entry, :func:`run`.

Both profiles run the protocol of :mod:`.common` at every data fraction and seed. Miniature (``smoke``/``cpu``,
:mod:`.miniature`): procedural 64×64 open-set scenes and a tiny ViT pre-trained here on other shapes. Paper
(``paper``, :mod:`.paper`): PASCAL VOC 2007+2012 for training, COCO 2017 val for the test (the 20 VOC classes known,
the other 60 unknown), and DINOv2 from a local folder.
"""

from __future__ import annotations

from typing import Any

from replbook.experiments.osrvit.common import ARMS, DetectorSetup, OsrvitResults, Protocol, Schedule
from replbook.experiments.osrvit.miniature import SceneSetup, VitSetup, run_miniature
from replbook.experiments.osrvit.paper import DINOV2_MANIFESTS, PaperData, run_paper
from replbook.profiles import ChapterParams, Param, ParameterError, config


def validate(p: dict[str, Any]) -> None:
    """The checks across parameters, before any work."""
    if "baseline" not in p["arms"] or "osrvit" not in p["arms"]:
        raise ParameterError(f"parameter 'arms' must hold 'baseline' and 'osrvit' (the claims compare them); got "
                             f"{p['arms']}.")
    if len(set(p["arms"])) != len(p["arms"]) or len(set(p["fractions"])) != len(p["fractions"]):
        raise ParameterError("parameters 'arms' and 'fractions' must not repeat an entry.")
    if 1.0 not in p["fractions"]:
        raise ParameterError(f"parameter 'fractions' must include 1.0 (the full-data reference of the claims); got "
                             f"{p['fractions']}.")
    if p["lam"] not in p["lambdas"]:
        raise ParameterError(f"parameter 'lam' ({p['lam']}) must be one of 'lambdas' ({p['lambdas']}): the sweep "
                             f"shows where the chosen λ sits.")
    if p["profile"] != "paper" and p["crop_size"] % p["vit_patch"]:
        raise ParameterError(f"parameter 'crop_size' ({p['crop_size']}) must be a multiple of 'vit_patch' "
                             f"({p['vit_patch']}).")
    if p["profile"] != "paper" and p["vit_hidden"] % 4:
        raise ParameterError(f"parameter 'vit_hidden' ({p['vit_hidden']}) must be a multiple of the 4 heads.")
    if p["profile"] != "paper" and p["device"] != "cpu":
        raise ParameterError("parameter 'device' must be 'cpu' for the miniature (its models are too small to gain "
                             "from a GPU); the paper profile takes 'auto' or 'cuda'.")
    if p["det_width"] % 8:
        raise ParameterError(f"parameter 'det_width' ({p['det_width']}) must be a multiple of 8 (the detectors' group "
                             f"norm has 8 groups).")
    if p["image_size"] % 4:
        raise ParameterError(f"parameter 'image_size' ({p['image_size']}) must be a multiple of 4 (the detectors' "
                             f"stride).")
    if p["n_examples"] > p["n_test"]:
        raise ParameterError(f"parameter 'n_examples' ({p['n_examples']}) must not exceed 'n_test' ({p['n_test']}).")


PARAMS = ChapterParams(
    slug="osrvit",
    params=(
        Param("arms", list, "Detectors to compare (baseline and osrvit are required; osrvit-random is the control "
              "with an untrained ViT).", choices=ARMS, item=str),
        Param("fractions", list, "Shares of the training images each arm trains on (1.0 required).", 0.01, 1.0,
              item=float),
        Param("seeds", int, "Seeds (training subset, initialisations, background crops).", 1, 20),
        Param("workers", int, "(fraction, seed) jobs run in this many one-thread worker processes.", 1, 16),
        Param("threads", int, "torch threads (pre-training, and jobs when workers is 1).", 1, 64),
        Param("n_train", int, "Training scenes (miniature) or a cap on VOC training images (paper).", 2, 100_000),
        Param("n_val", int, "Validation scenes or VOC images held out of training (τ_ood at the TPR).", 1, 10_000),
        Param("n_test", int, "Test scenes or COCO val images.", 2, 10_000),
        Param("n_aux", int, "Auxiliary scenes the miniature's ViT pre-trains on.", 10, 100_000),
        Param("unlabelled_rate", float, "Share of training scenes holding one unlabelled unknown object.", 0.0, 1.0),
        Param("unknown_rate", float, "Chance that a test object is of an unknown shape.", 0.05, 0.95),
        Param("image_size", int, "Paper profile: images are resized to this square side.", 64, 2048),
        Param("det_width", int, "Channels of the dense detectors' trunk (a multiple of 8).", 8, 1024),
        Param("det_steps", int, "Training steps of THPN and of the baseline.", 1, 1_000_000),
        Param("det_batch", int, "Their batch size.", 1, 1024),
        Param("det_lr", float, "Their Adam peak learning rate (one-cycle).", 1e-6, 1.0),
        Param("vit_hidden", int, "Width of the miniature's ViT.", 8, 1024),
        Param("vit_layers", int, "Blocks of the miniature's ViT.", 1, 24),
        Param("vit_patch", int, "Patch side of the miniature's ViT.", 1, 64),
        Param("pretrain_steps", int, "Pre-training steps of the miniature's ViT.", 1, 1_000_000),
        Param("pretrain_batch", int, "Its batch size.", 1, 4096),
        Param("pretrain_lr", float, "Its AdamW peak learning rate.", 1e-6, 1.0),
        Param("dinov2", str, "Paper profile: DINOv2 (a manifest name or a folder with config.json and "
              "model.safetensors)."),
        Param("crop_size", int, "Side of the crops the ViT classifies.", 8, 518),
        Param("context", float, "Context added around each box, as a share of its side.", 0.0, 1.0),
        Param("head_epochs", int, "Epochs of the linear head on frozen ViT features.", 1, 1000),
        Param("head_lr", float, "Its Adam learning rate.", 1e-6, 1.0),
        Param("bg_iou", float, "A proposal is a background example when its IoU with every labelled box is below "
              "this.", 0.0, 1.0),
        Param("bg_per_image", int, "Background crops per training image.", 0, 1000),
        Param("lam", float, "THPN's λ of the OSR-ViT pipeline: score λ·σ(cls) + (1 − λ)·σ(ctr).", 0.0, 1.0),
        Param("lambdas", list, "The λ sweep of THPN's proposals (claim C1).", 0.0, 1.0, item=float),
        Param("pre_nms", int, "Proposals kept before NMS.", 1, 100_000),
        Param("nms_iou", float, "Proposal NMS IoU.", 0.05, 1.0),
        Param("n_proposals", int, "Proposals kept after NMS (and baseline detections before the decision).", 1,
              10_000),
        Param("final_nms", float, "Class-agnostic NMS IoU of the classified detections.", 0.05, 1.0),
        Param("max_dets", int, "Detections kept per image.", 1, 10_000),
        Param("k", int, "Unknown recall@k and class-agnostic AR@k (the paper's k is 100; scenes hold ≤ 6 objects).",
              1, 10_000),
        Param("bg_tpr", float, "τ_bg (background when p_bg > τ_bg) keeps this share of the known validation "
              "detections out of background, per detector.", 0.5, 1.0),
        Param("tpr", float, "τ_ood keeps this share of the known validation detections.", 0.5, 1.0),
        Param("temperature", float, "The energy score's temperature T.", 1e-3, 1e3),
        Param("n_thresholds", int, "Points of the AOSP threshold sweep (quantiles of S_id).", 3, 1001),
        Param("n_boot", int, "Bootstrap resamples of the test images for the claims' intervals.", 10, 100_000),
        Param("n_examples", int, "Test images drawn with their detections.", 1, 64),
        Param("device", str, "Where to train and embed: auto picks CUDA when present.",
              choices=("auto", "cpu", "cuda")),
    ),
    defaults={
        "smoke": dict(arms=list(ARMS), fractions=[1.0, 0.25], seeds=1, workers=1, threads=2, n_train=120, n_val=30,
                      n_test=40, n_aux=100, unlabelled_rate=0.3, unknown_rate=0.5, image_size=512, det_width=16,
                      det_steps=20, det_batch=16, det_lr=3e-3, vit_hidden=32, vit_layers=2, vit_patch=8,
                      pretrain_steps=20, pretrain_batch=64, pretrain_lr=1e-3, dinov2="dinov2-small",
                      crop_size=32, context=0.1, head_epochs=5, head_lr=3e-3, bg_iou=0.3, bg_per_image=4, lam=0.1,
                      lambdas=[0.0, 0.1, 0.5, 1.0], pre_nms=100, nms_iou=0.7, n_proposals=20, final_nms=0.5,
                      max_dets=20, k=10, bg_tpr=0.95, tpr=0.95, temperature=1.0, n_thresholds=11, n_boot=20,
                      n_examples=4, device="cpu"),
        "cpu": dict(fractions=[1.0, 0.25, 0.1], seeds=3, workers=2, n_train=1500, n_val=200, n_test=400,
                    n_aux=1500, det_width=32, det_steps=1500, det_batch=8, vit_hidden=64, vit_layers=4,
                    pretrain_steps=800, pretrain_batch=128, head_epochs=30, n_boot=200),
        # The VOC→COCO configuration of the first author's fork [code: mmdetection_osod voccoco
        # faster_rcnn_r50_hybridrpn_lc10.py]: λ = 0.1, NMS 0.7, 1,000 proposals, AR@100. The detectors are our
        # small dense ones (not ResNet-50-FPN), trained for det_steps; see the page.
        "paper": dict(fractions=[1.0, 0.25], seeds=1, workers=1, threads=16, n_train=16_551, n_val=500,
                      n_test=5000, image_size=512, det_width=128, det_steps=40_000, det_batch=16, det_lr=1e-3,
                      dinov2="dinov2-small", crop_size=224, context=0.1, head_epochs=20, bg_per_image=8,
                      pre_nms=2000, n_proposals=1000, max_dets=100, k=100, n_boot=200, device="auto"),
    },
    assets={"smoke": [], "cpu": [],
            "paper": lambda p: ["voc0712", "coco2017-val", *([p["dinov2"]] if p["dinov2"] in DINOV2_MANIFESTS
                                                              else [])]},
    validate=validate,
)


#: The chapter's results type (``replbook.results`` saves and loads it).
RESULTS = OsrvitResults


def run(params: dict[str, Any]) -> OsrvitResults:
    """The chapter's experiment at ``params["profile"]``: VOC→COCO with DINOv2, else the miniature."""
    schedule, detector = config(Schedule, params), config(DetectorSetup, params)
    protocol = config(Protocol, params)
    if params["profile"] == "paper":
        return run_paper(schedule, config(PaperData, params), detector, protocol)
    return run_miniature(schedule, config(SceneSetup, params), config(VitSetup, params), detector, protocol)
