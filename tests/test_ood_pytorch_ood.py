"""Cross-check of replbook.ood against pytorch-ood 0.4.0, the maintained library for these detectors.

pytorch-ood's own ``__init__`` imports its dataset and model subpackages, which import torchvision, which does not
load beside this project's CPU torch. ``make setup`` installs it with ``--no-deps``; here it is registered as a bare
namespace so that only ``pytorch_ood.detector`` and ``pytorch_ood.metrics`` (torch, numpy, scipy, sklearn) load.
"""

import importlib.util
import sys
import types

import pytest
import torch

from replbook import ood


def _pytorch_ood():
    spec = importlib.util.find_spec("pytorch_ood")
    if spec is None:
        pytest.skip("pytorch-ood is not installed (make setup installs it with --no-deps)")
    if "pytorch_ood" not in sys.modules:
        package = types.ModuleType("pytorch_ood")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["pytorch_ood"] = package
    import pytorch_ood.detector as detector
    import pytorch_ood.metrics as metrics

    return detector, metrics


@pytest.fixture(scope="module")
def lib():
    return _pytorch_ood()


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(300, 16, generator=gen) + torch.repeat_interleave(torch.eye(16)[:3] * 3, 100, dim=0)
    y = torch.repeat_interleave(torch.arange(3), 100)
    w, b = torch.randn(3, 16, generator=gen), torch.randn(3, generator=gen)
    z_test = torch.randn(50, 16, generator=gen) * 2
    return z, y, w, b, z_test


def test_logit_scores_equal_pytorch_ood(lib, data):
    detector, _ = lib
    logits = torch.randn(40, 5, generator=torch.Generator().manual_seed(1)) * 3
    assert torch.allclose(ood.msp(logits), detector.MaxSoftmax.score(logits), atol=1e-6)
    assert torch.allclose(ood.max_logit(logits), detector.MaxLogit.score(logits), atol=1e-6)
    assert torch.allclose(ood.energy(logits), detector.EnergyBased.score(logits), atol=1e-5)
    assert torch.allclose(ood.entropy(logits), detector.Entropy.score(logits), atol=1e-5)
    # pytorch-ood averages GEN's terms where the paper sums them: a constant factor M
    assert torch.allclose(ood.gen(logits, 0.1, 5), 5 * detector.GEN.score(logits, gamma=0.1, M=5), atol=1e-4)


def test_feature_detectors_equal_pytorch_ood(lib, data):
    detector, _ = lib
    z, y, w, b, z_test = data
    ours = ood.KNN(k=10).fit(z).score(z_test)
    theirs = detector.KNN(None, k=10).fit_features(z, y).predict_features(z_test)
    assert torch.allclose(ours, theirs.float(), atol=1e-4)
    ours = ood.ViM(8, w, b).fit(z).score(z_test)
    theirs = detector.ViM(None, d=8, w=w, b=b).fit_features(z, y).predict_features(z_test)
    assert torch.allclose(ours, theirs.float(), rtol=1e-3, atol=1e-3)


def test_mahalanobis_differs_from_pytorch_ood_only_by_constant_factors(lib, data):
    # pytorch-ood 0.4.0 sums the centred outer products without dividing by N (distances N times smaller) and
    # reports the Gaussian log-density term 0.5·d²: a factor 2N in all, so its ranking (and AUROC) equals ours.
    detector, _ = lib
    z, y, _, _, z_test = data
    ours = ood.Mahalanobis(shrinkage=0.0).fit(z, y).score(z_test)
    theirs = detector.Mahalanobis(None).fit_features(z, y).predict_features(z_test)
    assert torch.allclose(ours, 2 * len(z) * theirs.float(), rtol=1e-3)


def test_mcm_and_metrics_equal_pytorch_ood(lib):
    detector, metrics = lib
    gen = torch.Generator().manual_seed(2)
    text, image = torch.randn(4, 8, generator=gen), torch.randn(30, 8, generator=gen)
    theirs = detector.MCM(None, text_embeddings=torch.nn.functional.normalize(text, dim=-1), temperature=0.5)
    assert torch.allclose(ood.mcm(image, text, 0.5),
                          theirs.predict_features(torch.nn.functional.normalize(image, dim=-1)), atol=1e-6)
    s_id, s_ood = torch.randn(200, generator=gen), torch.randn(150, generator=gen) + 1
    m = metrics.OODMetrics()
    m.update(torch.cat([s_id, s_ood]), torch.cat([torch.zeros(200), -torch.ones(150)]).long())
    ref = m.compute()
    ours = ood.ood_metrics(s_id, s_ood)
    assert ours["auroc"] == pytest.approx(ref["AUROC"], abs=1e-6)
    assert ours["aupr_in"] == pytest.approx(ref["AUPR-IN"], abs=1e-6)
    assert ours["aupr_out"] == pytest.approx(ref["AUPR-OUT"], abs=1e-6)
    assert ours["fpr95"] == pytest.approx(ref["FPR95TPR"], abs=1e-6)
