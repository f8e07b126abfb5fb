"""Where the project's folders are: the repository root, the cache, the results."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root: ``$REPLBOOK_ROOT`` if set, else the checkout that holds this package (src layout),
    else the first folder above the working directory that has a ``_toc.yml``."""
    if env := os.environ.get("REPLBOOK_ROOT"):
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").exists() and (here / "data_manifests").is_dir():
        return here
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "_toc.yml").exists():
            return folder
    raise RuntimeError("cannot find the project root; set REPLBOOK_ROOT to the repository folder.")


def cache_dir() -> Path:
    """``$REPLBOOK_CACHE`` or ``<root>/.cache/replbook``: generated assets and trained models, never committed."""
    folder = Path(os.environ.get("REPLBOOK_CACHE") or project_root() / ".cache" / "replbook")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def results_dir(slug: str) -> Path:
    folder = project_root() / "results" / slug
    folder.mkdir(parents=True, exist_ok=True)
    return folder
