"""OOD detectors and metrics against the specification's worked examples (E1-E3), sklearn's metrics, and
properties. Convention under test: every score is higher = more OOD."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score

from replbook import ood

F_E1 = torch.tensor([[2.0, 0.0, 0.0]])


def test_e1_logit_scores():
    assert ood.msp(F_E1).item() == pytest.approx(-math.e**2 / (math.e**2 + 2), abs=1e-6)  # −0.78699
    assert ood.max_logit(F_E1).item() == pytest.approx(-2.0)
    assert ood.energy(F_E1).item() == pytest.approx(-2.23954, abs=1e-5)
    assert ood.energy(F_E1, temperature=2.0).item() == pytest.approx(-3.10289, abs=1e-5)
    assert ood.entropy(F_E1).item() == pytest.approx(0.66557, abs=1e-5)


def test_e2_mcm_and_its_temperature():
    # three unit text vectors in R^4 and a unit image vector whose cosines with them are 0.30, 0.25, 0.20
    text = torch.eye(4)[:3]
    rest = math.sqrt(1 - 0.30**2 - 0.25**2 - 0.20**2)
    image = torch.tensor([[0.30, 0.25, 0.20, rest]], dtype=torch.float64)
    assert ood.mcm(image, text, 1.0).item() == pytest.approx(-0.35013, abs=1e-5)
    assert ood.mcm(image, text, 0.01).item() == pytest.approx(-0.99326, abs=1e-5)
    assert ood.mcm(3 * image, text, 0.01).item() == pytest.approx(-0.99326, abs=1e-5)  # only directions count


def test_e3_the_two_fpr_conventions_and_auroc():
    s_id, s_ood = torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.5, 5, 6, 7])
    out = ood.ood_metrics(s_id, s_ood, positive="ood")
    assert out["fpr95"] == pytest.approx(0.75) and out["auroc"] == pytest.approx(13 / 16)
    out_id = ood.ood_metrics(s_id, s_ood, positive="id")
    assert out_id["fpr95"] == pytest.approx(0.25) and out_id["auroc"] == pytest.approx(13 / 16)


def test_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    s_id = torch.tensor(rng.integers(0, 20, 300).astype(float))
    s_ood = torch.tensor(rng.integers(5, 30, 200).astype(float))
    out = ood.ood_metrics(s_id, s_ood)
    y = np.r_[np.zeros(300), np.ones(200)]
    s = np.r_[s_id.numpy(), s_ood.numpy()]
    assert out["auroc"] == pytest.approx(roc_auc_score(y, s))
    precision, recall, _ = precision_recall_curve(y, s)
    assert out["aupr_out"] == pytest.approx(auc(recall, precision))  # OpenOOD v1.5's definition
    precision, recall, _ = precision_recall_curve(1 - y, -s)
    assert out["aupr_in"] == pytest.approx(auc(recall, precision))
    with pytest.raises(ValueError, match="positive"):
        ood.ood_metrics(s_id, s_ood, positive="both")
    with pytest.raises(ValueError, match="NaN"):
        ood.ood_metrics(torch.tensor([float("nan")]), s_ood)


def test_logit_scores_are_monotone_in_confidence_and_reject_bad_input():
    confident, unsure = torch.tensor([[5.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.9, 0.8]])
    for name, fn in ood.LOGIT_SCORES.items():
        assert fn(confident).item() < fn(unsure).item(), name
    with pytest.raises(ValueError, match="K >= 2"):
        ood.msp(torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        ood.energy(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="temperature"):
        ood.msp(F_E1, temperature=0.0)


def test_gen_hand_case():
    # p = [0.5, 0.5]: each term 0.5^γ · 0.5^γ = 0.25^γ; two of them
    assert ood.gen(torch.zeros(1, 2), gamma=0.5).item() == pytest.approx(2 * 0.25**0.5)


def test_odin_step_raises_the_confidence_of_a_linear_model():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x = torch.randn(16, 4)
    plain = ood.msp(model(x), temperature=1000.0)
    assert (ood.odin(model, x, 1000.0, 0.0) == plain).all()
    assert (ood.odin(model, x, 1000.0, 0.05) <= plain + 1e-7).all()  # more confident = lower outlier score


def test_mahalanobis_on_a_hand_case_and_the_relative_variant():
    # class means (1, 0) and (-1, 0), each class a cross of radius 1: pooled covariance diag(0.5, 0.5)
    cross = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]], dtype=torch.float64)
    z = torch.cat([cross + torch.tensor([1.0, 0]), cross + torch.tensor([-1.0, 0])])
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    det = ood.Mahalanobis(shrinkage=0.0).fit(z, y)
    assert torch.allclose(det.means, torch.tensor([[1.0, 0], [-1, 0]], dtype=torch.float64))
    # precision diag(2, 2): [1, 2] → 2·(0 + 4) = 8 (class 0); [4, 0] → 2·9 = 18
    assert det.score(torch.tensor([[1.0, 2.0], [4.0, 0.0]])).tolist() == pytest.approx([8.0, 18.0])
    rel = ood.RelativeMahalanobis(shrinkage=0.0).fit(z, y)
    # global mean 0, global covariance diag(1.5, 0.5): MD_0([1, 2]) = 1/1.5 + 4/0.5
    assert rel.score(torch.tensor([[1.0, 2.0]])).item() == pytest.approx(8.0 - (1 / 1.5 + 8.0))
    with pytest.raises(RuntimeError, match="fitted"):
        ood.Mahalanobis().score(z)


def test_knn_hand_case_and_errors():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    det = ood.KNN(k=2, normalize=False).fit(bank)
    assert det.score(torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.sqrt(2))
    assert ood.KNN(k=1).fit(bank).score(torch.tensor([[3.0, 0.0]])).item() == pytest.approx(0.0)  # normalised
    with pytest.raises(ValueError, match="exceeds"):
        ood.KNN(k=5).fit(bank)


def test_vim_hand_case():
    # b = 0 puts the origin at 0; the training features span e1, e2 widely (variance 2.25) and e3, e4 narrowly
    # (0.0625), so the principal subspace for dim = 2 is span(e1, e2) and the residual is the (e3, e4) part.
    weight, bias = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0]]), torch.zeros(3)
    axes = torch.eye(4)
    train = torch.cat([3 * axes[:2], -3 * axes[:2], 0.5 * axes[2:], -0.5 * axes[2:]])
    det = ood.ViM(2, weight, bias).fit(train)
    # max logits 3, 3, 0, 0, 0.5, 0.5, 0, 0 → mean 7/8; residual norms 0.5 for four rows → mean 1/4; α = 3.5
    assert det.alpha == pytest.approx(3.5)
    inside, outside = torch.tensor([[1.0, 1.0, 0, 0]]), torch.tensor([[1.0, 1.0, 2.0, 0]])
    assert det.score(inside).item() == pytest.approx(-math.log(2 * math.e + 1), abs=1e-5)
    assert det.score(outside).item() == pytest.approx(3.5 * 2.0 - math.log(2 * math.e + math.e**2), abs=1e-5)
    with pytest.raises(ValueError, match="dim"):
        ood.ViM(4, weight, bias)


def test_activation_shapers():
    weight, bias = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]), torch.zeros(2)
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    react = ood.ReAct(weight, bias, percentile=50).fit(torch.tensor([[0.0, 1.0, 2.0, 3.0, ]]))
    assert react.threshold == pytest.approx(1.5)
    # clipped at 1.5: [1, 1.5, 1.5, 1.5] → logits [5.5, 0]
    assert react.score(z).item() == pytest.approx(ood.energy(torch.tensor([[5.5, 0.0]])).item())
    ash = ood.ASH(weight, bias, percentile=50).fit(z)
    # keep {3, 4}: s1 = 10, s2 = 7 → the kept sum 7 · e^(10/7)
    assert ash.score(z).item() == pytest.approx(ood.energy(torch.tensor([[7 * math.exp(10 / 7), 0.0]])).item())
    scale = ood.SCALE(weight, bias, percentile=50).fit(z)
    assert scale.score(z).item() == pytest.approx(ood.energy(torch.tensor([[10 * math.exp(10 / 7), 0.0]])).item())
    dice = ood.DICE(weight, bias, percentile=75).fit(z)
    # contributions over the whole matrix: [1, 2, 3, 4] and four zeros; the 75th percentile is 2.25
    assert dice.masked_weight[0].tolist() == [0.0, 0.0, 1.0, 1.0] and not dice.masked_weight[1].any()
    she = ood.SHE(weight, bias).fit(torch.tensor([[1.0, 0, 0, 0], [3.0, 0, 0, 0]]), torch.tensor([0, 0]))
    assert she.score(torch.tensor([[2.0, 0, 0, 0]])).item() == pytest.approx(-4.0)  # pattern [2, 0, 0, 0]


def test_glmcm_adds_the_best_local_patch():
    text = torch.eye(3)
    image = torch.tensor([[1.0, 1.0, 1.0]])  # uniform: MCM confidence 1/3
    local = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0001]]])
    best_local = -ood.mcm(local[0, :1], text, 0.1).item()
    expected = ood.mcm(image, text, 0.1).item() - best_local
    assert ood.glmcm(image, local, text, 0.1).item() == pytest.approx(expected)
    assert ood.glmcm(image, local, text, 0.1, local_weight=0.0).item() == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="local_embeddings"):
        ood.glmcm(image, local[0], text)


def test_temperature_hand_case_and_separable_logits():
    # Two of three items labelled 0 with logits (1, 0): mean NLL log(1 + e^β) − 2β/3 is least where σ(β) = 2/3,
    # β = log 2, so T = 1 / log 2.
    logits = torch.tensor([[1.0, 0.0]] * 3)
    assert ood.fit_temperature(logits, torch.tensor([0, 0, 1])) == pytest.approx(1 / math.log(2), rel=1e-4)
    # Every label the argmax: the NLL falls as T falls (flat to float precision near the bound); the search ends
    # near its lower bound instead of running to T = 0 and NaN.
    separable = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    assert 0.05 <= ood.fit_temperature(separable, torch.tensor([0, 1]), t_min=0.05) < 0.1
