"""CLAT (arXiv:2408.10204): the chapter's parameters and its one entry, :func:`run`.

Both profiles run the same two-stage protocol (:mod:`.common`): PGD adversarial training until it overfits robustly
(stage 1), then the same budget of continued PGD-AT on all layers against CLAT on its k most critical layers and the
controls (stage 2), over several seeds with paired differences. Miniature (``smoke``/``cpu``, :mod:`.miniature`): a
small Fashion-MNIST subset and a small CNN. Paper (``paper``, :mod:`.paper`): CIFAR-10/100 from local files and the
paper's Wide-ResNet.
"""

from __future__ import annotations

from typing import Any

from replbook import attacks
from replbook.experiments.clat.common import (
    ARCHS,
    ARM_SPECS,
    ClatResults,
    Protocol,
    largest_possible_share,
    layer_table,
    validate,
)
from replbook.experiments.clat.miniature import run_miniature
from replbook.experiments.clat.paper import run_paper
from replbook.profiles import ChapterParams, Param, config

PARAMS = ChapterParams(
    slug="clat",
    params=(
        Param("dataset", str, "Data set (CIFAR from local files: paper profile).",
              choices=("fashion-mnist", "cifar10", "cifar100")),
        Param("arch", str, "Network: small-cnn for Fashion-MNIST, the residual networks for CIFAR.", choices=ARCHS),
        Param("arms", list, "Stage-2 arms; must include 'continued AT' and 'CLAT'.", choices=tuple(ARM_SPECS),
              item=str),
        Param("seeds", int, "Seeds (subset, initialisation, attacks).", 1, 20),
        Param("n_train", int, "Training images: small, so that adversarial training overfits.", 32, 60_000),
        Param("n_test", int, "Test images for the final evaluation.", 32, 10_000),
        Param("n_curve", int, "Test images for the per-epoch robust accuracy curves.", 32, 10_000),
        Param("eps", float, "L-inf radius on [0, 1] images.", 0.0, 1.0),
        Param("alpha", float, "PGD step size.", 1e-4, 1.0),
        Param("train_steps", int, "PGD steps during training.", 1, 50),
        Param("eval_steps", int, "PGD steps of the final evaluation.", 1, 200),
        Param("curve_steps", int, "PGD steps of the per-epoch curves.", 1, 50),
        Param("strong_eval", str, "Stronger final evaluation of stage 1, continued AT and CLAT (torchattacks).",
              choices=("none", *attacks.STRONG_ATTACKS)),
        Param("n_strong", int, "Test images of the strong evaluation.", 8, 10_000),
        Param("strong_steps", int, "APGD iterations of the strong evaluation.", 5, 1000),
        Param("stage1_epochs", int, "Epochs of stage-1 PGD-AT.", 1, 500),
        Param("eps_warmup", int, "Stage-1 epochs over which eps ramps up linearly (0 for none).", 0, 500),
        Param("stage2_epochs", int, "Epochs of each stage-2 arm.", 1, 500),
        Param("lr1", float, "Stage-1 learning rate (SGD, momentum 0.9).", 1e-5, 1.0),
        Param("lr2", float, "Stage-2 learning rate of the arms.", 1e-5, 1.0),
        Param("k", int, "Critical layers CLAT trains.", 1, 64),
        Param("beta", float, "Weight of the criticality term.", 0.0, 100.0),
        Param("trades_beta", float, "TRADES' weight of the KL term.", 0.0, 100.0),
        Param("reselect_every", int, "Epochs between reselections.", 1, 500),
        Param("candidates", str, "Layers CLAT may select.", choices=("conv", "all-but-logit")),
        Param("augment", bool, "Random crop (pad 4) and horizontal flip of training batches (CIFAR)."),
        Param("batch_size", int, "Training batch size.", 8, 4096),
        Param("eval_batch_size", int, "Batch size of the evaluations.", 8, 100_000),
        Param("device", str, "Where to train: auto picks CUDA when present.", choices=("auto", "cpu", "cuda")),
        Param("threads", int, "torch threads.", 1, 64),
    ),
    defaults={
        "smoke": dict(dataset="fashion-mnist", arch="small-cnn", arms=list(ARM_SPECS), seeds=2, n_train=64,
                      n_test=64, n_curve=32, eps=0.1, alpha=0.025, train_steps=2, eval_steps=5, curve_steps=2,
                      strong_eval="apgd", n_strong=16, strong_steps=5, stage1_epochs=3, eps_warmup=1,
                      stage2_epochs=2, lr1=0.05, lr2=0.01, k=2, beta=0.1, trades_beta=6.0, reselect_every=1,
                      candidates="conv", augment=False, batch_size=32, eval_batch_size=1000, device="cpu",
                      threads=2),
        # n_curve and n_strong sized so that the random-layer control's curve and strong attack fit the 10-minute
        # budget (660 s with 150 and 200 on this machine)
        "cpu": dict(seeds=5, n_train=128, n_test=500, n_curve=100, train_steps=3, eval_steps=20, curve_steps=3,
                    n_strong=160, strong_steps=50, stage1_epochs=40, eps_warmup=5, stage2_epochs=12,
                    reselect_every=4),
        # The paper's regime [abs/recon]: CIFAR-10, WRN-34-10, eps 8/255, step 2/255, PGD-10 training; stage 1 at
        # 100 epochs, then CLAT fine-tuning with reselection every 10 epochs (check the split in the paper).
        "paper": dict(dataset="cifar10", arch="wrn-34-10", seeds=5, n_train=50_000, n_test=10_000, n_curve=1000,
                      eps=8 / 255, alpha=2 / 255, train_steps=10, eval_steps=20, curve_steps=10,
                      strong_eval="autoattack", n_strong=1000, strong_steps=100, stage1_epochs=100, eps_warmup=0,
                      stage2_epochs=20, lr1=0.1, k=5, reselect_every=10, augment=True, batch_size=128,
                      eval_batch_size=500, device="auto", threads=16),
    },
    # the data set's manifest (fashion-mnist, cifar10 or cifar100) is named by the parameter
    assets={profile: lambda p: [p["dataset"]] for profile in ("smoke", "cpu", "paper")},
    validate=validate,
)


#: The chapter's results type (``replbook.results`` saves and loads it).
RESULTS = ClatResults


def run(params: dict[str, Any]) -> ClatResults:
    """The chapter's experiment at ``params["profile"]``: CIFAR with the paper's networks, else the miniature; with
    the network's layers and the most parameters any ``k`` candidate layers could hold (claim C3)."""
    proto = config(Protocol, params)
    seeds = run_paper(params["dataset"], params["device"], proto) if params["profile"] == "paper" \
        else run_miniature(proto)
    layers = layer_table(params["arch"], params["dataset"], params["candidates"])
    return ClatResults(seeds, layers, largest_possible_share(layers, params["k"]))
