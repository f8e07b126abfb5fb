"""Compute once, render many: a chapter's results, computed once per compute key and saved as data.

``compute(slug, params)`` returns the chapter's results (its results type, a :class:`~replbook.codec.ResultsData`
dataclass): loaded when a saved copy carries the same **compute key**, otherwise computed by the chapter's
``run(params)`` and saved. The key covers

- the resolved parameters,
- the sha256 of the manifests of the assets the profile reads (the manifests, not the files: the key can be computed
  on a machine without the assets) and of the small files the chapter lists in ``DATA_FILES``,
- the digest of the chapter's compute code (:func:`replbook.codekey.compute_modules`: the static import closure of
  ``replbook.experiments.<slug>`` without ``report.py`` and the presentation modules, docstrings and comments
  ignored).

Package versions are recorded beside the results, not keyed.

Where results live:

- ``results/<slug>/<profile>.json`` + ``.npz``: the book's, at a profile's own defaults. Only ``replbook build`` and
  ``replbook run`` at a profile's defaults write them (they set ``REPLBOOK_WRITE_BOOK=1``);
- ``runs/<slug>/<key12>/results.json`` + ``.npz``: every other run (other parameters, plain papermill), so a
  researcher's rerun never touches the book.

With ``REPLBOOK_RENDER_ONLY=1`` (rendering a page), a miss raises :class:`ResultsMissing` instead of computing.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from replbook import codekey
from replbook.assets import load_manifest, manifests_dir, sha256_file
from replbook.assets import resolve as resolve_asset
from replbook.cache import RENDER_ONLY_ENV, RenderOnly, render_only
from replbook.paths import project_root
from replbook.record import collect_record

WRITE_BOOK_ENV = "REPLBOOK_WRITE_BOOK"
FORMAT = 1


class ResultsMissing(RenderOnly):
    """No saved results carry the compute key, and computing is not allowed here (render-only)."""


def chapter_module(slug: str) -> Any:
    return importlib.import_module(codekey.chapter_package(slug))


# --------------------------------------------------------------------------------------------------- the key


@dataclass(frozen=True)
class ComputeKey:
    """What a chapter's results depend on, and its sha256 (``value``)."""

    params: dict[str, Any]
    assets: dict[str, str]
    files: dict[str, str]
    code: str
    modules: tuple[str, ...]

    @property
    def value(self) -> str:
        payload = {"params": self.params, "assets": self.assets, "files": self.files, "code": self.code}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "params": self.params, "assets": self.assets, "files": self.files,
                "code": self.code, "modules": list(self.modules)}


def _manifest_sha(name: str) -> str:
    path = manifests_dir() / f"{name}.yaml"
    if not path.exists():
        load_manifest(name)  # raises the asset module's clear error
    return sha256_file(path)


def compute_key(slug: str, params: dict[str, Any]) -> ComputeKey:
    """The compute key of chapter ``slug`` at the resolved ``params``."""
    module = chapter_module(slug)
    assets = {name: _manifest_sha(name) for name in module.PARAMS.assets_for(params)}
    files = {}
    for rel in getattr(module, "DATA_FILES", ()):
        path = project_root() / rel
        if not path.exists():
            raise FileNotFoundError(f"{slug} lists {rel} in DATA_FILES, but {path} does not exist.")
        files[rel] = sha256_file(path)
    modules = tuple(codekey.compute_modules(slug))
    keyed = json.loads(json.dumps(params, default=str))
    if keyed.get("device") == "auto":  # what "auto" picks decides the numbers (CUDA or CPU, bf16 or fp32)
        import torch

        keyed["device"] = f"auto:{'cuda' if torch.cuda.is_available() else 'cpu'}"
    return ComputeKey(keyed, assets, files, codekey.digest(modules), modules)


# --------------------------------------------------------------------------------------------------- where


def book_path(slug: str, profile: str) -> Path:
    """``results/<slug>/<profile>.json``: the book's results at a profile's defaults."""
    return project_root() / "results" / slug / f"{profile}.json"


def run_path(slug: str, key: str) -> Path:
    """``runs/<slug>/<key12>/results.json``: a run with other parameters (or outside the build)."""
    return project_root() / "runs" / slug / key[:12] / "results.json"


def arrays_path(path: Path) -> Path:
    return path.with_suffix(".npz")


def claims_path(path: Path) -> Path:
    """Where a page writes its claims: ``<profile>.claims.json`` beside book results, ``claims.json`` in a run."""
    return path.with_name(path.stem + ".claims.json") if path.parent.parent.name == "results" \
        else path.with_name("claims.json")


def is_profile_default(slug: str, params: dict[str, Any]) -> bool:
    from replbook.profiles import resolve

    spec = chapter_module(slug).PARAMS
    return params.get("profile") in spec.defaults and \
        dict(params) == resolve(spec, params["profile"], check_assets=False)


def writes_book_asked() -> bool:
    """``REPLBOOK_WRITE_BOOK`` is set: the caller (the build, ``replbook run``/``compute --book``) asks for the
    book's results."""
    return os.environ.get(WRITE_BOOK_ENV, "") not in ("", "0")


def writes_book(slug: str, params: dict[str, Any]) -> bool:
    """Whether a computation of ``params`` goes into ``results/``: asked for (``REPLBOOK_WRITE_BOOK=1``, set by
    ``replbook build`` and ``replbook run`` at a profile's defaults) and at the profile's own defaults."""
    return writes_book_asked() and is_profile_default(slug, params)


def read_header(path: Path) -> dict[str, Any] | None:
    """A saved results file without its results (key, record, arrays' checksum), or None if absent or unreadable."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    saved.pop("results", None)
    return saved


def stored_key(path: Path) -> str | None:
    header = read_header(path)
    return None if header is None else header.get("compute_key", {}).get("value")


def locate(slug: str, params: dict[str, Any], key: str | None = None) -> Path | None:
    """The saved results of ``params`` (book first, then the run folder) whose key matches, or None."""
    key = key or compute_key(slug, params).value
    for path in (book_path(slug, params["profile"]), run_path(slug, key)):
        if stored_key(path) == key:
            return path
    return None


def destination(slug: str, params: dict[str, Any], key: str) -> Path:
    """Where results of ``params`` are saved: the book's file when :func:`writes_book`, else the run folder."""
    return book_path(slug, params["profile"]) if writes_book(slug, params) else run_path(slug, key)


# --------------------------------------------------------------------------------------------------- load / save


def files_sha256(path: Path) -> str:
    """sha256 over a saved results JSON and its arrays: what a page's stamp records."""
    h = hashlib.sha256(sha256_file(path).encode())
    if arrays_path(path).exists():
        h.update(sha256_file(arrays_path(path)).encode())
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the results from other readers
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save(path: Path, results: Any, key: ComputeKey, slug: str, record: dict[str, Any]) -> Path:
    """Write ``results`` (a ResultsData) as ``path`` (JSON) and its arrays beside it (``.npz``)."""
    data, arrays = results.to_data()
    npz = arrays_path(path)

    def write_arrays(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    _atomic_write(npz, write_arrays)
    doc = {"format": FORMAT, "slug": slug, "profile": key.params.get("profile"), "type": type(results).__name__,
           "compute_key": key.as_dict(), "record": record,
           "arrays": {"file": npz.name, "sha256": sha256_file(npz), "count": len(arrays)}, "results": data}
    text = json.dumps(doc, indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def load(path: Path, results_type: type) -> Any:
    """The results saved at ``path``, its arrays verified against the checksum in the JSON."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    npz = arrays_path(path)
    if not npz.exists():
        raise ResultsMissing(f"{path} names its arrays {npz.name}, which is missing; recompute the chapter.")
    if sha256_file(npz) != doc["arrays"]["sha256"]:
        raise ResultsMissing(f"{npz} does not match the sha256 recorded in {path.name}: it was altered or "
                             f"belongs to another run; recompute the chapter.")
    with np.load(npz, allow_pickle=False) as f:
        arrays = {name: f[name] for name in f.files}
    return results_type.from_data(doc["results"], arrays)


def find(slug: str, params: dict[str, Any], key: str) -> Path | None:
    """The saved results :func:`compute` would load: when the book's results are wanted (:func:`writes_book`), only
    the book's file (a matching copy in the run folder is promoted to it); otherwise :func:`locate`."""
    if not writes_book(slug, params):
        return locate(slug, params, key)
    book = book_path(slug, params["profile"])
    if stored_key(book) == key:
        return book
    run = run_path(slug, key)
    if stored_key(run) == key and arrays_path(run).exists():  # computed outside the build at the same defaults
        _atomic_write(arrays_path(book), lambda tmp: shutil.copyfile(arrays_path(run), tmp))
        _atomic_write(book, lambda tmp: shutil.copyfile(run, tmp))
        return book
    return None


def compute(slug: str, params: dict[str, Any], force: bool = False) -> Any:
    """The results of chapter ``slug`` at ``params`` (resolved): loaded when saved under the same compute key,
    otherwise (or with ``force``) computed with the chapter's ``run(params)`` and saved (see the module docstring
    for where). Saved results whose arrays fail their checksum are recomputed (or, rendering, refused)."""
    module = chapter_module(slug)
    key = compute_key(slug, params)
    found = None if force else find(slug, params, key.value)
    if found is not None:
        try:
            return load(found, module.RESULTS)
        except ResultsMissing:
            if render_only():
                raise
    if render_only():
        book = book_path(slug, params["profile"])
        why = "no results saved" if not book.exists() else "the saved results were computed by other code or " \
                                                            "parameters (their compute key differs)"
        raise ResultsMissing(f"{slug} ({params['profile']}): {why}, and {RENDER_ONLY_ENV} is set, so nothing is "
                             f"computed; run `replbook build --only {slug}` (or unset {RENDER_ONLY_ENV}).")
    for asset in module.PARAMS.assets_for(params):  # validation happens before computing, never at render
        resolve_asset(asset)
    started = time.time()
    results = module.run(params)
    if not isinstance(results, module.RESULTS):
        raise TypeError(f"{slug}.run returned a {type(results).__name__}, not its results type "
                        f"{module.RESULTS.__name__}.")
    record = collect_record(started)
    save(destination(slug, params, key.value), results, key, slug, record)
    return results


def record_of(path: Path) -> dict[str, Any]:
    """The run record saved with the results at ``path`` (versions, commit, device, times)."""
    header = read_header(path)
    if header is None:
        raise ResultsMissing(f"no readable results at {path}.")
    return {**header["record"], "slug": header["slug"], "profile": header["profile"],
            "compute_key": header["compute_key"]["value"]}
