"""Every verdict of every chapter, re-derived from the rule it records, by an oracle of this test's own (not the
verdict module): the smoke claims (from the session's smoke results) and the committed cpu claims. Each estimate is
checked against its ``from`` field in the saved results, and "not comparable" is checked in both directions: a claim
is not comparable exactly when a premise it needs does not hold or an arm it compares was not run."""

import ast
import importlib
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from replbook import results as saved
from replbook.chapters import chapter_params, landed_chapters
from replbook.profiles import resolve

ROOT = Path(__file__).resolve().parents[1]
SLUGS = [c.slug for c in landed_chapters()]
DECIDED = ("inconclusive", "partly", "reproduced")


# ---------------------------------------------------------------------------------------------------- the oracle


def _effect(rule: dict) -> str:
    est, null, effect = rule["estimate"], rule["null"], rule["effect"]
    lo, hi, mean = est["lo"], est["hi"], est["mean"]
    if any(v is None or not math.isfinite(v) for v in (lo, hi)):
        return "inconclusive"
    up = effect > null  # flip a claimed decrease into an increase
    lo, hi, mean, null, effect = (lo, hi, mean, null, effect) if up else (-hi, -lo, -mean, -null, -effect)
    seeds = [(s["lo"], s["hi"]) if up else (-s["hi"], -s["lo"]) for s in rule["seeds"]]
    finite = [s for s in seeds if all(v is not None and math.isfinite(v) for v in s)]
    n_against = len(seeds) - len(finite) + sum(h < null for _, h in finite)
    n_for = sum(lo_ > null for lo_, _ in finite)
    if lo > null:
        if n_against:
            return "inconclusive"
        return "reproduced" if mean >= effect else "partly"
    if hi < effect:
        return "inconclusive" if n_for else "not reproduced"
    return "inconclusive"


def _noninferior(rule: dict) -> str:
    est, margin = rule["estimate"], rule["margin"]
    lo, hi = est["lo"], est["hi"]
    if any(v is None or not math.isfinite(v) for v in (lo, hi)):
        return "inconclusive"
    worst, best = (lo, hi) if rule["higher_is_better"] else (-hi, -lo)
    if worst > -margin:
        return "reproduced"
    if best < -margin:
        return "not reproduced"
    return "inconclusive"


def derive(rule: dict) -> str | None:
    """The verdict a rule gives, from its recorded fields only (None: the rule has none of its own)."""
    kind = rule["kind"]
    if kind == "none":
        return None
    if kind == "illustrated":
        return "illustrated"
    if kind == "effect":
        verdict = _effect(rule)
    elif kind == "noninferior":
        verdict = _noninferior(rule)
    else:
        parts = [derive(p) or "not comparable" for p in rule["parts"]]
        assert parts, "a combined rule without parts"
        if kind == "conjunction":
            assert "illustrated" not in parts
            verdict = next((v for v in ("not reproduced", "not comparable") if v in parts), None) \
                or min(parts, key=DECIDED.index)
        elif kind == "all":
            if len(set(parts)) == 1:
                verdict = parts[0]
            elif "inconclusive" in parts and "not reproduced" not in parts:
                verdict = "inconclusive"
            elif {"reproduced", "partly"} & set(parts):
                verdict = "partly"
            else:
                verdict = "not reproduced" if "not reproduced" in parts else "inconclusive"
        else:
            raise AssertionError(f"unknown rule kind {kind!r}")
    cap = rule.get("at_most")
    if cap and verdict in DECIDED and DECIDED.index(verdict) > DECIDED.index(cap):
        verdict = cap
    return verdict


def expected(claim: dict, premises: dict[str, dict]) -> str:
    """What the rules say the claim's verdict is: not comparable where a premise it needs does not hold or an arm it
    compares was not run; otherwise its rule's verdict."""
    if claim["missing"] or any(premises[pid]["holds"] is not True for pid in claim["premises"]):
        return "not comparable"
    verdict = derive(claim["rule"])
    assert verdict is not None, f"{claim['id']} has no rule and nothing makes it not comparable"
    return verdict


# ---------------------------------------------------------------------------------------------------- `from`


class Many(list):
    """The values a ``[:]`` in a path ranges over (seeds, items, arms)."""


def _index(value, key):
    if isinstance(value, Many):
        return Many(_index(v, key) for v in value)
    if isinstance(key, slice):
        return Many(value.values() if isinstance(value, dict) else value)
    return value[key]


def _attr(value, name):
    if isinstance(value, Many):
        return Many(_attr(v, name) for v in value)
    return value[name] if isinstance(value, dict) else getattr(value, name)


FUNCTIONS = {"mean": np.mean, "median": np.median, "max": np.max, "min": np.min, "sum": np.sum, "log": np.log,
             "abs": np.abs}


def evaluate(text: str, results) -> object:
    """A ``from`` path or expression on the saved results: attribute and key access, ``[:]`` over every element,
    arithmetic and a few reductions (mean, median, max, min, sum, log, abs)."""
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Name):
            return getattr(results, node.id)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Attribute):
            return _attr(walk(node.value), node.attr)
        if isinstance(node, ast.Subscript):
            key = slice(None) if isinstance(node.slice, ast.Slice) else walk(node.slice)
            return _index(walk(node.value), key)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -np.asarray(walk(node.operand), dtype=float)
        if isinstance(node, ast.BinOp):
            a, b = (np.asarray(walk(x), dtype=float) for x in (node.left, node.right))
            ops = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
            return ops[type(node.op)](a, b)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in FUNCTIONS:
            args = [np.asarray(walk(a), dtype=float) for a in node.args]
            return FUNCTIONS[node.func.id](*args)
        raise AssertionError(f"`from` {text!r}: {ast.dump(node)[:80]} is not allowed")
    return walk(ast.parse(text.strip(), mode="eval"))


def check_from(estimate: dict, results, where: str) -> None:
    """``from`` is either ``= expression`` whose value is the estimate's mean, or paths (``;``-separated) that must
    exist in the results, followed by ``|`` and how the estimate is computed from them."""
    text = estimate.get("from") or ""
    assert text, f"{where}: the estimate names no results field (`from`)"
    if text.startswith("="):
        value = float(evaluate(text[1:], results))
        assert value == pytest.approx(estimate["mean"], rel=1e-9, abs=1e-12), \
            f"{where}: the estimate {estimate['mean']} is not its `from` {text} = {value}"
        return
    paths = text.split("|", 1)[0]
    for path in paths.split(";"):
        evaluate(path, results)


def estimates(rule: dict, where: str):
    if rule.get("estimate"):
        yield rule["estimate"], where
    for part in rule.get("parts", []):
        yield from estimates(part, f"{where} / {part['name']}")


# ---------------------------------------------------------------------------------------------------- the claims


def chapter_claims(slug: str, profile: str, path: Path):
    """(results, premises by id, claims as dicts) that today's report draws from the results saved at ``path``."""
    module = saved.chapter_module(slug)
    report = importlib.import_module(f"replbook.experiments.{slug}.report")
    params = resolve(chapter_params(slug), profile, check_assets=False)
    results = saved.load(path, module.RESULTS)
    premises = {p.id: p.as_dict() for p in report.premises(results, params)}
    return results, premises, [c.as_dict() for c in report.claims(results, params)]


def _cases():
    for slug in SLUGS:
        yield pytest.param(slug, "smoke", id=f"{slug}-smoke")
        yield pytest.param(slug, "cpu", id=f"{slug}-cpu")


@pytest.mark.parametrize("slug, profile", list(_cases()))
def test_every_verdict_follows_from_its_recorded_rule_and_premises(slug, profile):
    if profile == "smoke":
        from conftest import ensure_smoke_results

        path = ensure_smoke_results(slug) / slug / "smoke.json"
    else:
        path = ROOT / "results" / slug / "cpu.json"
        if saved.stored_key(path) != saved.compute_key(slug, resolve(chapter_params(slug), "cpu",
                                                                      check_assets=False)).value:
            pytest.skip(f"results/{slug}/cpu.json is compute-stale (see tests/test_committed_results.py)")
    results, premises, claims = chapter_claims(slug, profile, path)
    method_chapter = "method" in next(c.kind for c in landed_chapters() if c.slug == slug)
    for claim in claims:
        where = f"{slug}/{profile} {claim['id']}"
        assert claim["verdict"] == expected(claim, premises), where
        if method_chapter and claim["rule"]["kind"] != "illustrated":
            assert claim["premises"], f"{where}: a method chapter's claim names the premises it needs"
        for estimate, at in estimates(claim["rule"], where):  # not comparable rows keep their estimates too
            check_from(estimate, results, at)


def test_the_oracle_on_hand_cases():
    iv = lambda lo, hi, mean=None: {"lo": lo, "hi": hi, "mean": (lo + hi) / 2 if mean is None else mean}  # noqa: E731
    eff = lambda lo, hi, effect=2.0, seeds=(): {"kind": "effect", "estimate": iv(lo, hi), "null": 0.0,  # noqa: E731
                                                "effect": effect, "seeds": [iv(*s) for s in seeds], "parts": []}
    assert derive(eff(1.5, 3.0)) == "reproduced" and derive(eff(0.5, 1.5)) == "partly"
    assert derive(eff(-1.0, 1.5)) == "not reproduced" and derive(eff(-1.0, 3.0)) == "inconclusive"
    assert derive(eff(1.5, 3.0, seeds=[(0.1, 0.9), (-0.9, -0.1)])) == "inconclusive"
    assert derive(eff(-3.5, -1.0, effect=-2.0)) == "reproduced"
    ni = {"kind": "noninferior", "estimate": iv(-0.5, 2.0), "margin": 1.0, "higher_is_better": True, "parts": []}
    assert derive(ni) == "reproduced"
    conj = {"kind": "conjunction", "parts": [eff(1.5, 3.0), eff(0.5, 1.5)]}
    assert derive(conj) == "partly"
    assert derive({"kind": "conjunction", "parts": [eff(1.5, 3.0), eff(-1.0, 1.5)]}) == "not reproduced"
    assert derive({"kind": "all", "parts": [eff(1.5, 3.0), eff(-1.0, 1.5)]}) == "partly"
    assert derive({**eff(1.5, 3.0), "at_most": "partly"}) == "partly"
    claim = {"missing": [], "premises": ["R1"], "rule": eff(1.5, 3.0)}
    assert expected(claim, {"R1": {"holds": False}}) == "not comparable"
    assert expected(claim, {"R1": {"holds": None}}) == "not comparable"
    assert expected(claim, {"R1": {"holds": True}}) == "reproduced"


def test_from_expressions_read_the_results():
    results = SimpleNamespace(seeds=[{"final": {"a": 0.5, "b": 0.25}}, {"final": {"a": 0.75, "b": 0.25}}])
    assert evaluate('mean(seeds[:]["final"]["a"] - seeds[:]["final"]["b"])', results) == pytest.approx(0.375)
    check_from({"mean": 37.5, "from": '=mean(seeds[:].final.a - seeds[:].final.b) * 100'}, results, "x")
    with pytest.raises(AssertionError, match="is not its `from`"):
        check_from({"mean": 0.1, "from": "=mean(seeds[:].final.a)"}, results, "x")
    with pytest.raises(KeyError):
        check_from({"mean": 0.1, "from": "seeds[:].final.c | not there"}, results, "x")
