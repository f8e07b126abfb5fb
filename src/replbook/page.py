"""What every chapter page shows the same way: the claims table, the parameters and run-record panels, figure glue
and number formats.

A page renders from saved results (:func:`replbook.results.compute` loads them); :func:`record_claims` ends it: it
writes the page's claims beside the results (``<profile>.claims.json`` in the book, ``claims.json`` in a run
folder), where the verdict dashboard reads them, and shows the collapsed run record.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from replbook import results as saved
from replbook.intervals import Interval, signed_interval
from replbook.record import git_commit, utc
from replbook.verdicts import VERDICTS, Claim, Premise

__all__ = ["VERDICT_COLOURS", "claims_table", "style_claims", "glue_claims", "glue_placeholder_figures",
           "glue_premises", "premises_table", "parameters_panel", "run_record", "record_claims", "mean_sd",
           "signed_interval", "source_links", "Interval"]

#: The book's verdict palette: the claims tables and the verdict dashboard use these colours.
VERDICT_COLOURS = {"reproduced": "#b7e1c1", "partly": "#ffe08a", "not reproduced": "#f3a6ad",
                   "inconclusive": "#c9d7f2", "not comparable": "#dcdde0", "illustrated": "#e3cdf0"}
assert set(VERDICT_COLOURS) == set(VERDICTS)

#: Text on a verdict's (light) colour: dark in the theme's light and dark modes alike, so the cell stays readable.
INK = "#111111"

#: The versions the run record at the end of each chapter shows.
RUN_RECORD_PACKAGES = ("torch", "transformers", "diffusers", "peft", "flwr")


# ----------------------------------------------------------------------------------------------------- numbers


def mean_sd(values: Sequence[float] | np.ndarray, digits: int = 3, scale: float = 1.0) -> str:
    """``0.812 ± 0.010`` (mean ± sd over seeds, sd with n − 1); one value: ``0.812 (one seed)``."""
    x = np.asarray(values, dtype=np.float64) * scale
    if x.size == 0:
        return "no values"
    if x.size == 1:
        return f"{x[0]:.{digits}f} (one seed)"
    return f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}"


# ----------------------------------------------------------------------------------------------------- claims


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    """The "paper vs ours" table, one row per claim, with the columns of the chapter contract."""
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claim ids must be unique within a chapter; got {ids}.")
    rows = [{"claim": f"{c.id}: {c.claim}", "paper": c.paper if c.paper is not None else "not transcribed",
             "source": c.source, "ours": c.ours, "profile": c.profile, "verdict": c.verdict, "reason": c.reason}
            for c in claims]
    return pd.DataFrame(rows, columns=["claim", "paper", "source", "ours", "profile", "verdict", "reason"])


def style_claims(table: pd.DataFrame, anchors: Sequence[str] | None = None):
    """The claims table as a styled HTML table (verdicts coloured), class ``claims-table``; each claim cell carries
    its anchor (``id``) so that the verdict dashboard can link to the row."""
    anchors = list(anchors) if anchors is not None else [None] * len(table)
    claim_html = {i: (f'<span id="{a}">{html.escape(str(v))}</span>' if a else html.escape(str(v)))
                  for i, (v, a) in enumerate(zip(table["claim"], anchors, strict=True))}
    shown = table.copy()
    shown["claim"] = [claim_html[i] for i in range(len(table))]
    for col in shown.columns.drop("claim"):
        shown[col] = shown[col].map(lambda v: html.escape(str(v)))
    return (
        shown.style.hide(axis="index")
        .map(lambda v: f"background-color: {VERDICT_COLOURS.get(v, '')}; color: {INK}", subset=["verdict"])
        .set_table_attributes('class="claims-table"')
    )


#: Colours of a premise's state in the premises table.
PREMISE_COLOURS = {True: "#b7e1c1", False: "#f3a6ad", None: "#dcdde0"}


def premises_table(premises: Sequence[Premise]) -> pd.DataFrame:
    """The chapter's premises: id, premise, required, measured, holds (yes / no / not measured), where it is read."""
    ids = [p.id for p in premises]
    if len(set(ids)) != len(ids):
        raise ValueError(f"premise ids must be unique within a chapter; got {ids}.")
    holds = {True: "yes", False: "no", None: "not measured"}
    return pd.DataFrame([{"id": p.id, "premise": p.text, "required": p.required, "measured": p.measured,
                          "holds": holds[p.holds], "note": p.note} for p in premises],
                        columns=["id", "premise", "required", "measured", "holds", "note"])


def glue_premises(premises: Sequence[Premise], key: str = "premises_table") -> pd.DataFrame:
    """Display the premises table (class ``premises-table``, the state coloured) and glue it under ``key``."""
    from myst_nb import glue

    table = premises_table(premises)
    colour = {"yes": PREMISE_COLOURS[True], "no": PREMISE_COLOURS[False], "not measured": PREMISE_COLOURS[None]}
    shown = table.copy()
    for col in shown.columns:
        shown[col] = shown[col].map(lambda v: html.escape(str(v)))
    styled = (shown.style.hide(axis="index")
              .map(lambda v: f"background-color: {colour.get(v, '')}; color: {INK}", subset=["holds"])
              .set_table_attributes('class="premises-table"'))
    glue(key, styled, display=True)
    return table


def glue_claims(claims: list[Claim], key: str = "claims_table") -> pd.DataFrame:
    """Display the claims table and glue it under ``key`` for the book's prose."""
    from myst_nb import glue

    table = claims_table(claims)
    glue(key, style_claims(table, [c.anchor for c in claims]), display=True)
    return table


def glue_placeholder_figures(keys: Sequence[str], text: str) -> None:
    """Glue a small figure saying ``text`` under each key: a page whose section did not run (a switched-off
    parameter) still finds every figure its directives name, so the book builds."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    for key in keys:
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, text, ha="center")
        glue(key, fig, display=False)
        plt.close(fig)


# ----------------------------------------------------------------------------------------------------- panels


def _details(summary: str, body: str) -> Any:
    from IPython.display import HTML

    return HTML(f'<details class="replbook-panel"><summary>{html.escape(summary)}</summary>{body}</details>')


def parameters_panel(spec: Any, values: dict[str, Any]) -> Any:
    """The values this run used, one collapsed table (name, value, what it is), marking those that differ from the
    profile's defaults."""
    defaults = spec.defaults[values["profile"]]
    rows = []
    for p in spec.params:
        changed = values[p.name] != defaults[p.name]
        rows.append(f"<tr><td><code>{p.name}</code></td><td>{html.escape(str(values[p.name]))}"
                    f"{' <em>(set for this run)</em>' if changed else ''}</td><td>{html.escape(p.help)}</td></tr>")
    table = ('<table class="parameters-table"><thead><tr><th>parameter</th><th>value</th><th>what it is</th></tr>'
             f"</thead><tbody>{''.join(rows)}</tbody></table>")
    return _details(f"Parameters of this run (profile {values['profile']}; click to open)", table)


def files_href(slug: str, name: str) -> str:
    """A file the build publishes beside the pages for chapter ``slug`` (``_build/html/files/<slug>/<name>``), as a
    chapter page links it."""
    return f"../../files/{slug}/{name}"


def source_links(slug: str) -> Any:
    """The chapter's sources, one line under its title: the notebook that renders the page, the kernel modules it is
    about and the experiment package that computes its results (the build publishes them beside the pages)."""
    from IPython.display import HTML

    from replbook.chapters import chapter

    kernels = chapter(slug).kernels
    links = [f'<a href="{files_href(slug, f"{slug}.ipynb")}">notebooks/{slug}.ipynb</a> (this page)']
    links += [f'<a href="{files_href(slug, f"{k}.py")}">src/replbook/{k}.py</a>' for k in kernels]
    links.append(f'<a href="{files_href(slug, "experiment.zip")}">src/replbook/experiments/{slug}/</a> (zip)')
    return HTML(f'<p class="source-links">Source: {" · ".join(links)}. Results: the run record at the end of the '
                f"page links them.</p>")


def results_href(slug: str, profile: str) -> str:
    """The results JSON as the rendered chapter page links it (the build copies ``results/`` beside the pages)."""
    return f"../../results/{slug}/{profile}.json"


def run_record(slug: str, params: dict[str, Any]) -> Any:
    """The collapsed "Run record" that ends a chapter, read from its saved results: profile, compute key, commit,
    date, device, compute wall time, the versions of the libraries that matter, and a link to the results files."""
    path = saved.locate(slug, params)
    if path is None:
        raise saved.ResultsMissing(f"{slug}: no saved results for these parameters; compute them first.")
    record = saved.record_of(path)
    device = record["device"]
    where = device.get("cuda") or f"{device.get('processor')} CPU, {device.get('cpu_count')} cores"
    rows = {
        "profile": record["profile"],
        "compute key": record["compute_key"][:12],
        "computed at commit": record["git_commit"],
        "started (UTC)": record["started"],
        "device": f"{where} (torch threads {device.get('torch_threads')}, load {device.get('load_average_1m', '?')})",
        "compute wall time": f"{record['compute_wall_s']:.0f} s",
        "results sha256": saved.files_sha256(path)[:16],
        "rendered at commit": git_commit(),
        **{name: record["versions"].get(name, "not installed") for name in RUN_RECORD_PACKAGES},
    }
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    if path == saved.book_path(slug, params["profile"]):
        href = results_href(slug, params["profile"])
        link = (f'<p><a class="results-json" href="{href}" download>Download the results JSON</a> ({href}) and its '
                f'arrays (<a href="{href[:-5]}.npz" download>.npz</a>)</p>')
    else:
        link = f"<p>Results: <code>{html.escape(str(path))}</code></p>"
    return _details(f"Run record: {record['profile']} profile, computed in {record['compute_wall_s']:.0f} s",
                    f'<table class="run-record">{body}</table>{link}')


def record_claims(slug: str, params: dict[str, Any], claims: list[Claim], premises: Sequence[Premise]) -> Any:
    """End a page: write its ``claims`` and ``premises`` beside the saved results (with the render commit and time)
    for the verdict dashboard, and return the run-record panel. Beside the book's results only when the build renders
    the page (``REPLBOOK_WRITE_BOOK=1``); a run's claims go into its run folder; a page rendered from the book's
    results by anyone else (plain papermill, nbval) writes nothing."""
    path = saved.locate(slug, params)
    if path is None:
        raise saved.ResultsMissing(f"{slug}: no saved results for these parameters; compute them first.")
    if path == saved.book_path(slug, params["profile"]) and not saved.writes_book(slug, params):
        return run_record(slug, params)
    record = saved.record_of(path)
    doc = {"slug": slug, "profile": params["profile"], "compute_key": record["compute_key"],
           "results_sha256": saved.files_sha256(path), "computed_at": record["git_commit"],
           "compute_started": record["started"], "compute_wall_s": record["compute_wall_s"],
           "rendered_at": git_commit(), "rendered": utc(time.time()),
           "premises": [p.as_dict() for p in premises], "claims": [c.as_dict() for c in claims]}
    target = saved.claims_path(path)
    text = json.dumps(_finite(doc), indent=1, ensure_ascii=False, allow_nan=False, default=_plain) + "\n"
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return run_record(slug, params)


def _finite(value: Any) -> Any:
    """JSON has no NaN: a non-finite float (an interval of one seed) is written as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} into the claims file")


def read_claims(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
