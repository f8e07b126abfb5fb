"""Verdicts: the rules that turn an interval of ours and the paper's effect into one word of :data:`VERDICTS`.

A verdict comes from a rule the notebook writes down before its numbers. Every chapter uses the same vocabulary the
same way:

- *reproduced*: our interval excludes no effect, in the paper's direction, and its estimate reaches the paper's effect;
- *partly*: it excludes no effect in the paper's direction but the estimate stays below the paper's size (or the
  claim holds for some of the things it names but not all); never with a seed significantly against the claim;
- *not reproduced*: the interval excludes the paper's effect (and does not show the claim);
- *inconclusive*: the interval holds both no effect and the paper's effect (the reason says what scale would decide);
- *not comparable*: no like-for-like number exists (a toy model, an untranscribed value, an arm not run);
- *illustrated*: the claim follows from our own model or construction; shown, never counted as reproduced.

Each rule returns a :class:`Verdict` that records the rule as data (its kind, the estimate it read, the null and
the effect, the margin, the seeds and the parts), so a verdict can be re-derived from the claims file alone.

**Premises.** A claim tests a paper's mechanism only where the conditions that mechanism needs hold in the run: a
chapter states them as :class:`Premise` rows (``R1``, ``R2``, …: a quantity measured in the run and the bound it must
meet, written before the numbers), and each claim names the ids it needs. :func:`apply_premises` turns a claim whose
premise fails (or was not measured) into *not comparable*, naming the premise and its value; the row keeps its
estimate and its rule. A claim is *not comparable* exactly when a premise it needs does not hold or an arm it
compares was not run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from replbook.intervals import T_METHOD, Interval, t_half_width

VERDICTS = ("reproduced", "partly", "not reproduced", "inconclusive", "not comparable", "illustrated")
#: The rules: a directional effect, "no worse than" with a margin, a claim naming several things (all), one sentence
#: joined by "and" (conjunction), a claim our construction implies (illustrated), and none (a claim with no rule of
#: its own: not comparable through a premise or a missing arm).
KINDS = ("effect", "noninferior", "all", "conjunction", "illustrated", "none")
#: The order of the decided verdicts a conjunction takes the weakest of, and a cap lowers to.
STRENGTH = ("inconclusive", "partly", "reproduced")


@dataclass(frozen=True)
class Verdict:
    """A rule's outcome (one of :data:`VERDICTS`), the sentence that says why, and the rule as data: ``kind``
    (:data:`KINDS`), the ``estimate`` it read, ``null`` and ``effect`` (and whose effect it is), ``margin`` and
    ``higher_is_better`` for "no worse than", the per-seed intervals it read (``seeds``) and, for a claim that
    names several things, its ``parts`` (name → verdict)."""

    verdict: str
    reason: str
    kind: str = "effect"
    estimate: Interval | None = None
    null: float | None = None
    effect: float | None = None
    effect_of: str | None = None
    margin: float | None = None
    higher_is_better: bool | None = None
    seeds: tuple[Interval, ...] = ()
    parts: tuple[tuple[str, Verdict], ...] = ()
    at_most: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}.")
        if self.kind not in KINDS:
            raise ValueError(f"rule kind must be one of {KINDS}; got {self.kind!r}.")

    def with_note(self, note: str) -> Verdict:
        """The same verdict and rule, ``note`` appended to its reason (what a control or a reference level adds)."""
        return replace(self, reason=self.reason + note) if note else self

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("estimate", "seeds", "parts")}
        out["estimate"] = self.estimate.as_dict() if self.estimate is not None else None
        out["seeds"] = [s.as_dict() for s in self.seeds]
        out["parts"] = [{"name": name, **v.as_dict()} for name, v in self.parts]
        return out


def not_comparable(reason: str) -> Verdict:
    """A claim with no rule of its own here (kind ``none``): the premises or the arms it would need are missing."""
    return Verdict("not comparable", reason, kind="none")


def cap(verdict: Verdict, at_most: str, why: str) -> Verdict:
    """The verdict lowered to at most ``at_most`` (:data:`STRENGTH`: a reproduced claim becomes partly), with the
    cap recorded in the rule: e.g. where the reference that sets the effect does not show the claim itself."""
    if at_most not in STRENGTH:
        raise ValueError(f"a cap is one of {STRENGTH}; got {at_most!r}.")
    lowered = verdict.verdict
    if lowered in STRENGTH and STRENGTH.index(lowered) > STRENGTH.index(at_most):
        lowered = at_most
    reason = verdict.reason if lowered == verdict.verdict else f"{verdict.reason}; at most {at_most}: {why}"
    return replace(verdict, verdict=lowered, reason=reason, at_most=at_most)


def illustrated(reason: str) -> Verdict:
    """A claim our own model or construction implies: shown, never counted as reproduced."""
    return Verdict("illustrated", reason, kind="illustrated")


def _fmt(x: float) -> str:
    return f"{x:+.3g}"


def scale_to_decide(est: Interval, *thresholds: float) -> float:
    """How many times the sample (items or seeds) would have to grow, at the same centre and spread, for the
    interval ``est`` to exclude one of ``thresholds`` (no effect, the paper's effect, a margin): its half-width must
    fall below the distance from its centre to the farther threshold. A bootstrap half-width shrinks as 1/√n; a
    Student-t interval over n seeds also loses its t quantile's excess as n grows (t(0.975, 2) = 4.30 against 1.96),
    so for it the smallest n' that would do is solved for and n'/n returned."""
    centre, half = (est.lo + est.hi) / 2, (est.hi - est.lo) / 2
    needed = max(abs(centre - t) for t in thresholds)
    if needed == 0:
        return math.inf
    if est.method != T_METHOD or est.n < 2:
        return max(1.0, (half / needed) ** 2)
    sd = half / t_half_width(1.0, est.n, est.level)  # the seeds' spread behind the half-width
    n = est.n
    while t_half_width(sd, n, est.level) >= needed:
        n += 1
        if n > 10_000 * est.n:
            return math.inf
    return max(1.0, n / est.n)


def judge_effect(est: Interval, effect: float, null: float = 0.0, *, seeds: Sequence[Interval] = (),
                 what: str = "the difference", effect_name: str = "the paper's") -> Verdict:
    """The directional rule: a claim that the quantity moves from ``null`` towards ``effect`` (the paper's effect,
    or the smallest effect its words imply), judged on our interval ``est`` for it.

    reproduced: the interval excludes ``null`` on the paper's side and the estimate (``est.mean``) reaches
    ``effect``; partly: it excludes ``null`` but the estimate stays short of ``effect``; not reproduced: the interval
    excludes ``effect`` without excluding ``null`` on the paper's side; inconclusive: it holds both. ``seeds`` are
    per-seed intervals (a pooled interval holds the trained models fixed, so seeds can disagree with it): a seed
    significantly against the claim turns reproduced and partly into inconclusive, and a seed significantly for it
    turns not reproduced into inconclusive. ``effect_name`` says whose effect it is in the reason (e.g. "our" where
    the paper's number is not transcribed and the claim's words set the size).
    """
    lo, hi, estimate = est.lo, est.hi, est.mean
    rule = dict(kind="effect", estimate=est, null=null, effect=effect, effect_of=effect_name, seeds=tuple(seeds))
    if not all(map(math.isfinite, (lo, hi, effect, null))):
        return Verdict("inconclusive", f"no finite interval for {what}", **rule)
    if lo > hi:
        raise ValueError(f"interval bounds out of order: [{lo}, {hi}].")
    if effect == null:
        raise ValueError("the paper's effect must differ from no effect; use judge_noninferior for 'no worse'.")
    sign = 1.0 if effect > null else -1.0
    # in the claim's orientation: larger is more of the paper's effect
    low, high, centre = (lo, hi, estimate) if sign > 0 else (-hi, -lo, -estimate)
    eff, nul = sign * effect, sign * null

    # a seed without a finite interval cannot show it is not against the claim: it counts as against (its bounds
    # decide; a seed's own point value may be undefined where its resamples are not, e.g. a ratio over zero)
    bounded = [math.isfinite(s.lo) and math.isfinite(s.hi) for s in seeds]
    against = [s for s, ok in zip(seeds, bounded, strict=True) if not ok or (s.hi < null if sign > 0 else s.lo > null)]
    favour = [s for s, ok in zip(seeds, bounded, strict=True) if ok and (s.lo > null if sign > 0 else s.hi < null)]
    interval = f"{what} [{_fmt(lo)}, {_fmt(hi)}]"
    if low > nul:
        if against:
            return Verdict("inconclusive", f"{interval} excludes {_fmt(null)}, but {len(against)} of {len(seeds)} "
                                           f"seeds are significantly against the claim (or have no interval): more "
                                           f"seeds, or the reason they disagree, would decide it", **rule)
        if centre >= eff:
            return Verdict("reproduced", f"{interval} excludes {_fmt(null)} and its estimate {_fmt(estimate)} "
                                         f"reaches {effect_name} {_fmt(effect)}", **rule)
        return Verdict("partly", f"{interval} excludes {_fmt(null)} but its estimate {_fmt(estimate)} stays short "
                                 f"of {effect_name} {_fmt(effect)}", **rule)
    if high < eff:
        if favour:
            return Verdict("inconclusive", f"{interval} excludes {effect_name} {_fmt(effect)}, but {len(favour)} of "
                                           f"{len(seeds)} seeds are significantly for the claim: the seeds disagree, "
                                           f"and more seeds would decide it", **rule)
        return Verdict("not reproduced", f"{interval} excludes {effect_name} {_fmt(effect)}", **rule)
    k = scale_to_decide(est, effect, null)
    return Verdict("inconclusive", f"{interval} holds both {_fmt(null)} and {effect_name} {_fmt(effect)}; about "
                                   f"{k:.1f}× the sample would decide it", **rule)


def judge_noninferior(est: Interval, margin: float, *, higher_is_better: bool = True,
                      what: str = "the difference") -> Verdict:
    """A "no worse than" claim with margin δ = ``margin`` > 0 on the interval ``est`` of (ours − reference):
    reproduced if the whole interval lies above −δ (below +δ when lower is better), not reproduced if it lies
    entirely beyond −δ, inconclusive if it crosses −δ (so a wide interval cannot pass for "no worse")."""
    if not margin > 0:
        raise ValueError(f"the non-inferiority margin must be > 0; got {margin}.")
    lo, hi = est.lo, est.hi
    rule = dict(kind="noninferior", estimate=est, null=0.0, margin=margin, higher_is_better=higher_is_better)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Verdict("inconclusive", f"no finite interval for {what}", **rule)
    low, high = (lo, hi) if higher_is_better else (-hi, -lo)
    interval = f"{what} [{_fmt(lo)}, {_fmt(hi)}]"
    bound = f"{'−' if higher_is_better else '+'}{margin:g}"
    if low > -margin:
        return Verdict("reproduced", f"{interval} lies within the margin δ = {margin:g} (no worse than {bound})",
                       **rule)
    if high < -margin:
        return Verdict("not reproduced", f"{interval} lies beyond the margin {bound}: worse than allowed", **rule)
    k = scale_to_decide(est, -margin if higher_is_better else margin)
    return Verdict("inconclusive", f"{interval} crosses the margin {bound}; about {k:.1f}× the sample would "
                                   f"decide it", **rule)


def judge_all(parts: Mapping[str, Verdict]) -> Verdict:
    """A claim that names several things (two detectors, two benchmarks), from the verdict on each (name →
    verdict, in order): the common verdict when they agree; inconclusive when some part is undecided and none
    fails; partly when some hold (reproduced or partly) and others fail; not reproduced when none holds and one
    fails. The reason lists every part."""
    if not parts:
        raise ValueError("judge_all needs at least one part.")
    names = [v.verdict for v in parts.values()]
    text = "; ".join(f"{w}: {v.verdict} ({v.reason})" for w, v in parts.items())
    rule = dict(kind="all", parts=tuple(parts.items()))
    if len(set(names)) == 1:
        return Verdict(names[0], text, **rule)
    if "inconclusive" in names and "not reproduced" not in names:
        return Verdict("inconclusive", text, **rule)
    if any(n in ("reproduced", "partly") for n in names):
        return Verdict("partly", text, **rule)
    return Verdict("not reproduced" if "not reproduced" in names else "inconclusive", text, **rule)


def judge_conjunction(parts: Mapping[str, Verdict]) -> Verdict:
    """A claim stated as one sentence joined by "and" (a trade-off; "leads, and by more than"), from the verdict on
    each part (name → verdict, in order): not reproduced when any part is; not comparable when any part is; otherwise
    the weakest part's verdict (inconclusive before partly before reproduced). An illustrated part has no place in a
    claim that is tested."""
    if not parts:
        raise ValueError("judge_conjunction needs at least one part.")
    names = [v.verdict for v in parts.values()]
    if "illustrated" in names:
        raise ValueError("a conjunction cannot hold an illustrated part: judge that part as its own claim.")
    text = "; ".join(f"{w}: {v.verdict} ({v.reason})" for w, v in parts.items())
    rule = dict(kind="conjunction", parts=tuple(parts.items()))
    for failing in ("not reproduced", "not comparable"):
        if failing in names:
            return Verdict(failing, text, **rule)
    weakest = min(names, key=STRENGTH.index)
    return Verdict(weakest, text, **rule)


@dataclass(frozen=True)
class Premise:
    """A condition of the paper's mechanism, measured in the run: ``id`` (``R1``), what must hold (``text``), the
    bound in words (``required``), the ``measured`` value as shown, whether it ``holds`` (``None``: not measured in
    this run, which counts as not holding), where the value was read (``source``: the results field) and ``note``
    (e.g. that it reads a reference arm's level, or which issue will measure it)."""

    id: str
    text: str
    required: str
    measured: str
    holds: bool | None
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if not (self.id.startswith("R") and self.id[1:].replace("@", "").replace("%", "").replace(".", "")
                .replace("-", "").isalnum()):
            raise ValueError(f"premise id must look like 'R1'; got {self.id!r}.")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["from"] = out.pop("source")
        return out


def premise(pid: str, text: str, value: float | None, *, at_least: float | None = None,
            at_most: float | None = None, required: str | None = None, fmt: str = "{:.3g}", source: str = "",
            note: str = "") -> Premise:
    """A premise measured as ``value`` (``None``: not measured here) that must lie at or above ``at_least`` and/or
    at or below ``at_most``."""
    if at_least is None and at_most is None:
        raise ValueError("a premise needs a bound: at_least and/or at_most.")
    bounds = [f"≥ {fmt.format(at_least)}" if at_least is not None else "",
              f"≤ {fmt.format(at_most)}" if at_most is not None else ""]
    if value is None or not math.isfinite(value):
        return Premise(pid, text, required or " and ".join(b for b in bounds if b), "not measured", None, source,
                       note)
    holds = (at_least is None or value >= at_least) and (at_most is None or value <= at_most)
    return Premise(pid, text, required or " and ".join(b for b in bounds if b), fmt.format(value), bool(holds),
                   source, note)


def apply_premises(claims: Sequence[Claim], premises: Sequence[Premise]) -> list[Claim]:
    """Each claim whose premises (``Claim.premises``) do not all hold becomes *not comparable*: its reason names the
    premises and their measured values, and says what its rule gave; its estimate and rule stay in the row."""
    by_id = {p.id: p for p in premises}
    out = []
    for c in claims:
        unknown = [pid for pid in c.premises if pid not in by_id]
        if unknown:
            raise ValueError(f"claim {c.id} names premises {unknown} that the chapter does not state.")
        failing = [by_id[pid] for pid in c.premises if by_id[pid].holds is not True]
        if not failing:
            out.append(c)
            continue
        why = "; ".join(f"{p.id} ({p.text}) not measured in this run, required {p.required}" if p.holds is None else
                        f"{p.id} ({p.text}) fails: measured {p.measured}, required {p.required}" for p in failing)
        if c.verdict == "not comparable":  # not comparable already (an arm not run): the premises are named too
            out.append(replace(c, reason=f"{c.reason}; its premises do not hold either: {why}"))
            continue
        out.append(replace(c, verdict="not comparable",
                           reason=f"premise not met, so the run does not test the mechanism: {why}. The rule alone "
                                  f"would give {c.verdict}: {c.reason}"))
    return out


@dataclass(frozen=True)
class Claim:
    """One row of the "paper vs ours" table.

    ``id`` names the claim within its chapter (``C1``, ``C2a``: unique, it anchors the row), ``paper`` is the paper's
    value as text (``None`` prints "not transcribed"), ``source`` where it comes from (table/figure and its
    transcription status), ``ours`` our measured value as text (with its interval or spread), ``rule`` the verdict
    with its rule as data.
    """

    id: str
    claim: str
    paper: str | None
    source: str
    ours: str
    profile: str
    verdict: str
    reason: str
    rule: Verdict | None = None
    missing: tuple[str, ...] = field(default=())
    premises: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}.")
        if not self.id or not self.id.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"claim id must be a short word such as 'C1'; got {self.id!r}.")

    @classmethod
    def judged(cls, cid: str, statement: str, paper: str | None, source: str, ours: str, profile: str,
               verdict: Verdict, rule: str = "", missing: tuple[str, ...] = (),
               premises: tuple[str, ...] = ()) -> Claim:
        """A claim with its verdict; ``rule`` (the rule in words) opens the reason; ``premises`` are the ids of the
        chapter's premises it needs (:func:`apply_premises`)."""
        reason = f"{rule}; {verdict.reason}" if rule else verdict.reason
        return cls(cid, statement, paper, source, ours, profile, verdict.verdict, reason, verdict, tuple(missing),
                   tuple(premises))

    @property
    def anchor(self) -> str:
        """The HTML id of the claim's row on its chapter page."""
        return f"claim-{self.id.lower()}"

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "rule"}
        out["rule"] = self.rule.as_dict() if self.rule is not None else None
        out["missing"] = list(self.missing)
        out["premises"] = list(self.premises)
        return out


class ClaimSheet:
    """A chapter's claims as they are judged. ``table`` maps each claim id to (statement, the paper's wording, its
    source); :meth:`add` appends a judged claim, :meth:`missing` a "not comparable" one when the arms the claim
    compares were not run."""

    def __init__(self, table: Mapping[str, tuple[str, str | None, str]], profile: str, arms: Sequence[str] = ()):
        self.table, self.profile, self.arms = table, profile, list(arms)
        self.claims: list[Claim] = []

    def add(self, cid: str, ours: str, verdict: Verdict, rule: str = "", premises: tuple[str, ...] = ()) -> Claim:
        """Record claim ``cid`` with our value ``ours`` and its ``verdict``; ``rule`` (the rule in words) opens the
        reason; ``premises`` are the ids it needs."""
        statement, paper, source = self.table[cid]
        claim = Claim.judged(cid, statement, paper, source, ours, self.profile, verdict, rule, premises=premises)
        self.claims.append(claim)
        return claim

    def missing(self, cid: str, *needed: str, premises: tuple[str, ...] = ()) -> bool:
        """True (and the claim recorded as not comparable) when an arm in ``needed`` was not run."""
        absent = tuple(a for a in needed if a not in self.arms)
        if not absent:
            return False
        statement, paper, source = self.table[cid]
        v = not_comparable("the arms this claim compares were not run; add them to 'arms'")
        self.claims.append(Claim.judged(cid, statement, paper, source, f"arms {', '.join(needed)} not all run",
                                        self.profile, v, missing=absent, premises=premises))
        return True
