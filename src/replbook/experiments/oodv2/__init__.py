"""Generalized OOD detection (arXiv:2407.21794): the chapter's parameters and its one entry, :func:`run`.

Miniature (``smoke``/``cpu``, :mod:`.miniature`): a classifier on seven Fashion-MNIST garments, post-hoc detectors on
near-OOD garments, far-OOD sources and covariate shift, and a toy VLM for MCM / GL-MCM. Paper (``paper``,
:mod:`.paper`): OpenOOD v1.5's CIFAR benchmark with its released checkpoints, and CLIP.
"""

from __future__ import annotations

from typing import Any

from replbook.data.ood_images import CORRUPTIONS, FAR_SOURCES
from replbook.experiments.oodv2.common import DETECTORS, Oodv2Results, Scoring, SeedResult
from replbook.experiments.oodv2.miniature import Splits, Training, check_classes, run_miniature
from replbook.experiments.oodv2.paper import Benchmark, run_paper
from replbook.profiles import ChapterParams, Param, config

__all__ = ["PARAMS", "RESULTS", "DETECTORS", "Oodv2Results", "SeedResult", "run"]

CLIP = "openai/clip-vit-base-patch16"


def miniature_assets(p: dict[str, Any]) -> list[str]:
    return ["fashion-mnist"] + (["all-minilm-l6-v2"] if p["vlm"] else [])


def validate(p: dict[str, Any]) -> None:
    """The miniature's class split and subspace; the paper profile reads its classes from OpenOOD."""
    if p["profile"] != "paper":
        check_classes(p["id_classes"], p["near_classes"], p["vim_dim"], p["hidden"])


PARAMS = ChapterParams(
    slug="oodv2",
    params=(
        Param("seeds", int, "Seeds (subset, initialisation, OOD sets).", 1, 20),
        Param("id_classes", list, "Fashion-MNIST classes that are in-distribution.", 0, 9, item=int),
        Param("near_classes", list, "Held-out Fashion-MNIST classes: the near-OOD set.", 0, 9, item=int),
        Param("far_sources", list, "Far-OOD image sources.", choices=FAR_SOURCES, item=str),
        Param("corruptions", list, "Covariate shifts applied to the ID test images.", choices=CORRUPTIONS, item=str),
        Param("detectors", list, "Detectors to score.", choices=DETECTORS, item=str),
        Param("n_train", int, "ID training images.", 100, 60_000),
        Param("n_val", int, "Held-out ID training images (TempScale's temperature).", 50, 10_000),
        Param("n_test", int, "ID test images.", 50, 10_000),
        Param("n_ood", int, "Images per OOD set.", 50, 10_000),
        Param("epochs", int, "Training epochs of the classifier and the toy VLM.", 1, 100),
        Param("lr", float, "Adam learning rate.", 1e-5, 1.0),
        Param("batch_size", int, "Training batch size.", 8, 4096),
        Param("hidden", int, "Width of the classifier's penultimate layer.", 8, 4096),
        Param("knn_k", int, "KNN: the k-th neighbour (Sun et al. 2022 use 50).", 1, 1000),
        Param("vim_dim", int, "ViM: dimension of the principal subspace.", 1, 4095),
        Param("react_percentile", float, "ReAct: clipping percentile of training activations.", 0.0, 99.99),
        Param("ash_percentile", float, "ASH-S: pruning percentile.", 0.0, 99.99),
        Param("scale_percentile", float, "SCALE: percentile of its scaling factor.", 0.0, 99.99),
        Param("dice_percentile", float, "DICE: weight sparsity percentile.", 0.0, 99.99),
        Param("odin_temperature", float, "ODIN: temperature.", 1e-3, 1e6),
        Param("odin_epsilon", float, "ODIN: input step size.", 0.0, 1.0),
        Param("vlm", bool, "Train the toy vision-language tower and score MCM and GL-MCM."),
        Param("mcm_temperature", float, "Temperature of the toy VLM's training and of MCM.", 1e-4, 10.0),
        Param("benchmark", str, "Paper profile: the OpenOOD v1.5 benchmark.", choices=("cifar10", "cifar100")),
        Param("clip_model", str, "Paper profile: CLIP's hub id (local cache) or folder."),
        Param("clip_temperature", float, "Paper profile: MCM's temperature on CLIP's cosines.", 1e-4, 10.0),
        Param("n_boot", int, "Bootstrap resamples of the test items for the claims' intervals.", 10, 100_000),
        Param("threads", int, "torch threads.", 1, 64),
    ),
    defaults={
        "smoke": dict(seeds=1, id_classes=[0, 1, 2, 3, 5, 7, 8], near_classes=[4, 6, 9], far_sources=list(FAR_SOURCES),
                      corruptions=list(CORRUPTIONS), detectors=list(DETECTORS), n_train=600, n_val=100, n_test=200,
                      n_ood=100, epochs=1, lr=1e-3, batch_size=64, hidden=64, knn_k=10, vim_dim=16,
                      react_percentile=90.0, ash_percentile=90.0, scale_percentile=85.0, dice_percentile=70.0,
                      odin_temperature=1000.0, odin_epsilon=0.0014, vlm=True, mcm_temperature=0.05, benchmark="cifar10",
                      clip_model=CLIP, clip_temperature=1.0, n_boot=50, threads=2),
        "cpu": dict(seeds=3, n_train=10_000, n_val=1000, n_test=3000, n_ood=2000, epochs=3, batch_size=128,
                    hidden=128, knn_k=50, vim_dim=32, n_boot=300),
        # The paper profile runs run_paper: OpenOOD v1.5's three ResNet-18 checkpoints (seeds = s0..s2) on its CIFAR
        # benchmark, and CLIP's MCM / GL-MCM; n_train caps the training images the feature detectors are fitted on.
        "paper": dict(seeds=3, n_train=40_000, n_val=2000, knn_k=50, vim_dim=32, n_boot=300, threads=16),
    },
    assets={"smoke": miniature_assets, "cpu": miniature_assets,
            # the hub manifest pins CLIP; a local folder given as `clip_model` needs none
            "paper": lambda p: ["openood-v15"] + (["clip-vit-base-patch16"] if p["vlm"] and p["clip_model"] == CLIP
                                                  else [])},
    validate=validate,
)


#: The chapter's results type (``replbook.results`` saves and loads it).
RESULTS = Oodv2Results


def run(params: dict[str, Any]) -> Oodv2Results:
    """The chapter's experiment at ``params["profile"]``: OpenOOD's benchmark and CLIP, else the miniature."""
    scoring = config(Scoring, params)
    if params["profile"] == "paper":
        return run_paper(config(Benchmark, params), scoring, vlm=params["vlm"], clip_model=params["clip_model"],
                         clip_temperature=params["clip_temperature"])
    return run_miniature(config(Splits, params), config(Training, params), scoring, params["seeds"],
                         vlm=params["vlm"], n_boot=params["n_boot"], threads=params["threads"])
