"""The CGR miniature (``smoke``/``cpu``): three procedural tasks (:mod:`replbook.data.phantoms`: cardiac-like,
fundus-like, prostate-like), one grey channel, one fixed draw of data; the protocol of :mod:`.common`."""

from __future__ import annotations

from replbook.data import phantoms
from replbook.experiments.cgr.common import CgrRun, GeneratorSetup, Schedule, SegmenterSetup, Task, run_all

#: The draw of phantoms is fixed (the seeds vary models, batches and replay noise), so every arm sees the same data.
DATA_SEED = 0


def make_tasks(order: list[str], n_train: int, n_test: int, size: int) -> list[Task]:
    """The tasks in ``order``, each with ``n_train`` training and ``n_test`` test phantoms of side ``size``; local
    labels are placed in the global label space by CGR's own order (cardiac → fundus → prostate) whatever the order
    of arrival."""
    tasks = []
    for name in order:
        images, labels = phantoms.render(name, n_train + n_test, size, DATA_SEED)
        n = n_train
        tasks.append(Task(name, phantoms.STRUCTURES[name], phantoms.GLOBAL_OFFSET[name], images[:n], labels[:n],
                          images[n:], labels[n:]))
    return tasks


def run_miniature(gen: GeneratorSetup, seg: SegmenterSetup, schedule: Schedule, order: list[str], n_train: int,
                  n_test: int) -> CgrRun:
    return run_all(gen, seg, schedule, make_tasks(order, n_train, n_test, gen.size))
