"""The hwsw chapter's experiment functions: modelled tables, the llm-analysis cross-check, measurement plumbing."""

from fractions import Fraction

import pytest

from replbook import costmodel as cm
from replbook import measure
from replbook.experiments.hwsw import PARAMS, report
from replbook.experiments.hwsw import miniature as hwsw
from replbook.experiments.hwsw.common import HwswResults, Measured, Quantised
from replbook.profiles import config, resolve


def hand_made(measured: Measured, hardware=("h100-sxm",), flash=(4096,)) -> HwswResults:
    """Results with the modelled tables the claims read and a given measurement."""
    return HwswResults(
        hardware=[cm.load_hardware(h) for h in hardware],
        points=hwsw.columns(hwsw.roofline_points(list(hardware), 512, 4096, [1])), kv={},
        quant=hwsw.columns(hwsw.quantisation_table(cm.LLAMA2_7B, "h100-sxm", 4096)), sparsity={},
        flash=hwsw.columns(hwsw.flash_table(list(flash))), spec={}, zero={}, kv_crossover=hwsw.kv_crossovers(),
        measured=measured)


def test_roofline_points_put_decode_left_and_prefill_right_of_the_ridge():
    points = hwsw.roofline_points(["h100-sxm", "a100-sxm-80gb"], 512, 4096, [1])
    assert set(points[points.phase == "decode"].bound) == {"memory"}
    assert set(points[points.phase == "prefill"].bound) == {"compute"}


def test_kv_crossover_is_exact():
    assert hwsw.kv_crossover_tokens(cm.LLAMA2_7B) == Fraction(13_476_831_232, 524_288)
    assert round(float(hwsw.kv_crossover_tokens(cm.LLAMA2_7B))) == 25_705


def test_quantised_decode_time_follows_bytes_when_memory_bound():
    table = hwsw.quantisation_table(cm.LLAMA2_7B, "h100-sxm", 4096)
    assert (table["time ratio"] - table["bytes ratio"]).abs().max() < 1e-9
    assert table.loc[(table["weight bits"] == 16) & (table["KV bits"] == 16), "time ratio"].item() == 1.0


def test_speechprune_affine_fit_reproduces_the_published_column():
    fit = hwsw.speechprune_fit()
    assert (fit["affine model"] - fit["published TFLOPS"]).abs().max() < 0.01
    assert fit.slope.iloc[0] == pytest.approx(10.675, abs=1e-3)


@pytest.mark.skipif(not hwsw.llm_analysis_available(), reason="llm-analysis not installed (make setup installs it)")
def test_llm_analysis_agrees_on_kv_and_within_five_percent_on_latency():
    table = hwsw.compare_llm_analysis()
    kv = table[table.quantity == "KV cache bytes"]
    assert (kv["ours"] == kv["llm-analysis"]).all()
    assert table[table.quantity.str.endswith("ms")]["relative difference"].abs().max() <= 0.05


def test_measurement_plumbing_and_claims_on_tiny_sizes():
    params = resolve(PARAMS, "smoke", {"matmul_sizes": [32], "gemv_n": 64, "bandwidth_mib": 1,
                                            "lm_d_model": 64, "lm_vocab": 128, "lm_seq": 8, "repeats": 1})
    measured = hwsw.measure_machine(config(hwsw.MachineSetup, params))
    table = report.measured_table(measured)
    assert (table["ms"] > 0).all() and len(table) == 1 + 1 + 2 + 2
    assert measured.lm_config.d_model == 64
    results = hand_made(measured, hardware=tuple(params["hardware"]))
    data, arrays = results.to_data()  # the results survive their saved form
    again = HwswResults.from_data(data, arrays)
    assert again.measured == measured and again.hardware == results.hardware and again.points == results.points
    claims = report.claims(again, params)
    assert [c.id for c in claims] == ["C1", "C2", "C3", "C4"]
    assert claims[1].verdict == "illustrated" and "25,705" in claims[1].ours
    assert {c.verdict for c in claims[1:]} == {"illustrated"}  # what the cost model implies is never "reproduced"


def c1_verdict(bandwidth_share: float, decode_ai: float, ridge_bw: float = 1e10, peak: float = 1e11) -> str:
    """C1 on a hand-made measurement: a machine of ``peak`` FLOP/s and ``ridge_bw`` B/s copy bandwidth, a decode
    step at ``decode_ai`` FLOP/B moving bytes at ``bandwidth_share`` of the copy bandwidth."""
    from replbook.measure import Measurement

    seconds = 1e-3
    nbytes = bandwidth_share * ridge_bw * seconds
    decode = Measurement("tiny Llama decode, B=1", decode_ai * nbytes, nbytes, seconds)
    machine = cm.Hardware("hand-made", {"fp32": peak}, ridge_bw, 0, "test", "measured")
    measured = Measured(points=[], bandwidth={}, phases=[decode], machine=machine, dtype="fp32")
    return report.claims(hand_made(measured), {"profile": "cpu"})[0].verdict


def test_c1_rule_reaches_each_outcome_on_hand_made_measurements():
    assert c1_verdict(0.8, 1.0) == "reproduced"  # left of the ridge (10 FLOP/B), near the copy bandwidth
    assert c1_verdict(0.2, 1.0) == "inconclusive"  # left of the ridge but far from the bandwidth: overheads?
    assert c1_verdict(0.8, 50.0) == "not reproduced"  # right of the ridge: compute-bound


def test_measure_rejects_cuda_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    params = resolve(PARAMS, "smoke", {"device": "cuda"})
    with pytest.raises(RuntimeError, match="parameter 'device' is 'cuda' but no GPU"):
        hwsw.measure_machine(config(hwsw.MachineSetup, params))


def test_measurement_objects():
    m = measure.Measurement("x", flops=10.0, bytes=5.0, seconds=2.0)
    assert (m.flop_rate, m.byte_rate, m.ai) == (5.0, 2.5, 2.0)


def test_sparsity_and_lora_tables():
    table = hwsw.sparsity_table(cm.LLAMA2_7B, "h100-sxm", 4096).set_index("weights")
    assert table.loc["dense", "time ratio"] == 1.0
    assert table.loc["2:4 structured", "time ratio"] < 0.7
    assert table.loc["unstructured 50% (CSR)", "time ratio"] > 1.0  # 32-bit indices cost more than they save
    assert hwsw.clip_vit_b32_image_params() == 87_849_216  # OpenCLIP ViT-B/32 visual tower
    lora = hwsw.lora_share_table([16]).set_index("method")
    assert lora.loc["LoRA r=16 on q, v", "trainable"] == 16 * 1536 * 24


def test_fedprophet_tie_reports_modules_and_the_whole_model():
    table = hwsw.fedprophet_module_table()
    assert list(table.module) == ["a1", "a2", "a3+a4", "whole model (end-to-end)"]
    assert table["memory kB"].iloc[:-1].sum() == pytest.approx(table["memory kB"].iloc[-1])
    assert 0 < table["share of whole model"].iloc[:-1].max() < 1


# ---------------------------------------------------------------------------------------------------- SmolLM2 int8


def tiny_llama_model():
    return measure.tiny_llama(d_model=64, n_layers=2, n_heads=4, d_ff=128, vocab=96)


def test_weight_bytes_count_fp32_and_packed_int8_linears_by_hand():
    import torch
    from torch import nn

    from replbook.experiments.hwsw import quantised

    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8, bias=False))
    assert quantised.weight_bytes(model) == quantised.linear_weight_bytes(model) == 4 * (64 * 32 + 32 + 32 * 8)
    int8 = quantised.quantise_int8(model)
    # int8 weights, per output row an fp64 scale and an int64 zero point, fp32 bias
    assert int8[0].weight().qscheme() == torch.per_channel_affine
    assert quantised.weight_bytes(int8) == quantised.linear_weight_bytes(int8) == 64 * 32 + 32 * 8 + 16 * 40 + 4 * 32
    kept = quantised.quantise_int8(model, keep=("2",))  # the second linear stays fp32
    assert quantised.linear_weight_bytes(kept) == 64 * 32 + 16 * 32 + 4 * 32 + 4 * 32 * 8
    embedding = nn.Embedding(10, 4)
    tied = nn.ModuleDict({"embed": embedding, "head": nn.Linear(4, 10, bias=False)})
    tied["head"].weight = embedding.weight
    assert quantised.weight_bytes(tied) == 4 * 40  # a tied weight counts once


def test_int8_and_bf16_copies_stay_close_to_fp32_and_leave_it_untouched():
    import torch

    from replbook.experiments.hwsw import quantised

    model = tiny_llama_model()
    ids = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids).logits
        for precision, tol in (("int8", 0.1), ("bf16", 0.05)):
            out = quantised.as_precision(model, precision)(ids).logits.float()
            assert (out - ref).abs().max() / ref.abs().max() < tol
        assert torch.equal(model(ids).logits, ref) and next(model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        quantised.as_precision(model, "fp8")


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    from types import SimpleNamespace

    import torch

    from replbook.experiments.hwsw import quantised

    class Uniform(torch.nn.Module):
        def forward(self, input_ids):
            return SimpleNamespace(logits=torch.zeros(*input_ids.shape, 50))

    assert quantised.perplexity(Uniform(), torch.randint(0, 50, (5, 7)), batch_size=2) == pytest.approx(50.0)


def test_ratio_interval_and_the_bytes_prediction():
    import numpy as np

    from replbook.experiments.hwsw import quantised

    base = np.array([1.0, 1.1, 0.9, 1.0, 1.05])
    ratio, lo, hi = quantised.ratio_interval(2 * base, base)
    assert (ratio, lo, hi) == pytest.approx((2.0, 2.0, 2.0))  # paired: a load change between rounds cancels
    model = tiny_llama_model()
    config = model.config
    fp32_bytes = quantised.linear_weight_bytes(model)
    assert fp32_bytes == 4 * cm.linear_params(cm.TransformerConfig.from_hf(config))  # the cost model's count
    assert quantised.predicted_decode_ratio(config, fp32_bytes, 1, 16) == 1.0
    int8, bf16 = (quantised.predicted_decode_ratio(config, fp32_bytes // d, 1, 16) for d in (4, 2))
    assert 0.25 < int8 < bf16 < 1.0  # weights shrink 4× and 2×; activations and the KV cache stay fp32
    all_bf16 = quantised.predicted_decode_ratio(config, fp32_bytes // 2, 1, 16, other_bytes=2)
    assert all_bf16 == pytest.approx(0.5)  # everything at half the bytes


def test_every_timed_decode_step_sees_the_same_context():
    from replbook.experiments.hwsw import quantised

    timer = quantised.PhaseTimer(tiny_llama_model(), batch=2, seq_len=8, steps=3)
    for _ in range(2):
        assert timer.decode() > 0 and timer.cache.get_seq_length() == 8
    assert timer.prefill() > 0 and timer.cache.get_seq_length() == 8


def test_measure_precisions_on_a_tiny_llama():
    import torch

    from replbook.experiments.hwsw import quantised

    model = tiny_llama_model()
    ids = torch.randint(0, 96, (2, 8), generator=torch.Generator().manual_seed(0))
    out = quantised.measure_precisions(model, ["fp32", "int8", "int8-all"], [1, 2], 8, 3, ids)
    table = report.frame(out.table)
    assert list(zip(table.precision, table.batch, strict=True)) == [
        (p, b) for b in (1, 2) for p in ("fp32", "int8", "int8-all")]
    mb = table.set_index(["precision", "batch"])["weight MB"]
    assert mb[("int8-all", 1)] < mb[("int8", 1)] < mb[("fp32", 1)]  # int8 keeps the down-projections in fp32
    assert (table[table.precision == "fp32"]["decode time ratio to fp32"] == 1.0).all()
    assert all(len(s) == 3 and (s > 0).all() for by_batch in out.samples.values() for s in by_batch.values())
    assert sorted(out.samples) == ["fp32", "int8", "int8-all"] and sorted(out.samples["int8"]) == [1, 2]
    with pytest.raises(ValueError, match="must include fp32"):
        quantised.measure_precisions(model, ["int8"], [1], 8, 1, ids)


@pytest.mark.parametrize("ratio, lo, hi, verdict", [
    (0.30, 0.27, 0.33, "reproduced"),  # below 1 and as low as the bytes predict
    (0.80, 0.75, 0.85, "partly"),  # faster, but far from proportional
    (1.20, 1.10, 1.30, "not reproduced"),  # int8 slower than fp32
    (0.70, 0.25, 1.10, "inconclusive"),  # holds both 1 and the bytes ratio
])
def test_measured_c3_rule_reaches_each_outcome(ratio, lo, hi, verdict):
    import pandas as pd

    table = pd.DataFrame([{"precision": p, "batch": 1, "decode time ratio to fp32": r, "ratio lo": a, "ratio hi": b,
                           "predicted ratio (bytes)": pred, "decode ms/token": 10.0, "decode GB/s": 5.0}
                          for p, r, a, b, pred in (("fp32", 1.0, 0.9, 1.1, 1.0), ("int8", ratio, lo, hi, 0.30))])
    quantised = Quantised(hwsw.columns(table), {}, seq_len=16, threads=2)
    claim = report.quantisation_claim(quantised, "cpu", copy_bandwidth=20e9)
    assert claim.id == "C3-measured" and claim.verdict == verdict
    assert "25% of this machine's copy bandwidth" in claim.ours


def test_qlm_precisions_without_fp32_is_refused():
    from replbook.profiles import ParameterError

    with pytest.raises(ParameterError, match="'qlm_precisions' must include 'fp32'"):
        resolve(PARAMS, "smoke", {"qlm_precisions": ["int8"]}, check_assets=False)
    with pytest.raises(ParameterError, match="must be one of"):
        resolve(PARAMS, "smoke", {"qlm_precisions": ["fp32", "int4"]}, check_assets=False)
