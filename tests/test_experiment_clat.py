"""The CLAT miniature's plumbing on tiny sizes: both arms run from the same stage-1 model, CLAT trains only the
selected convolutions, the stage-1 model is cached, and the statistics helpers are right."""

import pytest
import torch

from replbook.experiments import clat as experiment
from replbook.profiles import resolve

TINY = {"seeds": 1, "n_train": 32, "n_test": 32, "n_curve": 32, "stage1_epochs": 2, "stage2_epochs": 2,
        "eval_steps": 2, "reselect_every": 1}


def tiny_data():
    gen = torch.Generator().manual_seed(0)
    x, xt = torch.rand(64, 1, 28, 28, generator=gen), torch.rand(32, 1, 28, 28, generator=gen)
    return {"x": x, "y": torch.arange(64) % 10, "xt": xt, "yt": torch.arange(32) % 10}


def test_one_seed_runs_both_arms_and_selects_only_convolutions(tmp_cache):
    params = resolve(experiment.PARAMS, "smoke", TINY, check_assets=False)
    result = experiment.run_seed(params, tiny_data(), seed=0)
    assert set(result.final) == {"stage 1", "continued AT", "CLAT"}
    assert len(result.stage1_curve) == 2 and all(len(c) == 2 for c in result.curves.values())
    for selection in result.selections:
        assert set(selection["selected"]) <= {0, 1, 2, 3}  # convolutions only; fc1 and the logit layer excluded
        assert 0 < selection["trainable_fraction"] < 0.1
    assert len(list((tmp_cache / "models").glob("clat-stage1-*.safetensors"))) == 1
    again = experiment.run_seed(params, tiny_data(), seed=0)  # stage 1 from the cache
    assert again.stage1_curve == result.stage1_curve and again.final == result.final


def test_paired_difference_and_best_minus_last():
    d = experiment.paired_difference([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert d["mean"] == pytest.approx(0.1) and d["lo"] == pytest.approx(0.1) and d["hi"] == pytest.approx(0.1)
    assert experiment.best_minus_last([{"robust": 0.3}, {"robust": 0.5}, {"robust": 0.4}]) == pytest.approx(0.1)
