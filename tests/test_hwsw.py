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
    # every repeat is kept (here one): the GEMV, the copy and sum, each phase; the best is the point's time
    for m in measured.points + list(measured.bandwidth.values()) + measured.phases:
        assert len(m.repeat_seconds) == 1 and m.seconds == min(m.repeat_seconds)
    results = hand_made(measured, hardware=tuple(params["hardware"]))
    data, arrays = results.to_data()  # the results survive their saved form
    again = HwswResults.from_data(data, arrays)
    assert again.measured == measured and again.hardware == results.hardware and again.points == results.points
    claims = report.claims(again, params)
    assert [c.id for c in claims] == ["C1", "C2", "C3", "C4"]
    assert claims[1].verdict == "illustrated" and "25,705" in claims[1].ours
    assert {c.verdict for c in claims[1:]} == {"illustrated"}  # what the cost model implies is never "reproduced"


def hand_measured(decode_share: float, gemv_share: float = 0.8, spread: float = 0.0, decode_ai: float = 1.0,
                  bw: float = 1e10, peak: float = 1e11, prefill_share: float | None = None) -> Measured:
    """A hand-made measurement on a machine of ``peak`` FLOP/s and ``bw`` B/s copy bandwidth: a GEMV at
    ``gemv_share`` and a batch-1 decode step at ``decode_share`` of it (medians of five repeats, spread by ±``spread``
    of their time)."""
    from replbook.measure import Measurement

    seconds = 1e-3
    times = [seconds * (1 + spread * f) for f in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    copy = Measurement.timed("copy", 0, bw * seconds, [seconds] * 5)
    gemv = Measurement.timed("GEMV 64²", 2 * gemv_share * bw * seconds / 4, gemv_share * bw * seconds,
                             [seconds] * 5)
    nbytes = decode_share * bw * seconds
    decode = Measurement.timed("tiny Llama decode, B=1", decode_ai * nbytes, nbytes, times)
    phases = [decode]
    if prefill_share is not None:  # the compute-bound reference step: no effect for C1
        phases.insert(0, Measurement.timed("tiny Llama prefill, B=1", 1e9, prefill_share * bw * seconds,
                                           [seconds] * 5))
    machine = cm.Hardware("hand-made", {"fp32": peak}, bw, 0, "test", "measured")
    return Measured(points=[gemv], bandwidth={"copy": copy}, phases=phases, machine=machine, dtype="fp32")


def c1(decode_share: float, **kwargs):
    return report.claims(hand_made(hand_measured(decode_share, **kwargs)), {"profile": "cpu"})[0]


def test_c1_rule_reaches_each_outcome_on_hand_made_measurements():
    near = c1(0.8)  # near the copy bandwidth: memory-bound
    assert near.verdict == "reproduced" and near.premises == ("R2",)
    assert near.rule.estimate.mean == pytest.approx(0.8) and near.rule.effect == 0.5 and near.rule.null == 0.0
    assert c1(0.2).verdict == "partly"  # far from the bandwidth: overheads take the rest of the step
    spread = c1(0.6, spread=0.5).rule.estimate  # the interval comes from the repeats' medians
    assert spread.mean == pytest.approx(0.6) and spread.lo < spread.mean < spread.hi and spread.n == 5
    # R2: where even the GEMV does not reach half the copy bandwidth, no step can show it is memory-bound here
    slow = c1(0.8, gemv_share=0.3)
    assert slow.verdict == "not comparable" and "R2" in slow.reason and "would give reproduced" in slow.reason
    # the model's half is shown, not judged: a decode right of the ridge changes the text, not the verdict
    assert "model (shown, not judged)" in c1(0.8, decode_ai=50.0).ours
    # no effect is the byte rate of the same model's prefill, a compute-bound step: a decode no faster is not
    # memory-bound at all
    ref = c1(0.2, spread=0.1, prefill_share=0.05)
    assert ref.rule.null == pytest.approx(0.05) and ref.verdict == "partly"
    assert c1(0.05, spread=0.1, prefill_share=0.3).verdict == "not reproduced"


def test_premises_are_shares_of_the_copy_bandwidth_and_gate_the_measured_claims():
    import pandas as pd

    measured = hand_measured(0.3, gemv_share=0.7)
    rows = [{"precision": p, "batch": 1, "decode time ratio to fp32": r, "ratio lo": r - 0.02, "ratio hi": r + 0.02,
             "predicted ratio (bytes)": pred, "decode ms/token": 10.0, "decode GB/s": gbs}
            for p, r, pred, gbs in (("fp32", 1.0, 1.0, 6.0), ("int8", 0.5, 0.4, 3.0))]
    for fp32_gbs, holds, verdict in ((6.0, True, "partly"), (4.0, False, "not comparable")):
        rows[0]["decode GB/s"] = fp32_gbs
        results = hand_made(measured)
        results.quantised = Quantised(hwsw.columns(pd.DataFrame(rows)), {}, seq_len=16, threads=2)
        premises = {p.id: p for p in report.premises(results, {"profile": "cpu"})}
        assert premises["R1"].holds is holds and premises["R1"].measured == f"{fp32_gbs / 10:.2f}"
        assert premises["R2"].holds is True and premises["R2"].measured == "0.70"
        claims = {c.id: c for c in report.claims(results, {"profile": "cpu"})}
        assert claims["C3-measured"].verdict == verdict and claims["C3-measured"].premises == ("R1",)
        assert {claims[c].premises for c in ("C2", "C3", "C4")} == {()}  # illustrated claims need none


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
