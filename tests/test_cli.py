import subprocess
import sys

from replbook.chapters import CHAPTERS
from replbook.cli import main


def test_list_names_every_chapter(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for slug in ("minkpp", "speechprune", "lobam", "hwsw", "fedprophet", "clat", "oodv2", "cgr", "smg", "osrvit"):
        assert slug in out
    assert ("pending" in out) == any(not c.landed for c in CHAPTERS)
    assert "missing" in out  # an empty root: no results, no pages


def test_list_shows_states_and_measured_times_from_the_results_files(tmp_path, monkeypatch, capsys):
    import json
    import shutil
    from pathlib import Path

    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    shutil.copytree(Path(__file__).resolve().parents[1] / "data_manifests", tmp_path / "data_manifests")
    (tmp_path / "results" / "minkpp").mkdir(parents=True)
    (tmp_path / "results" / "minkpp" / "cpu.json").write_text(json.dumps(
        {"compute_key": {"value": "from older code"}, "record": {"compute_wall_s": 150.0}}))
    assert main(["list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    smoke = next(r for r in rows if r[:2] == ["minkpp", "smoke"])
    cpu = rows[rows.index(smoke) + 1]
    assert smoke[2] == "missing" and smoke[3].startswith("~")  # nothing computed: the estimate
    assert cpu[:4] == ["cpu", "stale", "2.5m", "missing"]  # computed by other code, 150 s


def test_run_rejects_an_out_of_range_parameter_before_any_work(capsys):
    assert main(["run", "minkpp", "-p", "epochs", "0"]) == 2
    assert "parameter 'epochs' must lie in [1, 50]; got 0" in capsys.readouterr().err


def test_run_rejects_an_unknown_parameter(capsys):
    assert main(["run", "minkpp", "-p", "epoch", "3"]) == 2
    assert "minkpp has no parameter 'epoch'" in capsys.readouterr().err


def test_run_of_a_pending_chapter_is_a_clear_error(capsys, monkeypatch):
    from replbook import chapters

    # every chapter has landed: a future one stands in for a pending chapter
    monkeypatch.setattr(chapters, "CHAPTERS", CHAPTERS + (chapters.Chapter("future", "A future paper", "0000.00000",
                                                                            "method"),))
    assert main(["run", "future"]) == 2
    assert "chapter 'future' has not landed yet" in capsys.readouterr().err


def test_paper_profile_without_assets_stops_with_the_manifest_name(capsys):
    assert main(["run", "minkpp", "--profile", "paper"]) == 2
    assert "data_manifests/wikimia.yaml" in capsys.readouterr().err
    assert main(["compute", "minkpp", "--profile", "paper"]) == 2
    assert "data_manifests/wikimia.yaml" in capsys.readouterr().err


def test_assets_lists_every_manifest(capsys):
    assert main(["assets"]) == 0
    out = capsys.readouterr().out
    assert "pydoc-topics" in out and "wikimia" in out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "replbook", "list"], capture_output=True, text=True, check=True)
    assert "minkpp" in out.stdout
