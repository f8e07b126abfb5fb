import json

import pytest

from replbook.record import Claim, RunRecorder, claims_table, format_ci


def claim(verdict="reproduced"):
    return Claim("C1", "78.3", "Table 1", "0.81 [0.79, 0.83]", "smoke", verdict, "rule")


def test_verdict_must_be_known():
    with pytest.raises(ValueError, match="verdict must be one of"):
        claim("yes")


def test_claims_table_columns_and_missing_paper_value():
    table = claims_table([claim(), Claim("C2", None, "-", "x", "cpu", "not comparable", "r")])
    assert list(table.columns) == ["claim", "paper", "source", "ours", "profile", "verdict", "reason"]
    assert table.loc[1, "paper"] == "not transcribed"


def test_format_ci():
    assert format_ci(0.81234, 0.7, 0.9) == "0.812 [0.700, 0.900]"


def test_record_has_the_contract_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    path = RunRecorder("demo", {"profile": "smoke", "epochs": 1}).write(
        {"auroc": 0.7, "bad": float("nan")}, [claim()], seeds=[0, 1])
    assert path == tmp_path / "results" / "demo" / "smoke.json"
    record = json.loads(path.read_text())
    for key in ("parameters", "seeds", "versions", "git_commit", "device", "wall_time_s", "metrics", "claims"):
        assert key in record
    assert record["metrics"]["bad"] is None  # JSON has no NaN
    assert record["versions"]["torch"].startswith("2.13")
    assert record["claims"][0]["verdict"] == "reproduced"
