"""The chapter record: verdicts, the "paper vs ours" claims table, the parameters and run-record panels, and
``results/<slug>/<profile>.json``.

A verdict comes from a rule the notebook writes down before its numbers. The rules share the helpers here, so that
every chapter uses the same vocabulary (:data:`VERDICTS`) the same way:

- *reproduced*: our interval excludes no effect, in the paper's direction, and its estimate reaches the paper's effect;
- *partly*: it excludes no effect in the paper's direction but the estimate stays below the paper's size (or the
  claim holds for some of the things it names but not all); never with a seed significantly against the claim;
- *not reproduced*: the interval excludes the paper's effect (and does not show the claim);
- *inconclusive*: the interval holds both no effect and the paper's effect (the reason says what scale would decide);
- *not comparable*: no like-for-like number exists (a toy model, an untranscribed value);
- *illustrated*: the claim follows from our own model or construction; shown, never counted as reproduced.
"""

from __future__ import annotations

import html
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from replbook.paths import project_root, results_dir

VERDICTS = ("reproduced", "partly", "not reproduced", "inconclusive", "not comparable", "illustrated")

#: The book's verdict palette: the claims tables and the verdict dashboard use these colours.
VERDICT_COLOURS = {"reproduced": "#b7e1c1", "partly": "#ffe08a", "not reproduced": "#f3a6ad",
                   "inconclusive": "#c9d7f2", "not comparable": "#dcdde0", "illustrated": "#e3cdf0"}

#: Packages whose versions every record carries.
RECORDED_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "transformers", "diffusers", "peft", "flwr",
                     "pandas", "matplotlib", "replbook")
#: The versions the run record at the end of each chapter shows.
RUN_RECORD_PACKAGES = ("torch", "transformers", "diffusers", "peft", "flwr")


@dataclass(frozen=True)
class Claim:
    """One row of the "paper vs ours" table.

    ``id`` names the claim within its chapter (``C1``, ``C2a``: unique, it anchors the row), ``paper`` is the paper's
    value as text (``None`` prints "not transcribed"), ``source`` where it comes from (table/figure and its
    transcription status), ``ours`` our measured value as text (with its interval or spread).
    """

    id: str
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
        if not self.id or not self.id.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"claim id must be a short word such as 'C1'; got {self.id!r}.")

    @property
    def anchor(self) -> str:
        """The HTML id of the claim's row on its chapter page."""
        return f"claim-{self.id.lower()}"


class ClaimSheet:
    """A chapter's claims as they are judged. ``table`` maps each claim id to (statement, the paper's wording, its
    source); :meth:`add` appends a judged claim, :meth:`missing` a "not comparable" one when the arms the claim
    compares were not run."""

    def __init__(self, table: dict[str, tuple[str, str | None, str]], profile: str, arms: Sequence[str]):
        self.table, self.profile, self.arms = table, profile, list(arms)
        self.claims: list[Claim] = []

    def add(self, cid: str, ours: str, verdict: str, reason: str) -> Claim:
        statement, paper, source = self.table[cid]
        claim = Claim(cid, statement, paper, source, ours, self.profile, verdict, reason)
        self.claims.append(claim)
        return claim

    def missing(self, cid: str, *needed: str) -> bool:
        """True (and the claim recorded as not comparable) when an arm in ``needed`` was not run."""
        if all(a in self.arms for a in needed):
            return False
        self.add(cid, f"arms {', '.join(needed)} not all run", "not comparable",
                 "the arms this claim compares were not run; add them to 'arms'")
        return True


# ----------------------------------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """A rule's outcome: one of :data:`VERDICTS` and the sentence that says why."""

    verdict: str
    reason: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}.")


def _fmt(x: float) -> str:
    return f"{x:+.3g}"


def scale_to_decide(lo: float, hi: float, *thresholds: float) -> float:
    """How many times the sample (items or seeds) would have to grow, at the same centre and spread, for the
    interval [lo, hi] to exclude one of ``thresholds`` (no effect, the paper's effect, a margin): its half-width
    must fall below the distance from its centre to the farther threshold, and it shrinks as 1/√n."""
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    needed = max(abs(centre - t) for t in thresholds)
    return math.inf if needed == 0 else max(1.0, (half / needed) ** 2)


def judge_effect(lo: float, hi: float, effect: float, null: float = 0.0, *,
                 seeds: Sequence[tuple[float, float]] = (), what: str = "the difference",
                 estimate: float | None = None, effect_name: str = "the paper's") -> Verdict:
    """The directional rule: a claim that the quantity moves from ``null`` towards ``effect`` (the paper's effect,
    or the smallest effect its words imply), judged on our interval [lo, hi] for it and its ``estimate`` (default:
    the interval's centre).

    reproduced: the interval excludes ``null`` on the paper's side and the estimate reaches ``effect``; partly: it
    excludes ``null`` but the estimate stays short of ``effect``; not reproduced: the interval excludes ``effect``
    without excluding ``null`` on the paper's side; inconclusive: it holds both. ``seeds`` are per-seed intervals
    (the pooled interval holds the trained models fixed, so seeds can disagree with it): a seed significantly
    against the claim turns reproduced and partly into inconclusive, and a seed significantly for it turns not
    reproduced into inconclusive. ``effect_name`` says whose effect it is in the reason (e.g. "our" where the paper's
    number is not transcribed and the claim's words set the size).
    """
    if not all(map(math.isfinite, (lo, hi, effect, null))):
        return Verdict("inconclusive", f"no finite interval for {what}")
    if lo > hi:
        raise ValueError(f"interval bounds out of order: [{lo}, {hi}].")
    if effect == null:
        raise ValueError("the paper's effect must differ from no effect; use judge_noninferior for 'no worse'.")
    estimate = (lo + hi) / 2 if estimate is None else estimate
    sign = 1.0 if effect > null else -1.0
    # in the claim's orientation: larger is more of the paper's effect
    low, high, centre = (lo, hi, estimate) if sign > 0 else (-hi, -lo, -estimate)
    eff, nul = sign * effect, sign * null

    # a seed without a finite interval cannot show it is not against the claim: it counts as against
    against = [s for s in seeds if not all(map(math.isfinite, s)) or (s[1] < null if sign > 0 else s[0] > null)]
    favour = [s for s in seeds if all(map(math.isfinite, s)) and (s[0] > null if sign > 0 else s[1] < null)]
    interval = f"{what} [{_fmt(lo)}, {_fmt(hi)}]"
    if low > nul:
        if against:
            return Verdict("inconclusive", f"{interval} excludes {_fmt(null)}, but {len(against)} of {len(seeds)} "
                                           f"seeds are significantly against the claim (or have no interval): more "
                                           f"seeds, or the reason they disagree, would decide it")
        if centre >= eff:
            return Verdict("reproduced", f"{interval} excludes {_fmt(null)} and its estimate {_fmt(estimate)} "
                                         f"reaches {effect_name} {_fmt(effect)}")
        return Verdict("partly", f"{interval} excludes {_fmt(null)} but its estimate {_fmt(estimate)} stays short "
                                 f"of {effect_name} {_fmt(effect)}")
    if high < eff:
        if favour:
            return Verdict("inconclusive", f"{interval} excludes {effect_name} {_fmt(effect)}, but {len(favour)} of "
                                           f"{len(seeds)} seeds are significantly for the claim: the seeds disagree, "
                                           f"and more seeds would decide it")
        return Verdict("not reproduced", f"{interval} excludes {effect_name} {_fmt(effect)}")
    k = scale_to_decide(lo, hi, effect, null)
    return Verdict("inconclusive", f"{interval} holds both {_fmt(null)} and {effect_name} {_fmt(effect)}; about "
                                   f"{k:.1f}× the sample would decide it")


def judge_noninferior(lo: float, hi: float, margin: float, *, higher_is_better: bool = True,
                      what: str = "the difference") -> Verdict:
    """A "no worse than" claim with margin δ = ``margin`` > 0 on the interval [lo, hi] of (ours − reference):
    reproduced if the whole interval lies above −δ (below +δ when lower is better), not reproduced if it lies
    entirely beyond −δ, inconclusive if it crosses −δ (so a wide interval cannot pass for "no worse")."""
    if not margin > 0:
        raise ValueError(f"the non-inferiority margin must be > 0; got {margin}.")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Verdict("inconclusive", f"no finite interval for {what}")
    low, high = (lo, hi) if higher_is_better else (-hi, -lo)
    interval = f"{what} [{_fmt(lo)}, {_fmt(hi)}]"
    bound = f"{'−' if higher_is_better else '+'}{margin:g}"
    if low > -margin:
        return Verdict("reproduced", f"{interval} lies within the margin δ = {margin:g} (no worse than {bound})")
    if high < -margin:
        return Verdict("not reproduced", f"{interval} lies beyond the margin {bound}: worse than allowed")
    k = scale_to_decide(lo, hi, -margin if higher_is_better else margin)
    return Verdict("inconclusive", f"{interval} crosses the margin {bound}; about {k:.1f}× the sample would "
                                   f"decide it")


def judge_all(verdicts: Sequence[Verdict], what: Sequence[str]) -> Verdict:
    """A claim that names several things (two detectors, two benchmarks), from the verdict on each: the common
    verdict when they agree; inconclusive when some part is undecided and none fails; partly when some hold
    (reproduced or partly) and others fail; not reproduced when none holds and one fails. The reason lists every
    part."""
    if not verdicts:
        raise ValueError("judge_all needs at least one part.")
    names = [v.verdict for v in verdicts]
    parts = "; ".join(f"{w}: {v.verdict} ({v.reason})" for w, v in zip(what, verdicts, strict=True))
    if len(set(names)) == 1:
        return Verdict(names[0], parts)
    if "inconclusive" in names and "not reproduced" not in names:
        return Verdict("inconclusive", parts)
    if any(n in ("reproduced", "partly") for n in names):
        return Verdict("partly", parts)
    return Verdict("not reproduced" if "not reproduced" in names else "inconclusive", parts)


# ----------------------------------------------------------------------------------------------------- tables


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    """The "paper vs ours" table, one row per claim, with the columns of the chapter contract."""
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claim ids must be unique within a chapter; got {ids}.")
    rows = [
        {
            "claim": f"{c.id}: {c.claim}",
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
        .map(lambda v: f"background-color: {VERDICT_COLOURS.get(v, '')}", subset=["verdict"])
        .set_table_attributes('class="claims-table"')
    )


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


def format_ci(value: float, lo: float, hi: float, digits: int = 3) -> str:
    """``0.812 [0.790, 0.834]``."""
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


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


def results_href(slug: str, profile: str) -> str:
    """The results JSON as the rendered chapter page links it (the build copies ``results/`` beside the pages)."""
    return f"../../results/{slug}/{profile}.json"


def run_record(path: Path) -> Any:
    """The collapsed "Run record" that ends a chapter, read from its results JSON: profile, commit, date, device,
    wall time, the versions of the libraries that matter, and a link to download the JSON."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    device = record["device"]
    where = device.get("cuda") or f"{device.get('processor')} CPU, {device.get('cpu_count')} cores"
    rows = {
        "profile": record["profile"],
        "git commit": record["git_commit"],
        "started (UTC)": record["started"],
        "device": f"{where} (torch threads {device.get('torch_threads')})",
        "wall time": f"{record['wall_time_s']:.0f} s",
        **{name: record["versions"].get(name, "not installed") for name in RUN_RECORD_PACKAGES},
    }
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    href = results_href(record["slug"], record["profile"])
    link = f'<p><a class="results-json" href="{href}" download>Download the results JSON</a> ({href})</p>'
    return _details(f"Run record: {record['profile']} profile, {record['wall_time_s']:.0f} s",
                    f'<table class="run-record">{body}</table>{link}')
