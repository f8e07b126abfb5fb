"""The ``replbook`` command: list chapters, run one with papermill, build the book, check the assets."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from replbook.profiles import PROFILES


def _parse_value(text: str) -> Any:
    """``-p`` values read as YAML, like papermill's ``-p``: ``5`` is an int, ``[0.1, 0.2]`` a list."""
    return yaml.safe_load(text)


def measured_minutes(slug: str, profile: str) -> float | None:
    """The wall time of the chapter's last run at ``profile``, from its results file, in minutes."""
    from replbook.paths import project_root

    path = project_root() / "results" / slug / f"{profile}.json"
    if not path.exists():
        return None
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["wall_time_s"]) / 60
    except (ValueError, KeyError, TypeError):
        return None


def _cmd_list(_: argparse.Namespace) -> int:
    from replbook.chapters import CHAPTERS

    print(f"{'slug':<12} {'status':<8} {'smoke':>7} {'cpu':>7} {'paper':>7}  title")
    totals = {p: [0.0, False] for p in PROFILES}  # minutes, whether any is an estimate
    for ch in CHAPTERS:
        cells = []
        for profile in PROFILES:
            if not ch.landed:
                cells.append("-")
                continue
            measured = measured_minutes(ch.slug, profile)
            minutes = measured if measured is not None else ch.minutes[profile]
            totals[profile][0] += minutes
            totals[profile][1] |= measured is None
            cells.append(f"{'' if measured is not None else '~'}{minutes:.1f}m")
        status = "ready" if ch.landed else "pending"
        print(f"{ch.slug:<12} {status:<8} {cells[0]:>7} {cells[1]:>7} {cells[2]:>7}  {ch.title} (arXiv {ch.arxiv})")
    total = [f"{'~' if estimated else ''}{minutes:.1f}m" for minutes, estimated in totals.values()]
    print(f"{'book':<12} {'':<8} {total[0]:>7} {total[1]:>7} {total[2]:>7}  all landed chapters")
    print("Times are the wall times of the last run here (results/<slug>/<profile>.json); ~ marks a hand estimate "
          "where no run is recorded (2 CPU cores; paper: one GPU, weights already cached).")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from replbook.build import executed_notebook, run_chapter
    from replbook.paths import results_dir

    overrides = {name: _parse_value(value) for name, value in args.param}
    wall = run_chapter(args.slug, args.profile, overrides)
    print(f"{args.slug:<12} ran in {wall:.1f} s -> {executed_notebook(args.slug)}")
    print(f"{'':<12} results -> {results_dir(args.slug) / (args.profile + '.json')}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from replbook.build import build_book

    build_book(args.profile, args.only, args.force)
    return 0


def _cmd_assets(_: argparse.Namespace) -> int:
    from replbook.assets import asset_status

    rows = asset_status()
    for r in rows:
        print(f"{r['name']:<20} {r['kind']:<8} {r['provider']:<10} {r['used_by']:<12} {r['status']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replbook", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the chapters, their state and measured (or estimated) time per profile").set_defaults(
        func=_cmd_list)
    run = sub.add_parser("run", help="execute one chapter with papermill into book/chapters/")
    run.add_argument("slug")
    run.add_argument("--profile", default="smoke", choices=PROFILES)
    run.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="override one parameter (value read as YAML); repeatable")
    run.set_defaults(func=_cmd_run)
    build = sub.add_parser("build", help="run the stale chapters, then render the book into _build/html")
    build.add_argument("--profile", default="cpu", choices=PROFILES)
    build.add_argument("--only", nargs="+", metavar="SLUG", help="run only these chapters")
    build.add_argument("--force", action="store_true", help="rerun chapters even when up to date")
    build.set_defaults(func=_cmd_build)
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

    try:
        return args.func(args)
    except ChapterInterrupted as err:
        print(f"replbook: interrupted: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("replbook: interrupted.", file=sys.stderr)
        return 130
    except (ParameterError, AssetError, ChapterFailed, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) else str(err)
        print(f"replbook: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
