"""Jobs in worker processes: small models train faster as several one-thread processes than as one process with
several threads (two cores, OpenMP contention)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from replbook.progress import progress


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes (fork would copy torch's thread pools and can deadlock)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def in_workers(jobs: list[tuple], target: Callable, workers: int, threads: int, desc: str | None = None) -> list[Any]:
    """Run ``target(*job, threads)`` for every job: in this process when ``workers`` is 1, else in that many spawned
    processes with ``threads`` torch threads each. Small models run faster as several one-thread processes than as
    one process with several threads. ``desc`` shows a progress bar over the jobs as they finish."""
    if workers == 1:
        torch.set_num_threads(threads)
        return [target(*job, threads) for job in (progress(jobs, desc=desc, leave=False) if desc else jobs)]
    with spawn_pool(min(workers, len(jobs))) as pool:
        futures = [pool.submit(target, *job, threads) for job in jobs]
        if desc:
            for _ in progress(as_completed(futures), total=len(futures), desc=desc, leave=False):
                pass
        return [f.result() for f in futures]
