"""LoBAM's kernels against the specification's hand-worked examples (E1–E4) and properties: amplification, the exact
rank-2r packing through peft, task arithmetic and TIES (checked by hand and against peft's own TIES), the trigger,
BadMerging's loss, the attack success rate and the λ search."""

import math

import pytest
import torch
from torch import nn

from replbook import lobam

# spec §6: rank-1 LoRAs with scaling 1
B_MAL, A_MAL = torch.tensor([[1.0], [2.0], [0.0]]), torch.tensor([[1.0, 0.0]])
B_BEN, A_BEN = torch.tensor([[0.0], [1.0], [1.0]]), torch.tensor([[1.0, 1.0]])
E1 = torch.tensor([[2.0, 0.0], [3.0, -1.0], [-1.0, -1.0]])


def test_e1_amplification_by_hand():
    d_mal, d_ben = lobam.lora_delta(B_MAL, A_MAL, 1.0), lobam.lora_delta(B_BEN, A_BEN, 1.0)
    assert torch.equal(d_mal, torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(d_ben, torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
    assert torch.equal(lobam.amplify(d_mal, d_ben, 2.0), E1)
    assert torch.equal(lobam.amplify(d_mal, d_ben, 1.0), d_mal)  # λ = 1: the naive attack
    # on state dicts, key by key; θ_pre cancels, so full weights and updates amplify alike
    pre = torch.ones(3, 2)
    out = lobam.amplify({"w": pre + d_mal}, {"w": pre + d_ben}, 2.0)
    assert torch.equal(out["w"], pre + E1)


def test_e2_packing_is_exact():
    B, A = lobam.pack_amplified_lora(B_MAL, A_MAL, B_BEN, A_BEN, 2.0)
    assert torch.equal(B, torch.tensor([[2.0, 0.0], [4.0, -1.0], [0.0, -1.0]]))
    assert torch.equal(A, torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert torch.equal(B @ A, E1)
    # with scalings other than 1 the packed adapter still equals λ ΔW_mal + (1 − λ) ΔW_ben
    B, A = lobam.pack_amplified_lora(B_MAL, A_MAL, B_BEN, A_BEN, 3.0, scaling_mal=0.5, scaling_ben=2.0)
    expected = 3.0 * lobam.lora_delta(B_MAL, A_MAL, 0.5) - 2.0 * lobam.lora_delta(B_BEN, A_BEN, 2.0)
    assert torch.allclose(B @ A, expected)


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.v_proj = nn.Linear(6, 5), nn.Linear(5, 4)

    def forward(self, x):
        return self.v_proj(torch.relu(self.q_proj(x)))


def _peft_with_two_adapters(rank: int = 2):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = TwoLayer()
    pre = {k: v.clone() for k, v in base.state_dict().items()}
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(base, config, adapter_name="benign")
    model.add_adapter("malicious", config)
    with torch.no_grad():  # non-zero B matrices (peft starts them at zero), different per adapter
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn_like(param))
    return model, pre


def _merged_weights(model, adapter: str) -> dict[str, torch.Tensor]:
    """θ_pre + ΔW of one adapter, without changing the model."""
    out = {}
    for name in ("q_proj", "v_proj"):
        layer = model.base_model.model.get_submodule(name)
        out[f"{name}.weight"] = layer.base_layer.weight + layer.get_delta_weight(adapter)
        out[f"{name}.bias"] = layer.base_layer.bias
    return {k: v.detach().clone() for k, v in out.items()}


@pytest.mark.parametrize("lam", [1.0, 2.0, 4.5])
def test_amplified_adapter_is_a_rank_2r_peft_adapter_equal_to_amplify(lam):
    model, _pre = _peft_with_two_adapters(rank=2)
    w_mal, w_ben = _merged_weights(model, "malicious"), _merged_weights(model, "benign")
    assert lobam.amplified_adapter(model, "malicious", "benign", lam, "upload") == "upload"
    layer = model.base_model.model.q_proj
    assert layer.lora_A["upload"].weight.shape[0] == 4  # rank r_m + r_b
    assert layer.scaling["upload"] == pytest.approx(1.0)
    model.set_adapter("upload")
    merged = model.merge_and_unload(adapter_names=["upload"]).state_dict()
    expected = lobam.amplify(w_mal, w_ben, lam)
    for key, value in expected.items():
        assert torch.allclose(merged[key], value, atol=1e-5), key


def test_amplified_adapter_names_a_missing_adapter():
    model, _ = _peft_with_two_adapters()
    with pytest.raises(KeyError, match="'evil' is not in the model"):
        lobam.amplified_adapter(model, "evil", "benign", 2.0)


def test_e3_task_arithmetic_and_task_vectors():
    pre = {"w": torch.zeros(3, 2), "steps": torch.tensor(3)}
    tau2 = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    tv_upload = lobam.task_vector({"w": E1, "steps": torch.tensor(5)}, pre)
    assert set(tv_upload) == {"w"}  # integer buffers are not weights
    merged = lobam.task_arithmetic(pre, [tv_upload, {"w": tau2}], coef=0.3)
    assert torch.allclose(merged["w"], torch.tensor([[0.9, 0.3], [0.9, -0.3], [-0.3, 0.0]]))
    assert torch.equal(merged["steps"], torch.tensor(3))  # untouched keys keep θ_pre
    with pytest.raises(KeyError, match="same keys"):
        lobam.task_vector({"w": E1}, {"v": E1})
    with pytest.raises(ValueError, match="at least one"):
        lobam.task_arithmetic(pre, [])


def test_ties_by_hand():
    """Two task vectors of 4 entries, k = 0.5 (keep 2 each): trim, elect the sign of the sum, disjoint sum/mean."""
    pre = {"a": torch.zeros(2), "b": torch.zeros(2)}
    t1 = {"a": torch.tensor([3.0, -1.0]), "b": torch.tensor([0.5, 2.0])}  # keeps 3 and 2
    t2 = {"a": torch.tensor([-1.0, -4.0]), "b": torch.tensor([1.0, 0.2])}  # keeps -4 and 1
    # trimmed: t1 = [3, 0, 0, 2], t2 = [0, -4, 1, 0]; signs of the sums: [+, -, +, +]
    out = lobam.ties_merge(pre, [t1, t2], k=0.5, coef=1.0)
    assert torch.equal(out["a"], torch.tensor([3.0, -4.0])) and torch.equal(out["b"], torch.tensor([1.0, 2.0]))
    # a conflict: entry 0 is +3 in t1 and −2 in t2 → elected sign +, only +3 kept; dis-mean divides by agreeing count
    t3 = {"a": torch.tensor([-2.0, -3.0]), "b": torch.tensor([0.0, 2.0])}
    out = lobam.ties_merge(pre, [t1, t3], k=0.5, coef=0.5, merge="dis-mean")
    # trimmed t1 = [3, 0, 0, 2], t3 = [-2, -3, 0, 2] (ties at |2| kept); sums [1, -3, 0, 4]
    assert torch.allclose(out["a"], 0.5 * torch.tensor([3.0, -3.0]))
    assert torch.allclose(out["b"], 0.5 * torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="'k'"):
        lobam.ties_merge(pre, [t1], k=0.0)
    with pytest.raises(ValueError, match="'merge'"):
        lobam.ties_merge(pre, [t1], merge="sum")


def test_ties_trims_over_the_whole_task_vector_and_sums_agreeing_values():
    """Top-k is taken over all keys together (a per-key top-k would keep one entry of each key), and dis-sum adds
    only the values that agree with the elected sign."""
    pre = {"a": torch.zeros(2), "b": torch.zeros(2)}
    big_a = {"a": torch.tensor([5.0, -4.0]), "b": torch.tensor([0.2, 0.1])}
    out = lobam.ties_merge(pre, [big_a], k=0.5, coef=1.0)
    assert torch.equal(out["a"], torch.tensor([5.0, -4.0])) and torch.equal(out["b"], torch.zeros(2))
    # entry a[0]: +5, +1 and −2 are all kept (k = 1); the sum +4 elects +, so dis-sum gives 5 + 1 = 6
    tvs = [{"a": torch.tensor([5.0, 0.0]), "b": torch.zeros(2)}, {"a": torch.tensor([1.0, 0.0]), "b": torch.zeros(2)},
           {"a": torch.tensor([-2.0, 0.0]), "b": torch.zeros(2)}]
    out = lobam.ties_merge(pre, tvs, k=1.0, coef=0.3)
    assert torch.allclose(out["a"], torch.tensor([1.8, 0.0]))


def test_ties_dis_mean_matches_peft_on_one_tensor():
    """peft's ``ties`` (per-tensor magnitude pruning, 'total' sign election, disjoint mean) is ours with one key."""
    from peft.utils.merge_utils import ties

    torch.manual_seed(1)
    tvs = [torch.randn(6, 5) for _ in range(3)]
    theirs = ties(tvs, torch.ones(3), density=0.4)
    ours = lobam.ties_merge({"w": torch.zeros(6, 5)}, [{"w": t} for t in tvs], k=0.4, coef=1.0, merge="dis-mean")
    assert torch.allclose(ours["w"], theirs, atol=1e-6)


def test_norm_and_cosine():
    a, b = {"x": torch.tensor([3.0, 0.0]), "y": torch.tensor([4.0])}, {"x": torch.tensor([0.0, 1.0]),
                                                                         "y": torch.tensor([0.0])}
    assert lobam.state_norm(a) == pytest.approx(5.0)
    assert lobam.cosine(a, b) == pytest.approx(0.0)
    assert lobam.cosine(a, a) == pytest.approx(1.0)
    assert lobam.cosine(a, {k: -v for k, v in a.items()}) == pytest.approx(-1.0)


def test_trigger_mask_and_application():
    mask = lobam.corner_mask((1, 5, 5), 2)
    assert mask.sum() == 4 and mask[0, 3:, 3:].eq(1).all() and mask[0, :3].eq(0).all()
    x = torch.zeros(2, 1, 5, 5)
    out = lobam.apply_trigger(x, torch.full((1, 5, 5), 0.7), mask)
    assert torch.allclose(out[:, :, 3:, 3:], torch.tensor(0.7)) and out[:, :, :3].eq(0).all()
    with pytest.raises(ValueError, match="'patch'"):
        lobam.corner_mask((1, 5, 5), 6)


def test_optimised_trigger_pushes_a_linear_model_to_the_target():
    """A linear model that reads only the corner pixels: the optimised patch makes every image the target class,
    and only the corner changes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[2, 15] = 5.0  # class 2 rises with the bottom-right pixel
        model[1].bias.copy_(torch.tensor([1.0, 1.0, -1.0]))
    x = torch.rand(32, 1, 4, 4) * 0.1
    mask = lobam.corner_mask((1, 4, 4), 1)
    patch = lobam.optimise_trigger(model, x, 2, mask, steps=3, lr=0.2, batch_size=8,
                                   generator=torch.Generator().manual_seed(0))
    assert patch[0, 3, 3] == pytest.approx(1.0)  # clamped at the top of the image range
    assert model(lobam.apply_trigger(x, patch, mask)).argmax(1).eq(2).all()
    assert model(x).argmax(1).ne(2).all()


def test_badmerging_loss_by_hand():
    """With an identity head, r = 1 drops f_pre; r = 0 uses only f_pre; α weights the backdoor term."""
    head = nn.Identity()
    logits, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    f_trig, f_pre = torch.tensor([[0.0, 3.0]]), torch.tensor([[1.0, 1.0]])
    ce = lambda z, t: float(torch.nn.functional.cross_entropy(z, torch.tensor([t])))  # noqa: E731
    clean = ce(logits, 0)
    assert float(lobam.badmerging_loss(logits, y, f_trig, f_pre, head, 1, alpha=2.0, r=1.0)) == pytest.approx(
        clean + 2.0 * ce(f_trig, 1))
    assert float(lobam.badmerging_loss(logits, y, f_trig, f_pre, head, 1, alpha=2.0, r=0.0)) == pytest.approx(
        clean + 2.0 * math.log(2.0))
    mixed = 0.5 * f_trig + 0.5 * f_pre
    assert float(lobam.badmerging_loss(logits, y, f_trig, f_pre, head, 1, alpha=5.0, r=0.5)) == pytest.approx(
        clean + 5.0 * ce(mixed, 1))


def test_e4_attack_success_rate():
    labels = torch.cat([torch.full((10,), 1), torch.zeros(90, dtype=torch.long)])
    preds = torch.cat([torch.full((10,), 1), torch.full((81,), 1), torch.zeros(9, dtype=torch.long)])
    assert lobam.attack_success_rate(preds, labels, 1) == pytest.approx(81 / 90)  # target-class images excluded
    with pytest.raises(ValueError, match="outside the target class"):
        lobam.attack_success_rate(torch.ones(3), torch.ones(3), 1)


def test_select_lambda_on_a_monotone_check():
    calls = []

    def ok(lam):
        calls.append(lam)
        return lam <= 2.37

    lam = lobam.select_lambda(ok, 1.0, 16.0, tol=0.01)
    assert 2.36 <= lam <= 2.37 and ok(lam)
    assert len(calls) < 20  # bisection, not a scan
    assert lobam.select_lambda(lambda lam: True, 1.0, 8.0) == 8.0
    assert lobam.select_lambda(lambda lam: False, 1.0, 8.0) == 1.0  # nothing passes: the naive attack
    with pytest.raises(ValueError, match="lo < hi"):
        lobam.select_lambda(ok, 2.0, 2.0)
