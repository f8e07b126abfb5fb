"""The CGR miniature (``smoke``/``cpu``): three procedural tasks (:mod:`replbook.data.phantoms`: cardiac-like,
fundus-like, prostate-like), one grey channel, one fixed draw of data; the protocol of :mod:`.common`."""

from __future__ import annotations

from typing import Any

from replbook.data import phantoms
from replbook.experiments.cgr.common import Task, run_all

#: The draw of phantoms is fixed (the seeds vary models, batches and replay noise), so every arm sees the same data.
DATA_SEED = 0


def make_tasks(p: dict[str, Any]) -> list[Task]:
    """The tasks in ``p["order"]``, each with ``n_train`` training and ``n_test`` test phantoms; local labels are
    placed in the global label space by CGR's own order (cardiac → fundus → prostate) whatever the order of arrival."""
    tasks = []
    for name in p["order"]:
        images, labels = phantoms.render(name, p["n_train"] + p["n_test"], p["size"], DATA_SEED)
        n = p["n_train"]
        tasks.append(Task(name, phantoms.STRUCTURES[name], phantoms.GLOBAL_OFFSET[name], images[:n], labels[:n],
                          images[n:], labels[n:]))
    return tasks


def run_miniature(p: dict[str, Any]) -> dict[str, Any]:
    return run_all(p, make_tasks(p))
