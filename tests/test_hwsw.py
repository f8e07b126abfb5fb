"""The hwsw chapter's experiment functions: modelled tables, the llm-analysis cross-check, measurement plumbing."""

from fractions import Fraction

import pytest

from replbook import costmodel as cm
from replbook import measure
from replbook.experiments.hwsw import PARAMS, report
from replbook.experiments.hwsw import miniature as hwsw
from replbook.profiles import resolve


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
    measured = hwsw.measure_machine(params)
    table = hwsw.measured_table(measured)
    assert (table["ms"] > 0).all() and len(table) == 1 + 1 + 2 + 2
    assert measured["lm_config"].d_model == 64
    points = hwsw.roofline_points(params["hardware"], 512, 4096, [1])
    quant = hwsw.quantisation_table(cm.LLAMA2_7B, "h100-sxm", 4096)
    claims = report.make_claims(points, quant, hwsw.flash_table([4096]), measured, params)
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
    measured = {"phases": [decode], "machine": machine, "dtype": "fp32"}
    points = hwsw.roofline_points(["h100-sxm"], 512, 4096, [1])
    quant = hwsw.quantisation_table(cm.LLAMA2_7B, "h100-sxm", 4096)
    params = {"profile": "cpu"}
    return report.make_claims(points, quant, hwsw.flash_table([4096]), measured, params)[0].verdict


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
        hwsw.measure_machine(params)


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
