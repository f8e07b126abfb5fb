"""The cost model against the specification's exact worked numbers (hwsw.md §5)."""

from fractions import Fraction

import pytest

from replbook import costmodel as cm
from replbook.costmodel import LLAMA2_7B, LLAMA2_70B, LLAMA3_8B


def test_parameter_counts_match_the_public_checkpoints():
    assert cm.param_count(LLAMA2_7B) == 6_738_415_616
    assert cm.param_count(LLAMA3_8B) == 8_030_261_248
    assert cm.param_count(LLAMA2_70B) == 68_976_648_192
    assert cm.linear_params(LLAMA2_7B) == 6_607_077_376


def test_kv_cache_bytes():
    assert cm.kv_cache_bytes(LLAMA2_7B, 1, 4096, 2) == 2_147_483_648  # 2 GiB, 524,288 B per token
    assert cm.kv_cache_bytes(LLAMA2_7B, 1, 544, 2) == 285_212_672
    assert cm.kv_cache_bytes(LLAMA2_70B, 1, 4096, 2) == 1_342_177_280  # GQA-8
    assert cm.kv_cache_bytes(LLAMA3_8B, 1, 8192, 2) == 1_073_741_824


def test_gemm_and_gemv_cost():
    c = cm.gemm_cost(4096, 4096, 4096, 2, 2, 2)
    assert (c.flops, c.bytes, c.ai) == (137_438_953_472, 100_663_296, Fraction(4096, 3))
    v = cm.gemm_cost(1, 4096, 4096, 2, 2, 2)
    assert (v.flops, v.bytes, v.ai) == (33_554_432, 33_570_816, Fraction(2048, 2049))


def test_decode_flops_per_token():
    ops = cm.decode_ops(LLAMA2_7B, batch=1, context=4096)
    linear = cm.total(ops[:-1])
    assert linear.flops == 13_214_154_752
    assert ops[-1].flops == 4 * 32 * 4096 * 4096 == 2_147_483_648


@pytest.mark.parametrize("cfg, ratio", [(LLAMA2_7B, 1), (LLAMA2_70B, 8), (LLAMA3_8B, 4)])
@pytest.mark.parametrize("batch, context", [(1, 1), (3, 512), (16, 8192)])
def test_decode_attention_intensity_is_the_gqa_ratio(cfg, ratio, batch, context):
    assert cm.decode_ops(cfg, batch, context)[-1].ai == ratio


def test_ridge_points_and_decode_times():
    h100, a100 = cm.load_hardware("h100-sxm"), cm.load_hardware("a100-sxm-80gb")
    assert cm.ridge_point(h100, "bf16") == pytest.approx(989.4e12 / 3.35e12)
    assert cm.ridge_point(a100, "fp16") == pytest.approx(153.016, abs=1e-3)
    assert cm.decode_time(LLAMA2_7B, a100, 1, 0, "fp16") == pytest.approx(6.480703654732713e-3, rel=1e-12)
    assert cm.decode_time(LLAMA2_7B, a100, 1, 512, "fp16") == pytest.approx(6.612354197155468e-3, rel=1e-12)


def test_prefill_flops_and_time():
    full = cm.total(cm.prefill_ops(LLAMA2_7B, 1, 512))
    causal = cm.total(cm.prefill_ops(LLAMA2_7B, 1, 512, causal_discount=True))
    assert full.flops == 6_903_086_186_496
    assert causal.flops == 6_834_366_709_760
    a100 = cm.load_hardware("a100-sxm-80gb")
    assert cm.prefill_time(LLAMA2_7B, a100, 1, 512, "fp16", granularity="phase") == pytest.approx(22.125e-3, abs=5e-6)


def test_op_granularity_is_never_faster_than_phase():
    h100 = cm.load_hardware("h100-sxm")
    for batch, seq in [(1, 128), (8, 2048)]:
        ops = cm.prefill_ops(LLAMA2_7B, batch, seq)
        assert cm.phase_time(h100, ops, granularity="op") >= cm.phase_time(h100, ops, granularity="phase")


def test_flash_attention_removes_the_score_matrix_traffic():
    plain = cm.prefill_ops(LLAMA2_7B, 1, 2048, flash=False)[-1]
    flash = cm.prefill_ops(LLAMA2_7B, 1, 2048, flash=True)[-1]
    assert plain.bytes - flash.bytes == 4 * 32 * 32 * 2048 * 2048 * 2
    assert plain.flops == flash.flops


def test_quantized_weight_bytes():
    assert cm.quantized_weight_bytes(6_607_077_376, 4) == 3_303_538_688
    assert cm.quantized_weight_bytes(6_607_077_376, 4, group_size=128, scale_bytes=2) == 3_406_774_272


def test_speculative_decoding():
    assert cm.spec_expected_tokens(Fraction(4, 5), 4) == Fraction(2101, 625)
    assert cm.spec_expected_tokens(1, 4) == 5
    assert cm.spec_speedup(Fraction(4, 5), 4, Fraction(1, 20)) == Fraction(2101, 625) / Fraction(6, 5)


def test_zero_stages():
    gb = [cm.zero_memory_bytes(7.5e9, stage, 64) / 1e9 for stage in range(4)]
    assert gb == pytest.approx([120, 31.40625, 16.640625, 1.875])
    with pytest.raises(ValueError, match="ZeRO stage"):
        cm.zero_memory_bytes(1, 4, 1)


def test_attention_io():
    assert cm.attention_io_standard(4096, 128) == 69_206_016
    assert cm.attention_io_flash(4096, 128, block_rows=128) == 34_603_008


def test_training_flops():
    assert cm.training_flops(6_738_415_616, 2e12) == pytest.approx(8.0860987392e22, rel=1e-12)
    assert cm.training_flops(10, 10, recompute=True) == 800


def test_sparsity_lora_and_pruning():
    gemm = cm.gemm_cost(1, 4096, 4096, 2, 2, 2)
    two_four = cm.sparse_weight_cost(gemm, 4096 * 4096, 2, Fraction(1, 2), index_bits=2)
    assert two_four.flops == gemm.flops // 2
    assert two_four.bytes == 8192 + 8192 + 4096 * 4096 // 2 * 2 + 4096 * 4096 // 2 // 4
    assert cm.lora_params([(768, 768), (768, 3072)], rank=8) == 8 * (1536 + 3840)
    assert cm.prune_tokens(750, 0.8) == 600
    with pytest.raises(ValueError, match="keep_ratio"):
        cm.prune_tokens(750, 0.0)


def test_from_hf_reads_a_transformers_config():
    from transformers import LlamaConfig

    hf = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256)
    assert cm.TransformerConfig.from_hf(hf) == LLAMA3_8B


def test_hardware_table_is_complete_and_errors_are_clear():
    table = cm.hardware_table()
    expected = {"h100-sxm", "h100-pcie", "h200", "a100-sxm-80gb", "l40s", "l4", "b200-hgx", "tpu-v5e", "mi300x"}
    assert expected <= set(table)
    assert all(hw.source and hw.mem_bw > 0 and hw.peak and min(hw.peak.values()) > 0 for hw in table.values())
    machine = table["this-machine-2vcpu"]
    assert machine.confidence == "measured" and set(machine.peak) == {"fp32"}
    with pytest.raises(KeyError, match="unknown hardware 'h300'"):
        cm.load_hardware("h300")
    with pytest.raises(ValueError, match="no 'fp8' peak"):
        cm.ridge_point(cm.load_hardware("a100-sxm-80gb"), "fp8")
