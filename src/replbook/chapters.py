"""The ten chapters: identity, state, and estimated run time per profile."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from replbook.profiles import ChapterParams


@dataclass(frozen=True)
class Chapter:
    slug: str
    title: str
    arxiv: str
    kind: str
    #: Estimated wall time in minutes on 2 CPU cores per profile; ``None`` until the chapter lands.
    minutes: dict[str, float] | None = None
    #: The kernel modules the chapter is about (``src/replbook/<name>.py``): its page links to their source.
    kernels: tuple[str, ...] = ()

    @property
    def landed(self) -> bool:
        return self.minutes is not None


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("minkpp", "Min-K%++: detecting pre-training data from LLMs", "2404.02936", "method",
            {"smoke": 0.8, "cpu": 11.0, "paper": 10.0}, ("minkpp",)),
    Chapter("speechprune", "SpeechPrune: context-aware token pruning for speech information retrieval",
            "2412.12009", "method", {"smoke": 0.5, "cpu": 6.0, "paper": 60.0}, ("speechprune",)),
    Chapter("lobam", "LoBAM: LoRA-based backdoor attack on model merging", "2411.16746", "method (attack)",
            {"smoke": 0.5, "cpu": 7.5, "paper": 240.0}, ("lobam",)),
    Chapter("hwsw", "Collaborative hardware and software design in the era of LLMs", "2410.07265",
            "survey: cost model and measured roofline", {"smoke": 0.5, "cpu": 3.0, "paper": 3.0}, ("costmodel",)),
    Chapter("fedprophet", "FedProphet: memory-efficient federated adversarial training", "2409.08372",
            "method, federated", {"smoke": 0.8, "cpu": 9.5, "paper": 50_000.0}, ("fedprophet",)),
    Chapter("clat", "CLAT: critical-layer adversarial training", "2408.10204", "method",
            {"smoke": 0.5, "cpu": 7.2, "paper": 600.0}, ("clat",)),
    Chapter("oodv2", "Generalized OOD detection and beyond in the VLM era", "2407.21794",
            "survey: detector benchmark and taxonomy", {"smoke": 0.5, "cpu": 6.0, "paper": 30.0}, ("ood",)),
    Chapter("cgr", "CGR: comprehensive generative replay for task-incremental segmentation", "2406.19796",
            "method, diffusion replay", {"smoke": 0.7, "cpu": 12.0, "paper": 20_000.0}, ("replay",)),
    Chapter("smg", "SMG-Learning: synchronous memorizability and generalizability", "2406.18037",
            "method, diffusion replay", {"smoke": 0.5, "cpu": 13.0, "paper": 20_000.0}, ("smg", "replay")),
    Chapter("osrvit", "OSR-ViT: open-set object detection and discovery", "2404.10865", "method",
            {"smoke": 0.5, "cpu": 9.5, "paper": 30_000.0}, ("osr",)),
)


def chapter(slug: str) -> Chapter:
    """The chapter named ``slug``; a clear error for an unknown or not yet landed one."""
    for ch in CHAPTERS:
        if ch.slug == slug:
            if not ch.landed:
                landed = ", ".join(c.slug for c in CHAPTERS if c.landed)
                raise KeyError(f"chapter {slug!r} has not landed yet; chapters that run: {landed}.")
            return ch
    raise KeyError(f"unknown chapter {slug!r}; chapters: {', '.join(c.slug for c in CHAPTERS)}.")


def landed_chapters() -> list[Chapter]:
    return [c for c in CHAPTERS if c.landed]


def chapter_params(slug: str) -> ChapterParams:
    """The parameter declaration of a chapter: ``replbook.experiments.<slug>.PARAMS``."""
    chapter(slug)
    return importlib.import_module(f"replbook.experiments.{slug}").PARAMS
