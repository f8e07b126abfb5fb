"""SpeechPrune kernels against the specification's worked examples (P1-P3) and properties."""

import math

import pytest
import torch

from replbook import speechprune as sp


def p1_inputs():
    speech = torch.tensor([[[0.0, 1], [0, 1], [1, 0], [0.6, 0.8], [0, 1], [0.2, math.sqrt(0.96)]]])
    return speech, torch.tensor([[[1.0, 0.0]]])


def test_p1_relevance_and_frame_budget():
    speech, text = p1_inputs()
    r = sp.speech_text_similarity(speech, text)
    assert torch.allclose(r, torch.tensor([[0, 0, 1, 0.6, 0, 0.2]]), atol=1e-6)
    assert sp.framewise_budget_select(r, 3, frame_size=2).tolist() == [[2, 3, 5]]
    assert sp.framewise_budget_select(r, 3, frame_size=2, overflow="floor").tolist() == [[2, 3]]


def test_p2_attention_received_and_not_the_degenerate_mean_over_keys():
    speech = torch.tensor([[[0.5, 2.0, -1.0], [0.3, 0.1, 0.2], [-0.7, 0.4, 0.9]]])
    eye = torch.eye(3)
    scores = sp.binarized_attention_scores(speech, eye, eye)
    assert torch.allclose(scores, torch.tensor([[0.3235, 0.3530, 0.3235]]), atol=1e-4)
    assert scores.argmax().item() == 1
    # The literal "mean over keys" of a row-stochastic matrix is 1/N for every token: it cannot rank anything.
    q = torch.sign(speech[0])
    attn = torch.softmax(q @ q.T / math.sqrt(3), dim=-1)
    assert torch.allclose(attn.mean(dim=1), torch.full((3,), 1 / 3))
    assert not torch.allclose(scores[0], attn.mean(dim=1))


def test_p3_budget_arithmetic_and_counts():
    assert [sp.kept_count(750, pr) for pr in (0.2, 0.4, 0.6, 0.8)] == [600, 450, 300, 150]
    gen = torch.Generator().manual_seed(0)
    speech, text = torch.randn(2, 900, 16, generator=gen), torch.randn(2, 5, 16, generator=gen)
    w = torch.randn(16, 16, generator=gen)
    for pr in (0.0, 0.2, 0.8):
        kept = sp.speechprune_select(speech, text, w, w, n_phase1=300, prune_rate=pr, num_heads=4)
        assert kept.shape == (2, sp.kept_count(300, pr))
        assert all(torch.equal(row, row.unique()) for row in kept)  # sorted and unique


def test_no_pruning_returns_everything():
    gen = torch.Generator().manual_seed(1)
    speech, text, w = torch.randn(1, 60, 8, generator=gen), torch.randn(1, 3, 8, generator=gen), torch.eye(8)
    assert torch.equal(sp.speechprune_select(speech, text, w, w, 60, 0.0, frame_size=7), torch.arange(60)[None])


def test_phase1_is_invariant_to_positive_rescaling_of_tokens():
    gen = torch.Generator().manual_seed(2)
    speech, text = torch.randn(1, 100, 8, generator=gen), torch.randn(1, 4, 8, generator=gen)
    scale_s, scale_t = torch.rand(1, 100, 1, generator=gen) + 0.1, torch.rand(1, 4, 1, generator=gen) + 0.1
    a = sp.framewise_budget_select(sp.speech_text_similarity(speech, text), 40, 10)
    b = sp.framewise_budget_select(sp.speech_text_similarity(speech * scale_s, text * scale_t), 40, 10)
    assert torch.equal(a, b)


def test_phase2_is_scale_invariant_and_permutation_equivariant():
    gen = torch.Generator().manual_seed(3)
    speech, w_q, w_k = torch.randn(1, 30, 8, generator=gen), torch.randn(8, 8, generator=gen), torch.randn(8, 8,
                                                                                                          generator=gen)
    scores = sp.binarized_attention_scores(speech, w_q, w_k, num_heads=2)
    assert torch.allclose(sp.binarized_attention_scores(3 * speech, 0.5 * w_q, 7 * w_k, num_heads=2), scores)
    perm = torch.randperm(30, generator=gen)
    assert torch.allclose(sp.binarized_attention_scores(speech[:, perm], w_q, w_k, num_heads=2), scores[:, perm],
                          atol=1e-6)


def test_half_precision_inputs_give_the_float32_selection():
    gen = torch.Generator().manual_seed(4)
    speech, text, w = torch.randn(1, 200, 64, generator=gen), torch.randn(1, 6, 64, generator=gen), \
        torch.randn(64, 64, generator=gen)
    # round to half first so both runs see identical values; the kernel must not compute in half
    s16, t16, w16 = speech.half(), text.half(), w.half()
    a = sp.speechprune_select(s16, t16, w16, w16, 100, 0.4, frame_size=10, num_heads=4)
    b = sp.speechprune_select(s16.float(), t16.float(), w16.float(), w16.float(), 100, 0.4, frame_size=10,
                              num_heads=4)
    assert torch.equal(a, b)


def test_ablations_select_through_one_phase():
    gen = torch.Generator().manual_seed(5)
    speech, text, w = torch.randn(1, 120, 8, generator=gen), torch.randn(1, 3, 8, generator=gen), torch.eye(8)
    only1 = sp.speechprune_select(speech, text, w, w, 60, 0.5, frame_size=10, use_phase2=False)
    r = sp.speech_text_similarity(speech, text)
    assert torch.equal(only1, sp.framewise_budget_select(r, 30, 10))
    only2 = sp.speechprune_select(speech, text, w, w, 60, 0.5, use_phase1=False)
    expected = sp.binarized_attention_scores(speech, w, w).topk(30).indices.sort().values
    assert torch.equal(only2, expected)


def test_bad_inputs_are_named():
    speech, text, w = torch.randn(1, 10, 4), torch.randn(1, 2, 4), torch.eye(4)
    with pytest.raises(ValueError, match="prune_rate"):
        sp.speechprune_select(speech, text, w, w, 10, 1.0)
    with pytest.raises(ValueError, match="n_phase1"):
        sp.speechprune_select(speech, text, w, w, 11, 0.2)
    with pytest.raises(ValueError, match="same B and D"):
        sp.speech_text_similarity(speech, torch.randn(1, 2, 5))
    with pytest.raises(ValueError, match="NaN"):
        sp.speech_text_similarity(torch.full((1, 2, 4), float("nan")), text)
    with pytest.raises(ValueError, match="num_heads"):
        sp.binarized_attention_scores(speech, w, w, num_heads=3)
    with pytest.raises(ValueError, match="overflow"):
        sp.framewise_budget_select(torch.rand(1, 10), 3, overflow="spill")
    with pytest.raises(ValueError, match="text_mask"):
        sp.speech_text_similarity(speech, text, torch.zeros(1, 2, dtype=torch.bool))


def test_text_mask_ignores_padding_tokens():
    speech, text = p1_inputs()
    padded = torch.cat([text, torch.tensor([[[0.0, 1.0]]])], dim=1)
    masked = sp.speech_text_similarity(speech, padded, torch.tensor([[True, False]]))
    assert torch.allclose(masked, sp.speech_text_similarity(speech, text))


def test_baselines_and_key_retention():
    gen = torch.Generator().manual_seed(6)
    assert sp.truncate_indices(10, 4).tolist() == [0, 1, 2, 3]
    rap = sp.random_prune_indices(100, 30, gen)
    assert len(rap.unique()) == 30 and torch.equal(rap, rap.sort().values)
    rac = sp.random_crop_indices(100, 30, gen)
    assert torch.equal(rac, torch.arange(rac[0], rac[0] + 30))
    assert sp.key_sentence_retention(torch.tensor([2, 3, 4, 9]), (3, 7)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="n_keep"):
        sp.random_crop_indices(5, 6, gen)


def test_prebinarized_weights_give_the_same_scores():
    gen = torch.Generator().manual_seed(7)
    speech, w_q, w_k = torch.randn(1, 20, 8, generator=gen), torch.randn(8, 8, generator=gen), torch.randn(8, 8,
                                                                                                          generator=gen)
    signs = sp.binarize_weight(w_q), sp.binarize_weight(w_k)
    assert torch.equal(sp.binarized_attention_scores(speech, w_q, w_k, 2),
                       sp.binarized_attention_scores(speech, *signs, 2, weights_binarized=True))
