"""The SMG-Learning miniature (``smoke``/``cpu``): the cardiac-like phantom task of :mod:`replbook.data.phantoms`
rendered at six appearance "sites" (:data:`replbook.data.phantoms.SITES`); each site draws its own hearts. A
stand-in: no patient data, no real scanner."""

from __future__ import annotations

from replbook.data import phantoms
from replbook.experiments.smg.common import ArmSetup, Schedule, Site, SMDSetup, SmgRun, Study, run_all

#: The draw of phantoms is fixed (the seeds vary models, batches and replay noise), so every arm sees the same data.
DATA_SEED = 0


def make_study(seen: list[str], unseen: list[str], n_train: int, n_test: int, size: int) -> Study:
    """The sites of ``seen`` (in order) and ``unseen``, ``n_train`` + ``n_test`` phantoms of side ``size`` each."""
    def site(name: str) -> Site:
        images, labels = phantoms.render_site(name, n_train + n_test, size, DATA_SEED)
        n = n_train
        return Site(name, phantoms.SITE_DESCRIPTIONS[name], images[:n], labels[:n], images[n:], labels[n:])

    return Study(phantoms.STRUCTURES["cardiac"], [site(s) for s in seen], [site(s) for s in unseen])


def run_miniature(gen: SMDSetup, arms: ArmSetup, schedule: Schedule, seen: list[str], unseen: list[str],
                  n_train: int, n_test: int) -> SmgRun:
    """The protocol on the phantom sites."""
    return run_all(gen, arms, schedule, make_study(seen, unseen, n_train, n_test, gen.size))
