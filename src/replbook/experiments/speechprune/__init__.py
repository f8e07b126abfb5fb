"""SpeechPrune (arXiv:2412.12009): the chapter's parameters and its one entry, :func:`run`.

Miniature (``smoke``/``cpu``, :mod:`.miniature`): SPIRAL-mini spoken by espeak-ng and encoded by Whisper tiny.en, a
small speech LLM (the reader) with a ``b_max``-token window. Paper (``paper``, :mod:`.paper`): Qwen2-Audio on SPIRAL.
"""

from __future__ import annotations

from typing import Any

from replbook.experiments.speechprune.common import Pruning, SpeechpruneResults
from replbook.experiments.speechprune.miniature import ReaderSetup, SpeechData, prefill_cost, run_miniature
from replbook.experiments.speechprune.paper import run_paper
from replbook.profiles import ChapterParams, Param, config

QWEN = "Qwen/Qwen2-Audio-7B-Instruct"

PARAMS = ChapterParams(
    slug="speechprune",
    params=(
        Param("backend", str, "Speech: espeak-ng + Whisper tiny.en, or pseudo-speech.", choices=("pseudo", "espeak")),
        Param("n_train", int, "Training items (the reader learns from short clips cut from them).", 10, 20_000),
        Param("n_test", int, "Test passages.", 10, 5000),
        Param("n_fillers", int, "Filler sentences per passage.", 3, 60),
        Param("clips_per_item", int, "Training clips per training item.", 1, 50),
        Param("b_max", int, "Speech tokens the reader's window holds (the 30-s analogue).", 8, 4096),
        Param("pool", int, "Whisper states (20 ms each) averaged into one speech token.", 1, 16),
        Param("d_model", int, "Reader width.", 16, 1024),
        Param("layers", int, "Reader layers.", 1, 12),
        Param("heads", int, "Reader attention heads (and Phase 2's).", 1, 16),
        Param("epochs", int, "Reader training epochs.", 1, 200),
        Param("lr", float, "AdamW learning rate.", 1e-5, 1.0),
        Param("batch_size", int, "Training batch size.", 4, 1024),
        Param("align_weight", float, "Weight of the loss that aligns speech tokens with the spoken words.", 0.0, 10.0),
        Param("token_dropout", float, "Training clips lose a random share of their tokens, up to this fraction.", 0.0,
              0.95),
        Param("prune_rates", list, "Prune rates PR, relative to the window b_max.", 0.0, 0.95, item=float),
        Param("random_seeds", int, "Seeds of RAP and RAC.", 1, 50),
        Param("frame_size", int, "Phase-1 frame in speech tokens (the paper: 25 tokens, 1 s).", 1, 1000),
        Param("model", str, "Paper profile: the speech LLM's hub id (local cache) or folder."),
        Param("seed", int, "Seed of the items and the reader.", 0, 10_000),
        Param("threads", int, "torch threads.", 1, 64),
    ),
    defaults={
        "smoke": dict(backend="pseudo", n_train=60, n_test=24, n_fillers=10, clips_per_item=4, b_max=40, pool=4,
                      d_model=48, layers=2, heads=4, epochs=3, lr=2e-3, batch_size=32, align_weight=1.0,
                      token_dropout=0.5, prune_rates=[0.2, 0.4, 0.6, 0.8], random_seeds=2, frame_size=4, model=QWEN,
                      seed=0, threads=2),
        "cpu": dict(backend="espeak", n_train=300, n_test=200, n_fillers=12, clips_per_item=8, b_max=128,
                    d_model=128, epochs=10, lr=1e-3, random_seeds=5, frame_size=12),
        # The paper profile runs run_paper: Qwen2-Audio on SPIRAL's 1,012 items, window N1 = 750 tokens (30 s),
        # frames of 25 tokens (1 s); the miniature's training parameters are unused there.
        "paper": dict(backend="espeak", n_test=1012, b_max=750, random_seeds=5, frame_size=25, threads=16),
    },
    assets={"smoke": [], "cpu": ["whisper-tiny-en"],
            # the hub manifest pins Qwen2-Audio; a local folder given as `model` needs none
            "paper": lambda p: ["spiral"] + (["qwen2-audio-7b-instruct"] if p["model"] == QWEN else [])},
)


#: The chapter's results type (``replbook.results`` saves and loads it).
RESULTS = SpeechpruneResults


def run(params: dict[str, Any]) -> SpeechpruneResults:
    """The chapter's experiment at ``params["profile"]``: Qwen2-Audio on SPIRAL, else the miniature; then the
    reader's prefill cost at the kept token counts (the miniature's reader shape, in every profile)."""
    pruning = config(Pruning, params)
    if params["profile"] == "paper":
        results = run_paper(params["model"], params["n_test"], pruning)
    else:
        results = run_miniature(config(SpeechData, params), config(ReaderSetup, params), pruning, params["threads"])
    results.cost = prefill_cost(params["d_model"], params["layers"], params["heads"], params["b_max"],
                                params["prune_rates"])
    return results
