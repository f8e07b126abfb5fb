"""The run record: what computed a chapter's results (package versions, git commit, device, load, wall time).

:func:`collect_record` is called by :func:`replbook.results.compute` when a computation ends, and its output is saved
beside the results; the page shows it as the collapsed "Run record" (:func:`replbook.page.run_record`).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions every record carries.
RECORDED_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "transformers", "diffusers", "peft", "flwr",
                     "pandas", "matplotlib", "replbook")


def git_commit(root: Path | None = None) -> str:
    """The commit of the checkout that holds this package's code (``root``: another checkout), with ``+dirty`` when
    its ``src`` or ``notebooks`` have uncommitted changes."""
    root = root or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "notebooks"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def collect_record(started: float) -> dict[str, Any]:
    """The record of a computation that started at ``started`` (``time.time()``) and ends now."""
    return {"versions": versions(), "git_commit": git_commit(), "device": device(), "started": utc(started),
            "compute_wall_s": round(time.time() - started, 2)}
