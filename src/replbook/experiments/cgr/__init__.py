"""CGR (arXiv:2406.19796): the chapter's parameters and its one entry, :func:`run`.

Tasks arrive in sequence; segmenters learn them with replay of the past from joint image + mask diffusion
generators (:mod:`replbook.replay`): plain joint diffusion, Bayesian joint diffusion (BJD) and BJD with the
task-oriented adapter (CGR), against joint training, sequential fine-tuning, image replay with pseudo-labels and a
small real buffer. Miniature (``smoke``/``cpu``, :mod:`.miniature`): procedural phantoms. Paper (``paper``,
:mod:`.paper`): the paper's data sets from local files and the official-scale networks.
"""

from __future__ import annotations

from typing import Any

from replbook.data.phantoms import STRUCTURES
from replbook.experiments.cgr.common import (
    ARMS,
    CgrResults,
    GeneratorSetup,
    Schedule,
    SegmenterSetup,
    summarise,
    validate,
)
from replbook.experiments.cgr.miniature import run_miniature
from replbook.experiments.cgr.paper import PAPER_TASKS, run_paper
from replbook.profiles import ChapterParams, Param, config

PARAMS = ChapterParams(
    slug="cgr",
    params=(
        Param("order", list, "Tasks in order of arrival.", choices=(*STRUCTURES, *PAPER_TASKS), item=str),
        Param("arms", list, "Segmenter arms; must include 'sequential fine-tuning' and 'CGR'.", choices=tuple(ARMS),
              item=str),
        Param("seeds", int, "Segmenter seeds (initialisation, batches, buffer draw).", 1, 20),
        Param("gen_seeds", int, "Generator seeds: 1 (shared by every seed) or as many as seeds (one each).", 1, 20),
        Param("size", int, "Image side in pixels.", 8, 512),
        Param("n_train", int, "Training images per task (miniature).", 8, 100_000),
        Param("n_test", int, "Test images per task (miniature).", 8, 100_000),
        Param("gen_widths", list, "Generator UNet channels per level (cross-attention at the last).", 4, 1024,
              item=int),
        Param("attention_levels", int, "Coarsest generator levels with cross-attention (official: 3).", 1, 8),
        Param("eps_skip", bool, "Input skip ε̂ = √(1 − ᾱ_t)·z_t + UNet (not official): lets a small generator learn "
              "in minutes what the official one learns in days."),
        Param("gen_layers", int, "Residual blocks per generator level.", 1, 4),
        Param("prompt_tokens", int, "Prompt tokens per task (the stand-in for CLIP's 77).", 1, 77),
        Param("prompt_dim", int, "Width of the prompt tokens and cross-attention (CLIP: 768).", 4, 1024),
        Param("attention_head_dim", int, "Channels per attention head (official: 64).", 1, 128),
        Param("gen_steps", int, "Generator training steps per task.", 1, 1_000_000),
        Param("gen_batch", int, "Generator batch size.", 2, 1024),
        Param("gen_lr", float, "Generator learning rate (AdamW).", 1e-6, 1.0),
        Param("bjd_mode", str, "BJD's conditional terms: alternate (official), both each step.",
              choices=("alternate", "both")),
        Param("bjd_batch", str, "full: BJD's terms each on the whole batch (official, 2× the cost of a plain joint "
              "step); split: joint term on one half, conditional on the other (the cost of a plain step).",
              choices=("full", "split")),
        Param("diffusion_loss", str, "Denoising loss: l1 (official) or mse.", choices=("l1", "mse")),
        Param("train_toa", bool, "Train the task-oriented adapter (the paper's intent; the official code does not)."),
        Param("n_replay", int, "Generated pairs per past task.", 2, 100_000),
        Param("sample_steps", int, "DDIM steps per generated pair (official: 100).", 1, 1000),
        Param("sample_batch", int, "Generated pairs per DDIM batch.", 1, 4096),
        Param("seg_widths", list, "Segmenter channels per level.", 2, 1024, item=int),
        Param("seg_steps", int, "Segmenter training steps per task.", 1, 1_000_000),
        Param("seg_batch", int, "Segmenter batch size (half replay from the second task on).", 2, 1024),
        Param("seg_lr", float, "Segmenter learning rate (Adam, cosine to 0.1×).", 1e-6, 1.0),
        Param("buffer_fraction", float, "Share of each past task's real images the real-buffer arm keeps.", 0.001,
              1.0),
        Param("device", str, "Where to train: auto picks CUDA when present.", choices=("auto", "cpu", "cuda")),
        Param("workers", int, "Processes that train generators and segmenter seeds side by side (1: in this one).",
              1, 64),
        Param("threads", int, "torch threads in all (split over the workers).", 1, 64),
    ),
    defaults={
        "smoke": dict(order=["cardiac", "fundus", "prostate"], arms=list(ARMS), seeds=2, gen_seeds=1, size=16,
                      n_train=48, n_test=16, gen_widths=[8, 16, 16], attention_levels=1, eps_skip=True, gen_layers=1,
                      prompt_tokens=2, prompt_dim=16,
                      attention_head_dim=8, gen_steps=6, gen_batch=8, gen_lr=1e-3, bjd_mode="alternate",
                      bjd_batch="split", diffusion_loss="l1", train_toa=True, n_replay=8, sample_steps=3,
                      sample_batch=64,
                      seg_widths=[4, 8, 16], seg_steps=6, seg_batch=8, seg_lr=3e-3, buffer_fraction=0.1,
                      device="cpu", workers=2, threads=2),
        # sized to the 15-minute budget on 2 cores: three generators side by side in one-thread workers
        "cpu": dict(seeds=3, size=24, n_train=400, n_test=100, gen_widths=[16, 32, 32], prompt_tokens=4,
                    prompt_dim=32, gen_steps=600, gen_batch=16, gen_lr=2e-3, n_replay=128, sample_steps=20,
                    seg_widths=[8, 16, 32], seg_steps=250, seg_batch=32, workers=3),
        # The official scale (spec §2.2, §2.4): 256², 400k generator iterations per task at batch 8, DDIM-100,
        # 3,000 pairs per task, 40k segmenter iterations at batch 16, CLIP-sized (768-d, 77-token) context.
        "paper": dict(order=["mnms", "fundus", "prostate"], seeds=3, gen_seeds=3, size=256,
                      gen_widths=[128, 128, 256, 256, 512, 512], attention_levels=3, eps_skip=False, gen_layers=2,
                      prompt_tokens=77, prompt_dim=768,
                      attention_head_dim=64, gen_steps=400_000, gen_batch=8, gen_lr=1e-4, n_replay=3000,
                      sample_steps=100, sample_batch=32, bjd_batch="full",
                      seg_widths=[32, 64, 128, 256, 512], seg_steps=40_000,
                      seg_batch=16, seg_lr=2e-4, device="auto", workers=1, threads=16),
    },
    assets={"smoke": [], "cpu": [],
            "paper": lambda p: [f"cgr-{name}" for name in p["order"]] + ["clip-vit-large-patch14"]},
    validate=validate,
)


#: The chapter's results type (``replbook.results`` saves and loads it).
RESULTS = CgrResults


def run(params: dict[str, Any]) -> CgrResults:
    """The chapter's experiment at ``params["profile"]``: the paper's data sets, else the miniature."""
    gen, seg, schedule = config(GeneratorSetup, params), config(SegmenterSetup, params), config(Schedule, params)
    if params["profile"] == "paper":
        out = run_paper(gen, seg, schedule, params["order"])
    else:
        out = run_miniature(gen, seg, schedule, params["order"], params["n_train"], params["n_test"])
    return summarise(out, gen, seg)
