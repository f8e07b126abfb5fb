"""The SMG-Learning paper profile: the paper's multi-site sets from local, licence-gated folders
(:mod:`replbook.data.smg_sites`, ``data_manifests/smg-<dataset>.yaml``) through the chapter's protocol
(:func:`replbook.experiments.smg.common.run_all`) on the run's ``device`` (CUDA when present); nothing is
downloaded."""

from __future__ import annotations

from typing import Any

from replbook.data import smg_sites
from replbook.experiments.smg.common import ArmSetup, Schedule, Site, SMDSetup, SmgRun, Study, run_all
from replbook.profiles import ParameterError

DATASETS = tuple(smg_sites.SITES)
PAPER_SITES = tuple(s for sites in smg_sites.SITES.values() for s in sites)


def validate_sites(p: dict[str, Any]) -> None:
    """Every site of ``seen`` and ``unseen`` belongs to ``dataset``."""
    from replbook.data.phantoms import SITES

    allowed = tuple(SITES) if p["dataset"] == "phantoms" else smg_sites.SITES[p["dataset"]]
    wrong = [s for s in [*p["seen"], *p["unseen"]] if s not in allowed]
    if wrong:
        raise ParameterError(f"parameters 'seen'/'unseen': {wrong} are not sites of dataset {p['dataset']!r}; its "
                             f"sites are {list(allowed)}.")


def load_study(dataset: str, seen: list[str], unseen: list[str], size: int) -> Study:
    """The ``seen`` and ``unseen`` sites of ``dataset`` at side ``size``."""

    def site(name: str) -> Site:
        data = smg_sites.load_site(dataset, name, size)
        return Site(name, f"{dataset} site {name}", data.train_images, data.train_labels, data.test_images,
                    data.test_labels)

    return Study(smg_sites.STRUCTURES[dataset], [site(s) for s in seen], [site(s) for s in unseen])


def run_paper(gen: SMDSetup, arms: ArmSetup, schedule: Schedule, dataset: str, seen: list[str],
              unseen: list[str]) -> SmgRun:
    """The protocol on the paper's sites of ``dataset``."""
    return run_all(gen, arms, schedule, load_study(dataset, seen, unseen, gen.size))
