"""What every page shows the same way: the claims table, the panels, figure glue and the number formats."""

import pytest

from replbook.page import (
    claims_table,
    glue_placeholder_figures,
    mean_sd,
    parameters_panel,
    style_claims,
)
from replbook.verdicts import Claim


def claim(verdict="reproduced", cid="C1"):
    return Claim(cid, "Min-K%++ beats Min-K%", "78.3", "Table 1", "0.81 [0.79, 0.83]", "smoke", verdict, "rule")


def test_claims_table_columns_ids_and_missing_paper_value():
    table = claims_table([claim(), Claim("C2", "x", None, "-", "x", "cpu", "not comparable", "r")])
    assert list(table.columns) == ["claim", "paper", "source", "ours", "profile", "verdict", "reason"]
    assert table.loc[0, "claim"] == "C1: Min-K%++ beats Min-K%"
    assert table.loc[1, "paper"] == "not transcribed"
    with pytest.raises(ValueError, match="unique"):
        claims_table([claim(), claim()])


def test_styled_claims_anchor_each_row_and_escape_text():
    c = Claim("C2a", "a <b> claim", "1", "s", "o", "cpu", "partly", "r")
    page = style_claims(claims_table([c]), [c.anchor]).to_html()
    assert 'id="claim-c2a"' in page and "a &lt;b&gt; claim" in page and 'class="claims-table"' in page


def test_mean_sd_has_one_form_for_one_seed():
    assert mean_sd([0.8, 0.82, 0.84]) == "0.820 ± 0.020"
    assert mean_sd([0.8123]) == "0.812 (one seed)"
    assert mean_sd([0.5, 0.7], digits=1, scale=100) == "60.0 ± 14.1"
    assert mean_sd([]) == "no values"


def test_parameters_panel_marks_values_set_for_the_run():
    from replbook.experiments.minkpp import PARAMS
    from replbook.profiles import resolve

    panel = parameters_panel(PARAMS, resolve(PARAMS, "smoke", {"epochs": 3}, check_assets=False)).data
    assert "<details" in panel and "<code>epochs</code>" in panel and panel.count("set for this run") == 1


def test_placeholder_figures_are_glued_under_every_key(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: glued.setdefault(key, value))
    glue_placeholder_figures(["fig_a", "fig_b"], "not run")
    assert sorted(glued) == ["fig_a", "fig_b"]
    assert all(fig.texts[0].get_text() == "not run" for fig in glued.values())
