"""FedProphet (arXiv:2409.08372): the chapter's parameters and its one entry, :func:`run`.

Every profile runs the same Flower apps (:mod:`.flower_app`) in Flower's simulation engine (:mod:`.engine`); the
profiles differ in data and backbone (:mod:`.data` picks :mod:`.miniature` or :mod:`.paper`). Miniature
(``smoke``/``cpu``): Fashion-MNIST over six clients with heterogeneous memory budgets and speeds, a nine-block CNN
with batch norm whose blocks are of similar memory. Paper (``paper``): CIFAR-10 and VGG16-BN with the official
README's hyper-parameters, from a local folder.
"""

from __future__ import annotations

from typing import Any

from replbook.experiments.fedprophet.common import ARMS, FedProphetResults
from replbook.experiments.fedprophet.engine import Experiment, run_experiment, settings
from replbook.profiles import ChapterParams, Param, ParameterError, config

DMA_RULES = ("flops+memory", "memory", "off")


def validate(p: dict[str, Any]) -> None:
    """The checks across parameters, before any work."""
    fits = {"fashion-mnist": ("even_cnn",), "cifar10": ("even_cnn", "vgg16_bn"), "caltech256": ("resnet34",)}
    if p["model"] not in fits[p["dataset"]]:
        raise ParameterError(f"parameter 'model' {p['model']!r} does not take {p['dataset']} images; use one of "
                             f"{list(fits[p['dataset']])}.")
    if p["clients_per_round"] > p["clients"]:
        raise ParameterError(f"parameter 'clients_per_round' ({p['clients_per_round']}) exceeds 'clients' "
                             f"({p['clients']}); lower it.")
    for name in ("client_mem_multiples", "client_perf"):
        if len(p[name]) != p["clients"]:
            raise ParameterError(f"parameter {name!r} needs one value per client ({p['clients']}); got "
                                 f"{len(p[name])}.")
    if len(set(p["arms"])) != len(p["arms"]):
        raise ParameterError(f"parameter 'arms' lists an arm twice: {p['arms']}.")
    if len(set(p["mus"])) != len(p["mus"]) or min(p["mus"]) < 0:
        raise ParameterError(f"parameter 'mus' must be distinct values >= 0; got {p['mus']}.")
    if "fedprophet" in p["arms"] and len(p["mus"]) > 1 and "cascade" not in p["arms"]:
        raise ParameterError("FedProphet takes the μ of 'mus' that the cascade runs score best on validation: add "
                             "'cascade' to 'arms', or give 'mus' one value.")
    if p["rounds"] < 1 or p["warmup_rounds"] >= p["rounds"]:
        raise ParameterError(f"parameter 'warmup_rounds' ({p['warmup_rounds']}) must be below 'rounds' "
                             f"({p['rounds']}).")
    if p["n_train"] < p["clients"] * p["batch_size"] // 4:
        raise ParameterError(f"parameter 'n_train' ({p['n_train']}) is too small for {p['clients']} clients at "
                             f"batch {p['batch_size']}; raise it to at least clients × batch_size / 4.")


PARAMS = ChapterParams(
    slug="fedprophet",
    params=(
        Param("arms", list, "The arms: jfat (end-to-end FAT), cascade (module-wise FAT, one run per μ in 'mus'), "
              "fedprophet (cascade + APA + DMA).", choices=ARMS, item=str),
        Param("mus", list, "The cascade's μ sweep (0 is module-wise FAT without the regulariser).", 0.0, 10.0,
              item=float),
        Param("seeds", int, "Seeds (initialisation, data split, sampling, attacks).", 1, 20),
        Param("dataset", str, "The data.", choices=("fashion-mnist", "cifar10", "caltech256")),
        Param("model", str, "The backbone.", choices=("even_cnn", "vgg16_bn", "resnet34")),
        Param("image_size", int, "Side Caltech-256 images are resized to (paper profile).", 16, 1024),
        Param("width", int, "Channels of the even CNN's first level (then 2×, 4×).", 2, 512),
        Param("blocks", int, "Conv blocks per resolution level of the even CNN.", 1, 8),
        Param("batch_norm", bool, "Batch norm in the even CNN's blocks."),
        Param("clients", int, "Simulated clients (Flower SuperNodes).", 2, 1000),
        Param("clients_per_round", int, "Clients sampled each round.", 1, 1000),
        Param("n_train", int, "Training images shared out over the clients.", 16, 1_000_000),
        Param("n_val", int, "Training images the server keeps for validation (APA, model selection).", 16, 100_000),
        Param("n_test", int, "Test images.", 16, 100_000),
        Param("split", str, "How the training images are shared out.", choices=("iid", "dirichlet")),
        Param("dirichlet_alpha", float, "Dirichlet concentration of the label skew (smaller: more skew).", 0.01,
              1000.0),
        Param("rounds", int, "Federated rounds (split evenly over the stages for the cascade arms).", 1, 100_000),
        Param("warmup_rounds", int, "Clean rounds before adversarial training starts.", 0, 100_000),
        Param("local_steps", int, "SGD iterations per client per round.", 1, 10_000),
        Param("batch_size", int, "Training batch size (also the partitioner's batch).", 2, 4096),
        Param("lr", float, "SGD learning rate (momentum 0.9).", 1e-6, 10.0),
        Param("eps", float, "L∞ radius of the pixel attacks (training stage 0, measurement, test).", 0.0, 1.0),
        Param("step", float, "Step of the training PGD on pixels.", 1e-5, 1.0),
        Param("train_steps", int, "PGD steps in training (and in the radius measurement).", 1, 100),
        Param("test_steps", int, "PGD steps of the test evaluation.", 1, 1000),
        Param("test_step", float, "Step of the test PGD.", 1e-5, 1.0),
        Param("val_steps", int, "PGD steps of the server's validation each round.", 1, 100),
        Param("strong_eval", int, "Test images also attacked with APGD (CE + DLR; the masking control), 0 for none.",
              0, 100_000),
        Param("psi", float, "ψ: weight of the prophet (deepest assigned) module's loss.", 0.0, 1.0),
        Param("eps_quantile", float, "α at each stage start (feature radius = α · ε_m).", 0.01, 10.0),
        Param("apa", bool, "Adaptive Perturbation Adjustment in the fedprophet arm."),
        Param("dma", str, "Differentiated Module Assignment in the fedprophet arm.", choices=DMA_RULES),
        Param("ablate_apa", bool, "Also run FedProphet without APA (α stays at eps_quantile)."),
        Param("ablate_dma", bool, "Also run FedProphet without DMA (every client trains the stage module only)."),
        Param("budget_fraction", float, "Module memory budget as a fraction of the whole model's (predicted) "
              "training memory; unused when budget_bytes > 0.", 0.01, 1.0),
        Param("budget_bytes", int, "Module memory budget in bytes (the official --reserved_mem); 0 uses "
              "budget_fraction.", 0, 10**12),
        Param("client_mem_multiples", list, "Each client's memory as a multiple of the module budget (at least 1: "
              "every client must fit one module).", 1.0, 1000.0, item=float),
        Param("client_perf", list, "Each client's relative speed (DMA's FLOPs rule).", 0.01, 1000.0, item=float),
        Param("head_rule", str, "Auxiliary heads: official (pool to ⌈√(C/c)⌉²) or flatten.",
              choices=("official", "flatten")),
        Param("measure_samples", int, "Samples per client in the stage-transition radius measurement.", 1, 100_000),
        Param("sim_cpus", int, "CPUs Flower's simulation engine (Ray) may use; one client runs per CPU.", 1, 256),
    ),
    defaults={
        "smoke": dict(arms=list(ARMS), mus=[0.0, 1e-3], seeds=1, dataset="fashion-mnist", model="even_cnn", width=4,
                      blocks=1, batch_norm=True, clients=3, clients_per_round=3, n_train=192, n_val=64, n_test=64,
                      image_size=224, split="dirichlet", dirichlet_alpha=1.0, rounds=3, warmup_rounds=0,
                      local_steps=1,
                      batch_size=32, lr=0.05, eps=0.1, step=0.04, train_steps=1, test_steps=2, test_step=0.05,
                      val_steps=1, strong_eval=16, psi=1.0, eps_quantile=0.3, apa=True, dma="flops+memory",
                      ablate_apa=True, ablate_dma=True,
                      budget_fraction=0.5, budget_bytes=0, client_mem_multiples=[1.0, 2.0, 4.0],
                      client_perf=[1.0, 2.0, 4.0], head_rule="flatten", measure_samples=32, sim_cpus=2),
        # Sized for the 10-minute budget on 2 cores; see the page for what these sizes can resolve.
        # μ = 1e-4 was indistinguishable from 0 in a first run; the FedProphet-without-APA arm took its place.
        "cpu": dict(mus=[0.0, 1e-3], ablate_dma=False, seeds=3, width=16, blocks=3, clients=6, clients_per_round=6,
                    n_train=3000, n_val=300, n_test=500, rounds=24, local_steps=5, train_steps=2, test_steps=10,
                    test_step=0.025, val_steps=3, strong_eval=200, budget_fraction=0.3,
                    client_mem_multiples=[1.0, 1.0, 1.5, 2.0, 3.0, 4.0], client_perf=[1.0, 1.0, 2.0, 2.0, 4.0, 4.0],
                    measure_samples=128),
        # The official README's CIFAR-10 command [code] (its Caltech-256 command: -p dataset caltech256 -p model
        # resnet34 -p batch_size 32 -p lr 0.001 -p budget_bytes 224000000 -p eps_quantile 0.4, 100 clients):
        # VGG16-BN, 100 clients, 10 per round, 3500 rounds (100
        # clean), 30 local iterations at batch 64, SGD 0.005, PGD-10 ε 8/255 step 2/255, test PGD-20, μ 1e-5,
        # ψ 1, α from 0.3, reserved memory 6e7 B. Non-IID shards are approximated by a Dirichlet label skew.
        "paper": dict(mus=[0.0, 1e-5], ablate_apa=False, ablate_dma=False, dataset="cifar10", model="vgg16_bn",
                      clients=100, clients_per_round=10,
                      n_train=45_000, n_val=5000, n_test=10_000, dirichlet_alpha=0.3, rounds=3500,
                      warmup_rounds=100, local_steps=30, batch_size=64, lr=0.005, eps=8 / 255, step=2 / 255,
                      train_steps=10, test_steps=20, test_step=2 / 255, val_steps=5, strong_eval=1000,
                      head_rule="official", budget_bytes=60_000_000, client_mem_multiples=[1.0, 1.5, 2.0, 3.0] * 25,
                      client_perf=[1.0, 2.0, 4.0, 8.0] * 25, measure_samples=256, sim_cpus=16),
    },
    assets={"smoke": ["fashion-mnist"], "cpu": ["fashion-mnist"],
            "paper": lambda p: [p["dataset"]]},
    validate=validate,
)


#: The chapter's results type (``replbook.results`` saves and loads it).
RESULTS = FedProphetResults


def run(params: dict[str, Any]) -> FedProphetResults:
    """The chapter's experiment at ``params["profile"]`` in Flower's simulation engine (:mod:`.engine`); the
    profile picks the data and backbone (:mod:`.miniature`, :mod:`.paper`)."""
    return run_experiment(settings(config(Experiment, params)))
