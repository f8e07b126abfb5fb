"""The chapter record: the "paper vs ours" claims table and ``results/<slug>/<profile>.json``.

Verdicts come from rules a notebook writes down before its numbers; this module only carries them, checks that each
verdict is one of :data:`VERDICTS`, and formats the table every chapter ends with.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from replbook.paths import project_root, results_dir

VERDICTS = ("reproduced", "partly", "not reproduced", "not comparable")

#: Packages whose versions every record carries.
RECORDED_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "transformers", "pandas", "matplotlib", "replbook")


@dataclass(frozen=True)
class Claim:
    """One row of the "paper vs ours" table.

    ``paper`` is the paper's value as text (``None`` prints "not transcribed"), ``source`` where it comes from
    (table/figure and its transcription status), ``ours`` our measured value as text (with its interval or spread).
    """

    claim: str
    paper: str | None
    source: str
    ours: str
    profile: str
    verdict: str
    reason: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}.")


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    """The "paper vs ours" table, one row per claim, with the columns of the chapter contract."""
    rows = [
        {
            "claim": c.claim,
            "paper": c.paper if c.paper is not None else "not transcribed",
            "source": c.source,
            "ours": c.ours,
            "profile": c.profile,
            "verdict": c.verdict,
            "reason": c.reason,
        }
        for c in claims
    ]
    return pd.DataFrame(rows, columns=["claim", "paper", "source", "ours", "profile", "verdict", "reason"])


def style_claims(table: pd.DataFrame):
    """The claims table as a styled HTML table (verdicts coloured), class ``claims-table`` for tests and CSS."""
    colours = {"reproduced": "#d4edda", "partly": "#fff3cd", "not reproduced": "#f8d7da", "not comparable": "#e2e3e5"}
    return (
        table.style.hide(axis="index")
        .map(lambda v: f"background-color: {colours.get(v, '')}", subset=["verdict"])
        .set_table_attributes('class="claims-table"')
    )


def glue_claims(claims: list[Claim], key: str = "claims_table") -> pd.DataFrame:
    """Display the claims table and glue it under ``key`` for the book's prose."""
    from myst_nb import glue

    table = claims_table(claims)
    glue(key, style_claims(table), display=True)
    return table


def format_ci(value: float, lo: float, hi: float, digits: int = 3) -> str:
    """``0.812 [0.790, 0.834]``."""
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _git_commit(root: Path) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "notebooks"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _device() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


def _jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunRecorder:
    """Starts the wall clock when a chapter starts; :meth:`write` saves ``results/<slug>/<profile>.json``."""

    def __init__(self, slug: str, params: dict[str, Any]):
        self.slug = slug
        self.params = dict(params)
        self.started = time.time()

    def write(self, metrics: dict[str, Any], claims: list[Claim], seeds: list[int]) -> Path:
        record = {
            "slug": self.slug,
            "profile": self.params.get("profile"),
            "parameters": self.params,
            "seeds": list(seeds),
            "versions": _versions(),
            "git_commit": _git_commit(project_root()),
            "device": _device(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "wall_time_s": round(time.time() - self.started, 2),
            "metrics": metrics,
            "claims": [asdict(c) for c in claims],
        }
        path = results_dir(self.slug) / f"{self.params.get('profile', 'custom')}.json"
        tmp = path.with_suffix(".json.partial")
        tmp.write_text(json.dumps(_jsonable(record), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path
