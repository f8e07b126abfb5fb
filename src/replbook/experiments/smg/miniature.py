"""The SMG-Learning miniature (``smoke``/``cpu``): the cardiac-like phantom task of :mod:`replbook.data.phantoms`
rendered at six appearance "sites" (:data:`replbook.data.phantoms.SITES`); each site draws its own hearts. A
stand-in: no patient data, no real scanner."""

from __future__ import annotations

from typing import Any

from replbook.data import phantoms
from replbook.experiments.smg.protocol import Site, Study, run_all

#: The draw of phantoms is fixed (the seeds vary models, batches and replay noise), so every arm sees the same data.
DATA_SEED = 0


def make_study(p: dict[str, Any]) -> Study:
    """The sites of ``p["seen"]`` (in order) and ``p["unseen"]``, ``n_train`` + ``n_test`` phantoms each."""
    def site(name: str) -> Site:
        images, labels = phantoms.render_site(name, p["n_train"] + p["n_test"], p["size"], DATA_SEED)
        n = p["n_train"]
        return Site(name, phantoms.SITE_DESCRIPTIONS[name], images[:n], labels[:n], images[n:], labels[n:])

    return Study(phantoms.STRUCTURES["cardiac"], [site(s) for s in p["seen"]], [site(s) for s in p["unseen"]])


def run_miniature(p: dict[str, Any]) -> dict[str, Any]:
    return run_all(p, make_study(p))
