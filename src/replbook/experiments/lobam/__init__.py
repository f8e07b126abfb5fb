"""LoBAM (arXiv:2411.16746): the chapter's parameters and its one entry, :func:`run`.

Both profiles run the protocol of :mod:`.common` over several seeds. Miniature (``smoke``/``cpu``,
:mod:`.miniature`): a tiny ViT pre-trained here on grey 28×28 domains, four users (Fashion-MNIST upright, rotated,
inverted; handwritten digits). Paper (``paper``, :mod:`.paper`): CLIP ViT-B/32's vision tower and the task-arithmetic
image sets from local folders.
"""

from __future__ import annotations

from typing import Any

import torch

from replbook.experiments.lobam.common import STEALTH_RULES, LobamResults, Protocol, check_parameters
from replbook.experiments.lobam.miniature import TASKS, MiniatureSetup, check_sizes, run_miniature
from replbook.experiments.lobam.paper import CLIP_MANIFESTS, PAPER_TASKS, PaperSetup, run_paper
from replbook.profiles import ChapterParams, Param, ParameterError, config


def validate(p: dict[str, Any]) -> None:
    """The checks across parameters, before any work: the tasks belong to the profile, the λ sweep, the attacker."""
    known = PAPER_TASKS if p["profile"] == "paper" else TASKS
    unknown = [t for t in p["tasks"] if t not in known]
    if unknown:
        raise ParameterError(f"parameter 'tasks': {unknown} are not tasks of the {p['profile']} profile; choose from "
                             f"{list(known)}.")
    check_parameters(p["lambdas"], p["attacker"], p["tasks"])
    if p["profile"] != "paper":
        check_sizes(p["n_pretrain"], p["n_train"], p["n_val"], p["n_test"])
    if p["device"] == "cuda" and not torch.cuda.is_available():
        raise ParameterError("parameter 'device' is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'.")
    if p["device"] != "cpu" and torch.cuda.is_available() and p["workers"] > 1:
        raise ParameterError("parameter 'workers' must be 1 on a GPU ('device' auto or cuda): worker processes are "
                             "for small CPU models.")


PARAMS = ChapterParams(
    slug="lobam",
    params=(
        Param("tasks", list, "The users' tasks (one merged task vector each); the attacker's is one of them.",
              choices=TASKS + PAPER_TASKS, item=str),
        Param("attacker", str, "The attacker's task (on-task attack: the backdoor targets a class of it).",
              choices=TASKS + PAPER_TASKS),
        Param("target", int, "The backdoor's target class.", 0, 999),
        Param("seeds", int, "Seeds (LoRA initialisation, data order, trigger start).", 1, 20),
        Param("workers", int, "Seeds run in this many one-thread worker processes.", 1, 16),
        Param("widths", list, "Widths of the miniature's ViT: the claims read the first; the protocol reruns at "
              "the others (does a wider backbone keep LoBAM stealthy?). Unused by the paper profile.", 16, 1024,
              item=int),
        Param("layers", int, "Blocks of the miniature's ViT.", 1, 24),
        Param("n_pretrain", int, "Pre-training images per domain (miniature).", 10, 20_000),
        Param("n_train", int, "Training images per task.", 16, 100_000),
        Param("n_val", int, "Validation images per task (the stealth rule reads only these).", 16, 10_000),
        Param("n_test", int, "Test images per task.", 16, 10_000),
        Param("pretrain_epochs", int, "Epochs of pre-training θ_pre (miniature).", 1, 200),
        Param("lr_pretrain", float, "Pre-training learning rate (AdamW).", 1e-6, 1.0),
        Param("benign_mode", str, "How the benign users fine-tune.", choices=("lora", "full")),
        Param("epochs", int, "Epochs of every fine-tune.", 1, 200),
        Param("lr_lora", float, "LoRA learning rate (AdamW).", 1e-6, 1.0),
        Param("lr_full", float, "Full fine-tuning learning rate (AdamW).", 1e-7, 1.0),
        Param("lora_rank", int, "LoRA rank r; its scaling alpha is 2r.", 1, 256),
        Param("lora_targets", str, "Where the LoRA adapters go.", choices=("attention", "attention+mlp")),
        Param("batch_size", int, "Training batch size (half of each backdoor batch carries the trigger).", 2, 4096),
        Param("alpha", float, "BadMerging's weight of the backdoor term.", 0.0, 100.0),
        Param("patch", int, "Side of the square corner trigger, pixels.", 1, 224),
        Param("trigger_epochs", int, "Passes of the trigger optimisation over the attacker's images.", 1, 100),
        Param("trigger_lr", float, "Signed-gradient step of the trigger optimisation (image range [0, 1]).", 1e-4,
              1.0),
        Param("lambdas", list, "The λ sweep (must include 1, the naive LoRA attack).", 1.0, 100.0, item=float),
        Param("lam_max", float, "Largest λ the stealth rule may choose.", 1.0, 100.0),
        Param("lam_tol", float, "Bisection tolerance of the stealth rule.", 1e-3, 10.0),
        Param("stealth_rule", str, "What the attacker checks on validation data before uploading.",
              choices=STEALTH_RULES),
        Param("stealth_delta", float, "Largest drop of the upload's validation accuracy below θ_ben's.", 0.0, 1.0),
        Param("stealth_kappa", float, "Largest ‖τ_upload‖ as a multiple of the attacker's own ‖τ_ben‖.", 0.1, 100.0),
        Param("merge_coef", float, "Task arithmetic's coefficient c.", 0.01, 2.0),
        Param("ties_k", float, "Fraction of each task vector TIES keeps.", 0.01, 1.0),
        Param("ties_coef", float, "TIES's coefficient after the disjoint sum.", 0.01, 2.0),
        Param("eval_batch_size", int, "Batch size of the evaluations.", 8, 100_000),
        Param("clip", str, "CLIP's vision tower (paper profile): a manifest (clip-vit-base-patch32, "
              "clip-vit-large-patch14) or a folder."),
        Param("device", str, "Where to train: auto picks CUDA when present.", choices=("auto", "cpu", "cuda")),
        Param("threads", int, "torch threads (preparation, and seeds when workers is 1).", 1, 64),
    ),
    defaults={
        "smoke": dict(tasks=["fashion", "fashion-rot90", "digits"], attacker="fashion", target=1, seeds=2,
                      workers=1, widths=[32, 48], layers=2, n_pretrain=200, n_train=128, n_val=64, n_test=128,
                      pretrain_epochs=1, lr_pretrain=1e-3, benign_mode="lora", epochs=1, lr_lora=1e-3,
                      lr_full=1e-4, lora_rank=2, lora_targets="attention+mlp", batch_size=64, alpha=5.0, patch=4,
                      trigger_epochs=1, trigger_lr=0.05, lambdas=[1.0, 3.0], lam_max=8.0, lam_tol=0.5,
                      stealth_rule="accuracy", stealth_delta=0.02, stealth_kappa=1.5, merge_coef=0.3, ties_k=0.2,
                      ties_coef=0.3,
                      eval_batch_size=1000, clip="clip-vit-base-patch32", device="cpu", threads=2),
        # Sized for the 10-minute budget on 2 cores (about 8 minutes from an empty cache): a width-128 seed costs about
        # twice a width-64 one. The claims read width 64; width 128 is the wider-backbone question. Three seeds resolve
        # ASR gaps of tens of points (seed sd ≈ 0.05–0.15), not clean-accuracy gaps of one or two.
        "cpu": dict(tasks=["fashion", "fashion-rot90", "fashion-inverted", "digits"], seeds=3, workers=2,
                    widths=[64, 128], layers=4, n_pretrain=1500, n_train=1500, n_val=300, n_test=600,
                    pretrain_epochs=6, epochs=8, lr_lora=1e-3, lr_full=5e-4, lora_rank=8, trigger_epochs=3,
                    lambdas=[1.0, 1.5, 2.0, 3.0, 4.0], lam_tol=0.1),
        # BadMerging's regime [code: BadMerging]: CLIP ViT-B/32, CIFAR100 as the attacker's task, lr 1e-5 full
        # fine-tuning, batch 128, α = 5, a 22-pixel patch; LoBAM's LoRA rank and λ are not transcribed [recon].
        "paper": dict(tasks=list(PAPER_TASKS), attacker="cifar100", seeds=3, workers=1, n_train=100_000,
                      n_val=1000, n_test=10_000, epochs=5, lr_lora=1e-4, lr_full=1e-5, lora_rank=16,
                      batch_size=128, patch=22, trigger_epochs=10, trigger_lr=0.01,
                      lambdas=[1.0, 2.0, 3.0, 4.0, 6.0, 8.0], lam_max=16.0, lam_tol=0.1, eval_batch_size=256,
                      device="auto", threads=16),
    },
    assets={"smoke": ["fashion-mnist"], "cpu": ["fashion-mnist"],
            "paper": lambda p: ["lobam-tasks", *([p["clip"]] if p["clip"] in CLIP_MANIFESTS else [])]},
    validate=validate,
)


#: The chapter's results type (``replbook.results`` saves and loads it).
RESULTS = LobamResults


def run(params: dict[str, Any]) -> LobamResults:
    """The chapter's experiment at ``params["profile"]``: CLIP and the paper's image sets, else the miniature."""
    protocol = config(Protocol, params)
    if params["profile"] == "paper":
        return run_paper(config(PaperSetup, params), protocol)
    return run_miniature(config(MiniatureSetup, params), protocol)
