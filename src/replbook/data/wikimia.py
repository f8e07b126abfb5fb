"""WikiMIA (``swj0419/WikiMIA``): the Min-K%++ paper profile's benchmark, from the local cache or a jsonl file."""

from __future__ import annotations

import json

import numpy as np


def load_wikimia(dataset: str) -> tuple[list[str], np.ndarray]:
    """WikiMIA texts and labels (1 = member): a split name of ``swj0419/WikiMIA`` read through ``datasets`` from
    the local cache, or a local ``.jsonl`` file with fields ``input`` and ``label``."""
    if dataset.endswith(".jsonl"):
        rows = [json.loads(line) for line in open(dataset, encoding="utf-8") if line.strip()]
    else:
        from datasets import load_dataset

        rows = list(load_dataset("swj0419/WikiMIA", split=dataset))
    if not rows or any("input" not in r or "label" not in r for r in rows):
        raise ValueError(f"dataset {dataset!r}: every row needs the fields 'input' and 'label'.")
    return [r["input"] for r in rows], np.array([int(r["label"]) for r in rows])
