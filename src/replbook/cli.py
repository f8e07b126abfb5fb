"""The ``replbook`` command: list chapters, compute one, run one (compute and render), build the book, check the
assets."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from replbook.profiles import PROFILES

LISTED_PROFILES = ("smoke", "cpu")


def _parse_value(text: str) -> Any:
    """``-p`` values read as YAML, like papermill's ``-p``: ``5`` is an int, ``[0.1, 0.2]`` a list."""
    return yaml.safe_load(text)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {name: _parse_value(value) for name, value in args.param}
    if getattr(args, "params_json", None):
        values.update(json.loads(args.params_json))
    return values


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.1f}m"


def _cmd_list(_: argparse.Namespace) -> int:
    from replbook.build import state
    from replbook.chapters import CHAPTERS

    print(f"{'slug':<12} {'profile':<8} {'results':<9} {'compute':>8} {'page':<8} {'render':>7}  title")
    for ch in CHAPTERS:
        if not ch.landed:
            print(f"{ch.slug:<12} {'-':<8} {'pending':<9} {'-':>8} {'-':<8} {'-':>7}  {ch.title}")
            continue
        for i, profile in enumerate(LISTED_PROFILES):
            st = state(ch.slug, profile)
            compute = _seconds(st.compute_s) if st.compute_s is not None else f"~{ch.minutes[profile]:.1f}m"
            title = f"{ch.title} (arXiv {ch.arxiv})" if i == 0 else ""
            print(f"{ch.slug if i == 0 else '':<12} {profile:<8} {st.results:<9} {compute:>8} {st.page:<8} "
                  f"{_seconds(st.render_s):>7}  {title}")
    print("results: whether results/<slug>/<profile>.json carries the compute key of today's code and defaults "
          "(stale: it would recompute); page: whether book/chapters/<slug>.ipynb was rendered from those results "
          "by today's notebook and report. compute and render are the measured wall times; ~ marks a hand "
          "estimate where nothing was computed here (2 CPU cores).")
    return 0


def _cmd_stale(args: argparse.Namespace) -> int:
    from replbook.build import state
    from replbook.chapters import landed_chapters

    for ch in landed_chapters():
        if state(ch.slug, args.profile).results != "current":
            print(ch.slug)
    return 0


def _cmd_compute(args: argparse.Namespace) -> int:
    import time

    from replbook import results
    from replbook.chapters import chapter, chapter_params, landed_chapters
    from replbook.profiles import resolve

    slugs = [c.slug for c in landed_chapters()] if args.slug == ["all"] else args.slug
    if len(slugs) > 1 and (args.param or args.params_json):
        raise KeyError("parameters (-p) apply to one chapter at a time; name one chapter.")
    for slug in slugs:
        chapter(slug)
    if args.book:  # at a profile's defaults, into the book's results (the build and `make smoke-results` ask)
        os.environ[results.WRITE_BOOK_ENV] = "1"
    if len(slugs) > 1:  # each chapter in a fresh interpreter (threads, Flower, worker pools)
        from replbook.build import compute_chapter

        for slug in slugs:
            compute_chapter(slug, args.profile, book=results.writes_book_asked(), force=args.force)
        return 0
    for slug in slugs:
        params = resolve(chapter_params(slug), args.profile, _overrides(args), check_assets=False)
        key = results.compute_key(slug, params).value
        found = None if args.force else results.find(slug, params, key)
        if found is not None:
            print(f"{slug:<12} results current ({args.profile}) -> {found}")
            continue
        started = time.time()
        results.compute(slug, params, force=args.force)
        print(f"{slug:<12} computed ({args.profile}) in {time.time() - started:.0f} s -> "
              f"{results.locate(slug, params, key)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from replbook.build import run_chapter

    run_chapter(args.slug, args.profile, _overrides(args), Path(args.output) if args.output else None)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from replbook.build import build_book

    build_book(args.profile, args.only, args.force, render_only=args.render_only)
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from replbook.build import state
    from replbook.chapters import chapter, landed_chapters
    from replbook.reproduce import reproduce

    slugs = args.slug or [c.slug for c in landed_chapters()]
    for slug in slugs:
        chapter(slug)
    if args.stale:
        slugs = [s for s in slugs if state(s, args.profile).results != "current"]
        if not slugs:
            print(f"no chapter is compute-stale at {args.profile}: nothing to recompute.")
            return 0
    out = reproduce(slugs, args.profile, Path(args.cache) if args.cache else None, update=args.update)
    print(f"{'reproduce':<12} -> {out}")
    return 0


def _cmd_assets(_: argparse.Namespace) -> int:
    from replbook.assets import asset_status

    rows = asset_status()
    for r in rows:
        print(f"{r['name']:<20} {r['kind']:<8} {r['provider']:<10} {r['used_by']:<12} {r['status']}")
    return 0


def _add_params(p: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        p.add_argument("slug", nargs="+", help="chapters (all: every landed chapter)")
    else:
        p.add_argument("slug")
    p.add_argument("--profile", default="smoke", choices=PROFILES)
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="override one parameter (value read as YAML: 5, 0.5, [1, 2]); repeatable")
    p.add_argument("--params-json", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replbook", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the chapters: whether results and page are current, and their measured times"
                   ).set_defaults(func=_cmd_list)
    stale = sub.add_parser("stale", help="the chapters whose saved results are missing or compute-stale, one a line")
    stale.add_argument("--profile", default="cpu", choices=PROFILES)
    stale.set_defaults(func=_cmd_stale)
    compute = sub.add_parser("compute", help="compute chapters' results (or find them saved); no page")
    _add_params(compute, several=True)
    compute.add_argument("--book", action="store_true", help="at a profile's defaults, save into results/ (the "
                         "book's results) instead of runs/")
    compute.add_argument("--force", action="store_true", help="recompute even when saved results are current")
    compute.set_defaults(func=_cmd_compute)
    run = sub.add_parser("run", help="compute one chapter and render its page: at a profile's defaults into the "
                                     "book, otherwise into runs/<slug>/<key>/")
    _add_params(run)
    run.add_argument("--output", help="where the rendered page goes (default: book/chapters/<slug>.ipynb at the "
                                      "profile's defaults, runs/<slug>/<key>/<slug>.ipynb otherwise)")
    run.set_defaults(func=_cmd_run)
    build = sub.add_parser("build", help="recompute compute-stale chapters, re-render stale pages, render the book")
    build.add_argument("--profile", default="cpu", choices=PROFILES)
    build.add_argument("--only", nargs="+", metavar="SLUG", help="only these chapters")
    build.add_argument("--force", action="store_true", help="recompute and re-render even when current")
    build.add_argument("--render-only", action="store_true",
                       help="compute nothing: fail, one line per chapter, where results are missing or stale")
    build.set_defaults(func=_cmd_build)
    repro = sub.add_parser("reproduce", help="recompute chapters from nothing and compare, claim by claim, with the "
                                             "committed results (_build/reproduce.md)")
    repro.add_argument("slug", nargs="*", help="chapters (default: every landed chapter)")
    repro.add_argument("--profile", default="cpu", choices=PROFILES)
    repro.add_argument("--cache", help="a weight cache to use and keep (default: an empty temporary one)")
    repro.add_argument("--stale", action="store_true", help="only the chapters whose results are compute-stale")
    repro.add_argument("--update", action="store_true",
                       help="also write the recomputed results into results/ and the table into results/reproduce.md")
    repro.set_defaults(func=_cmd_reproduce)
    sub.add_parser("assets", help="every data manifest and whether it resolves here").set_defaults(
        func=_cmd_assets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from replbook.federated import use_offline_flower

    use_offline_flower()  # before anything imports Flower: the FedProphet chapter's kernels inherit it
    from replbook.assets import AssetError
    from replbook.build import ChapterFailed, ChapterInterrupted
    from replbook.profiles import ParameterError
    from replbook.results import ResultsMissing

    try:
        return args.func(args)
    except ChapterInterrupted as err:
        print(f"replbook: interrupted: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("replbook: interrupted.", file=sys.stderr)
        return 130
    except (ParameterError, AssetError, ChapterFailed, ResultsMissing, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) else str(err)
        print(f"replbook: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
