"""Min-K%++ kernels against the specification's hand-worked examples (E1-E5), the official code's structure, and
their documented edge cases."""

import math
import zlib

import numpy as np
import pytest
import torch
from reference_minkpp import official_style_scores

from replbook import minkpp

LN2 = math.log(2.0)


def one_position(p, target):
    """logits [1, 2, V] whose first position has distribution p, and ids [1, 2] with the given target."""
    probs = torch.tensor(p, dtype=torch.float64)
    logits = probs.log().expand(2, -1).unsqueeze(0).clone()
    return logits, torch.tensor([[0, target]])


@pytest.mark.parametrize("target, score", [(0, 1.0), (1, -1.0), (2, -1.0)])
def test_e1_token_score(target, score):
    logits, ids = one_position([0.5, 0.25, 0.25], target)
    logp, mu, sigma, valid = minkpp.token_logprob_stats(logits, ids)
    assert mu.item() == pytest.approx(-1.5 * LN2)
    assert sigma.item() == pytest.approx(0.5 * LN2)
    assert logp.item() == pytest.approx(-LN2 * (1 if target == 0 else 2))
    assert valid.item()
    assert minkpp.minkpp_score(logits, ids, k=1.0).item() == pytest.approx(score)


def test_e2_calibration_changes_the_ranking():
    a_logits, a_ids = one_position([0.5, 0.25, 0.25], 0)
    b_logits, b_ids = one_position([0.9, 0.05, 0.05], 0)
    _, mu, sigma, _ = minkpp.token_logprob_stats(b_logits, b_ids)
    assert mu.item() == pytest.approx(-0.39440, abs=1e-5)
    assert (sigma**2).item() == pytest.approx(0.75188, abs=1e-5)
    assert minkpp.minkpp_score(b_logits, b_ids, k=1.0).item() == pytest.approx(1 / 3, abs=1e-4)
    # Min-K% prefers B, Min-K%++ prefers A.
    assert minkpp.mink_score(b_logits, b_ids, 1.0) > minkpp.mink_score(a_logits, a_ids, 1.0)
    assert minkpp.minkpp_score(b_logits, b_ids, 1.0) < minkpp.minkpp_score(a_logits, a_ids, 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_e3_uniform_distribution_scores_zero(dtype):
    logits = torch.zeros(1, 3, 7, dtype=dtype)
    ids = torch.tensor([[1, 4, 6]])
    _, _, sigma, _ = minkpp.token_logprob_stats(logits, ids)
    assert torch.all(sigma > 0)
    # l_t = mu_t up to rounding (eps·|mu|), divided by the floored sigma (sqrt(eps)): 0 within ~sqrt(eps).
    tolerance = 10 * math.sqrt(torch.finfo(dtype).eps)
    assert minkpp.minkpp_score(logits, ids, k=1.0).item() == pytest.approx(0.0, abs=tolerance)


def test_one_hot_distribution_is_finite():
    logits = torch.full((1, 3, 5), -1e4)
    logits[..., 2] = 1e4
    score = minkpp.minkpp_score(logits, torch.tensor([[0, 2, 2]]), k=1.0)
    assert torch.isfinite(score).all()


@pytest.mark.parametrize("k, expected", [(0.2, -1.0), (0.6, -1 / 3), (0.1, -1.0), (1.0, 0.2)])
def test_e4_min_k_mean(k, expected):
    scores = torch.tensor([[1.0, -1.0, 1.0, 1.0, -1.0]])
    valid = torch.ones_like(scores, dtype=torch.bool)
    assert minkpp.min_k_mean(scores, valid, k).item() == pytest.approx(expected)


def test_min_k_mean_floor_matches_python_int():
    # 100 · 0.57 = 56.99999999999999 in floating point: the official int(n * k) keeps 56 tokens.
    assert int(100 * 0.57) == 56
    scores = torch.arange(100, dtype=torch.float64).unsqueeze(0)
    valid = torch.ones_like(scores, dtype=torch.bool)
    assert minkpp.min_k_mean(scores, valid, 0.57).item() == pytest.approx(np.mean(np.arange(56)))


def test_min_tokens_raises_the_floor():
    scores = torch.tensor([[3.0, 1.0, 2.0, 5.0]])
    valid = torch.ones_like(scores, dtype=torch.bool)
    assert minkpp.min_k_mean(scores, valid, 0.1, min_tokens=2).item() == pytest.approx(1.5)


def test_e5_metrics():
    scores = np.array([0.9, 0.7, 0.4, 0.8, 0.3, 0.2])
    labels = np.array([1, 1, 1, 0, 0, 0])
    m = minkpp.mia_metrics(scores, labels)
    assert m["auroc"] == pytest.approx(7 / 9)
    assert m["fpr95"] == pytest.approx(1 / 3)
    assert m["tpr05"] == pytest.approx(1 / 3)
    assert m["tpr01"] == pytest.approx(1 / 3)


def test_padding_gives_the_same_scores_as_unpadded_rows():
    torch.manual_seed(0)
    long_logits, long_ids = torch.randn(1, 9, 11), torch.randint(0, 11, (1, 9))
    short_logits, short_ids = torch.randn(1, 5, 11), torch.randint(0, 11, (1, 5))
    logits = torch.cat([long_logits, torch.cat([short_logits, torch.randn(1, 4, 11)], 1)])
    ids = torch.cat([long_ids, torch.cat([short_ids, torch.zeros(1, 4, dtype=torch.long)], 1)])
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    for fn in (minkpp.minkpp_score, minkpp.mink_score):
        batched = fn(logits, ids, 0.5, attention_mask=mask)
        assert batched[0].item() == pytest.approx(fn(long_logits, long_ids, 0.5).item(), abs=1e-6)
        assert batched[1].item() == pytest.approx(fn(short_logits, short_ids, 0.5).item(), abs=1e-6)
    loss = minkpp.loss_score(logits, ids, mask)
    assert loss[1].item() == pytest.approx(minkpp.loss_score(short_logits, short_ids).item(), abs=1e-6)


@pytest.mark.parametrize("k", [0.1, 0.2, 0.5, 1.0])
def test_matches_the_official_structure_on_random_logits(k):
    torch.manual_seed(1)
    for _ in range(5):
        logits, ids = torch.randn(1, 33, 50) * 3, torch.randint(0, 50, (1, 33))
        mink_ref, minkpp_ref = official_style_scores(logits, ids, k)
        assert minkpp.mink_score(logits, ids, k).item() == pytest.approx(mink_ref, abs=1e-5)
        assert minkpp.minkpp_score(logits, ids, k).item() == pytest.approx(minkpp_ref, abs=1e-4)


def test_bfloat16_logits_use_float32_moments():
    torch.manual_seed(2)
    logits, ids = torch.randn(2, 17, 64) * 4, torch.randint(0, 64, (2, 17))
    exact = minkpp.minkpp_score(logits.double(), ids, 0.2)
    from_bf16 = minkpp.minkpp_score(logits.bfloat16(), ids, 0.2)
    assert from_bf16.dtype == torch.float32
    assert torch.allclose(from_bf16.double(), minkpp.minkpp_score(logits.bfloat16().double(), ids, 0.2), atol=1e-4)
    assert torch.allclose(from_bf16.double(), exact, atol=0.1)


def test_loss_zlib_and_ref_scores():
    logits, ids = one_position([0.5, 0.25, 0.25], 1)
    loss = minkpp.loss_score(logits, ids)
    assert loss.item() == pytest.approx(-2 * LN2)
    text = "abc abc abc"
    assert minkpp.zlib_score(loss, [text]).item() == pytest.approx(-2 * LN2 / len(zlib.compress(text.encode())))
    assert minkpp.ref_score(torch.tensor([-1.0]), torch.tensor([-3.0])).item() == 2.0


@pytest.mark.parametrize("k", [0.0, -0.1, 1.5, float("nan")])
def test_k_outside_unit_interval_raises(k):
    logits, ids = one_position([0.5, 0.25, 0.25], 0)
    with pytest.raises(ValueError, match="k must be a fraction"):
        minkpp.minkpp_score(logits, ids, k=k)


def test_all_padding_row_raises():
    logits, ids = torch.randn(2, 4, 5), torch.randint(0, 5, (2, 4))
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"rows \[1\] have no scored token"):
        minkpp.minkpp_score(logits, ids, attention_mask=mask)


def test_non_finite_logits_raise():
    logits, ids = torch.randn(1, 4, 5), torch.randint(0, 5, (1, 4))
    logits[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        minkpp.token_logprob_stats(logits, ids)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="input_ids"):
        minkpp.token_logprob_stats(torch.randn(1, 4, 5), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        minkpp.token_logprob_stats(torch.randn(1, 4, 5), torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 3))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        minkpp.token_logprob_stats(torch.randn(1, 1, 5), torch.zeros(1, 1, dtype=torch.long))


def test_metrics_reject_one_class_and_nan():
    with pytest.raises(ValueError, match="both classes"):
        minkpp.mia_metrics(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        minkpp.mia_metrics(np.array([0.1, np.nan]), np.array([1, 0]))


def test_sequence_scores_match_the_single_score_kernels():
    torch.manual_seed(3)
    logits, ids = torch.randn(3, 12, 40), torch.randint(0, 40, (3, 12))
    scores = minkpp.sequence_scores(logits, ids, ks=[0.2, 0.5])
    assert set(scores) == {"loss", "mink@0.2", "minkpp@0.2", "mink@0.5", "minkpp@0.5"}
    assert torch.allclose(scores["minkpp@0.5"], minkpp.minkpp_score(logits, ids, 0.5))
    assert torch.allclose(scores["mink@0.2"], minkpp.mink_score(logits, ids, 0.2))
    assert torch.allclose(scores["loss"], minkpp.loss_score(logits, ids))


def test_row_blocks_do_not_change_the_result(monkeypatch):
    torch.manual_seed(4)
    logits, ids = torch.randn(2, 23, 64) * 3, torch.randint(0, 64, (2, 23))
    whole = minkpp.token_logprob_stats(logits, ids)
    monkeypatch.setattr(minkpp, "ROW_BLOCK_ELEMENTS", 64 * 5)  # 5 rows a block, a partial last block
    for a, b in zip(whole, minkpp.token_logprob_stats(logits, ids), strict=True):
        assert torch.equal(a, b)


def test_float32_moments_match_float64():
    torch.manual_seed(5)
    logits, ids = torch.randn(2, 30, 1000) * 4, torch.randint(0, 1000, (2, 30))
    for a, b in zip(minkpp.token_logprob_stats(logits, ids)[:3], minkpp.token_logprob_stats(logits.double(), ids)[:3],
                    strict=True):
        assert torch.allclose(a.double(), b, rtol=1e-5, atol=1e-5)


def test_compiled_kernel_matches_eager():
    torch.manual_seed(6)
    logits, ids = torch.randn(2, 9, 50) * 3, torch.randint(0, 50, (2, 9))
    eager = minkpp.token_logprob_stats(logits, ids)
    fused = minkpp.token_logprob_stats(logits, ids, compiled=True)
    for a, b in zip(eager, fused, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_buffered_and_functional_row_maths_agree():
    torch.manual_seed(7)
    x, target = torch.randn(6, 300) * 5, torch.randint(0, 300, (6,))
    work = torch.empty(3, 8, 300)
    for a, b in zip(minkpp._row_stats(x, target), minkpp._row_stats_buffered(x, target, work), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
