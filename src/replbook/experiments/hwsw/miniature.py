"""The HW/SW co-design chapter: the survey's arguments computed by the cost model, checked against llm-analysis,
and placed beside measured points of the machine at hand.

Every table here is a function of ``replbook.costmodel`` (exact, analytical) or ``replbook.measure`` (timed).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import pandas as pd
import torch

from replbook import costmodel as cm
from replbook import measure
from replbook.experiments.hwsw.common import HwswResults, Measured, RecordedRun, Table
from replbook.experiments.hwsw.quantised import QuantSetup, measure_smollm2
from replbook.paths import project_root
from replbook.progress import progress

MODELS = {"Llama-2-7B": cm.LLAMA2_7B, "Llama-2-70B": cm.LLAMA2_70B, "Llama-3-8B": cm.LLAMA3_8B}
#: The recorded GPU run of benchmarks/roofline.py that the page shows (listed in the chapter's DATA_FILES).
RECORDED_GPU_RUN = "benchmarks/recorded/roofline_h100.json"


def columns(table: pd.DataFrame) -> Table:
    """A table as its columns of plain values (what the results keep)."""
    return {str(c): table[c].tolist() for c in table.columns}


# ---------------------------------------------------------------------------------------------------- modelled


def roofline_points(hardware: list[str], prompt_len: int, context: int, batches: list[int]) -> pd.DataFrame:
    """Prefill and decode of each preset model at each batch: AI, attainable FLOP/s and time on each accelerator
    (fp16 weights, activations and KV; op-granularity roofline)."""
    rows = []
    for hw_name in hardware:
        hw = cm.load_hardware(hw_name)
        for model, cfg in MODELS.items():
            for batch in batches:
                for phase, ops in (("prefill", cm.prefill_ops(cfg, batch, prompt_len)),
                                   ("decode", cm.decode_ops(cfg, batch, context, activations=True))):
                    t = cm.total(ops)
                    rows.append({"hardware": hw_name, "model": model, "phase": phase, "batch": batch,
                                 "AI (FLOP/B)": float(t.ai), "ridge (FLOP/B)": cm.ridge_point(hw, "fp16"),
                                 "bound": "compute" if t.ai >= cm.ridge_point(hw, "fp16") else "memory",
                                 "time (ms)": 1e3 * cm.phase_time(hw, ops, "fp16"),
                                 "attained TFLOP/s": t.flops / cm.phase_time(hw, ops, "fp16") / 1e12})
    return pd.DataFrame(rows)


def kv_table(contexts: list[int], batches: list[int]) -> pd.DataFrame:
    """KV-cache GB (fp16) against context for each preset, beside its fp16 weight GB."""
    rows = []
    for model, cfg in MODELS.items():
        for batch in batches:
            for t in contexts:
                rows.append({"model": model, "batch": batch, "context": t,
                             "KV GB": cm.kv_cache_bytes(cfg, batch, t) / 1e9,
                             "weights GB": 2 * cm.param_count(cfg) / 1e9})
    return pd.DataFrame(rows)


def kv_crossover_tokens(cfg: cm.TransformerConfig, weight_bytes_per_param: int = 2) -> Fraction:
    """B·T at which the fp16 KV cache outweighs the weights: weight bytes / KV bytes per token."""
    return Fraction(weight_bytes_per_param * cm.param_count(cfg), cm.kv_cache_bytes(cfg, 1, 1))


def quantisation_table(cfg: cm.TransformerConfig, hw_name: str, context: int, batch: int = 1) -> pd.DataFrame:
    """Decode time per step for 16/8/4-bit weights and 16/8-bit KV cache, and its ratio to the fp16 bytes."""
    hw = cm.load_hardware(hw_name)
    base = cm.decode_ops(cfg, batch, context, cm.Precision(2, 2, 2))
    rows = []
    for w_bits in (16, 8, 4):
        for kv_bits in (16, 8):
            p = cm.Precision(Fraction(w_bits, 8), 2, Fraction(kv_bits, 8))
            ops = cm.decode_ops(cfg, batch, context, p)
            rows.append({"weight bits": w_bits, "KV bits": kv_bits,
                         "decode ms": 1e3 * cm.phase_time(hw, ops, "fp16"),
                         "time ratio": cm.phase_time(hw, ops, "fp16") / cm.phase_time(hw, base, "fp16"),
                         "bytes ratio": cm.total(ops).bytes / cm.total(base).bytes})
    return pd.DataFrame(rows)


def sparsity_table(cfg: cm.TransformerConfig, hw_name: str, context: int, batch: int = 1) -> pd.DataFrame:
    """Decode time with dense, 2:4 structured and unstructured (CSR, 32-bit indices) sparse fp16 linear weights."""
    hw = cm.load_hardware(hw_name)
    ops = cm.decode_ops(cfg, batch, context)
    dense = cm.phase_time(hw, ops, "fp16")
    rows = []
    for label, density, index_bits in (("dense", 1, 0), ("2:4 structured", Fraction(1, 2), 2),
                                       ("unstructured 50% (CSR)", Fraction(1, 2), 32),
                                       ("unstructured 10% (CSR)", Fraction(1, 10), 32)):
        sparse = [op if op.name == "attention" else
                  cm.sparse_weight_cost(op, op.flops // (2 * batch), 2, density, index_bits) for op in ops]
        t = cm.phase_time(hw, sparse, "fp16")
        rows.append({"weights": label, "decode ms": 1e3 * t, "time ratio": t / dense})
    return pd.DataFrame(rows)


def flash_table(lengths: list[int], head_dim: int = 128, block_rows: int = 128) -> pd.DataFrame:
    """HBM elements per head, standard attention vs FlashAttention-2 tiling."""
    rows = []
    for n in lengths:
        standard, flash = cm.attention_io_standard(n, head_dim), cm.attention_io_flash(n, head_dim, block_rows)
        rows.append({"N": n, "standard": standard, "flash": flash, "ratio": flash / standard})
    return pd.DataFrame(rows)


def spec_table(alphas: list[float], gammas: list[int], cost_ratio: float) -> pd.DataFrame:
    return pd.DataFrame([{"alpha": a, "gamma": g, "expected tokens": float(cm.spec_expected_tokens(a, g)),
                          "speedup": float(cm.spec_speedup(a, g, cost_ratio))} for a in alphas for g in gammas])


def zero_table(n_params: float, n_gpus: int) -> pd.DataFrame:
    return pd.DataFrame([{"stage": s, "GB per GPU": cm.zero_memory_bytes(n_params, s, n_gpus) / 1e9}
                         for s in range(4)])


def clip_vit_b32_image_params() -> int:
    """Parameters of CLIP ViT-B/32's image encoder from its shapes: patch embedding 3·32²·768, class and 50
    position embeddings, 12 blocks (fused QKV 768→2304 and output projection with biases, MLP 768↔3072 with
    biases, 2 LayerNorms), pre/post LayerNorms and the 768→512 projection."""
    d, mlp, layers = 768, 3072, 12
    block = (d * 3 * d + 3 * d) + (d * d + d) + (d * mlp + mlp) + (mlp * d + d) + 2 * 2 * d
    return 3 * 32 * 32 * d + d + 50 * d + 2 * d + layers * block + 2 * d + d * 512


def lora_share_table(ranks: list[int]) -> pd.DataFrame:
    """Trainable share of LoRA on the q and v projections of every block of CLIP ViT-B/32's image encoder (an
    assumption: LoBAM's rank and target modules are not known from its abstract), beside CLAT's ≈ 5% [abs]."""
    total = clip_vit_b32_image_params()
    rows = [{"method": f"LoRA r={r} on q, v", "trainable": cm.lora_params([(768, 768)] * 2 * 12, r),
             "share": cm.lora_params([(768, 768)] * 2 * 12, r) / total} for r in ranks]
    rows.append({"method": "CLAT, critical layers only [abs: ≈5%]", "trainable": round(0.05 * total), "share": 0.05})
    rows.append({"method": "full fine-tuning", "trainable": total, "share": 1.0})
    return pd.DataFrame(rows)


#: SpeechPrune Table I (Qwen2-Audio prefill TFLOPS at pruning rate PR; see ../shared/papers/speechprune.md §4,
#: unverified against the PDF).
SPEECHPRUNE_TFLOPS = {0.0: 12.20, 0.2: 10.06, 0.4: 7.93, 0.6: 5.79, 0.8: 3.66}


def speechprune_fit() -> pd.DataFrame:
    """The published TFLOPS against the affine model TF = a + b·(1 − PR), least squares over the five points."""
    import numpy as np

    keep = np.array([1 - r for r in SPEECHPRUNE_TFLOPS])
    tf = np.array(list(SPEECHPRUNE_TFLOPS.values()))
    slope, intercept = np.polyfit(keep, tf, 1)
    return pd.DataFrame({"PR": list(SPEECHPRUNE_TFLOPS), "published TFLOPS": tf,
                         "affine model": intercept + slope * keep, "intercept": intercept, "slope": slope})


# ---------------------------------------------------------------------------------------------------- llm-analysis


#: llm-analysis's names for the models and GPUs we compare.
LLM_ANALYSIS_MODELS = {"Llama-2-7B": "NousResearch_Llama-2-7b-hf"}
LLM_ANALYSIS_GPUS = {"a100-sxm-80gb": "a100-sxm-80gb", "h100-sxm": "h100-sxm-80gb"}


def llm_analysis_available() -> bool:
    try:
        import llm_analysis.analysis  # noqa: F401
    except ImportError:
        return False
    return True


def compare_llm_analysis(prompt_len: int = 512, generate: int = 32) -> pd.DataFrame:
    """Our model beside llm-analysis 0.2.2 (efficiencies 1.0, fp16, batch 1): KV bytes, weight bytes, prefill
    latency, decode latency at the final context. Conventions differ (see the notes column)."""
    import logging

    from llm_analysis.analysis import infer

    logging.getLogger("llm_analysis").setLevel(logging.ERROR)
    rows = []
    for model, theirs_model in LLM_ANALYSIS_MODELS.items():
        cfg = MODELS[model]
        for hw_name, theirs_gpu in LLM_ANALYSIS_GPUS.items():
            hw = cm.load_hardware(hw_name)
            r = infer(model_name=theirs_model, gpu_name=theirs_gpu, dtype_name="w16a16e16", log_level="ERROR",
                      batch_size_per_gpu=1, seq_len=prompt_len, num_tokens_to_generate=generate,
                      flops_efficiency=1.0, hbm_memory_efficiency=1.0)
            context = prompt_len + generate
            ours = {
                "KV cache bytes": cm.kv_cache_bytes(cfg, 1, context),
                "weight bytes": 2 * cm.param_count(cfg),
                "prefill ms": 1e3 * cm.prefill_time(cfg, hw, 1, prompt_len, "fp16", granularity="phase"),
                "decode ms": 1e3 * cm.decode_time(cfg, hw, 1, context, "fp16"),
            }
            theirs = {"KV cache bytes": r["kv_cache_memory_per_gpu"], "weight bytes": r["weight_memory_per_gpu"],
                      "prefill ms": 1e3 * r["prefill_latency"], "decode ms": 1e3 * r["decode_latency"]}
            notes = {
                "KV cache bytes": "same formula",
                "weight bytes": "their Llama-2 config: 2-matrix MLP, 16,384 wide; ours SwiGLU, 3 × 11,008",
                "prefill ms": "they count per-layer ops and the embedding; we: one roofline over the phase",
                "decode ms": "they also read the embedding table; we: weights + KV only",
            }
            for quantity in ours:
                rows.append({"model": model, "hardware": hw_name, "quantity": quantity, "ours": ours[quantity],
                             "llm-analysis": theirs[quantity],
                             "relative difference": ours[quantity] / theirs[quantity] - 1, "why": notes[quantity]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------- measured


@dataclass(frozen=True)
class MachineSetup:
    """What is measured on this machine, and where (the parameters of the same names)."""

    device: str
    threads: int
    repeats: int
    matmul_sizes: list[int]
    gemv_n: int
    bandwidth_mib: int
    lm_d_model: int
    lm_layers: int
    lm_vocab: int
    lm_seq: int
    lm_batches: list[int]


def measure_machine(setup: MachineSetup) -> Measured:
    """Matmul throughput, GEMV, copy/sum bandwidth, and a tiny Llama's prefill and decode, each with analytical
    FLOPs and bytes (fp32), on ``setup.device``; every repeat's time is kept."""
    device = setup.device
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("parameter 'device' is 'cuda' but no GPU is visible; use device cpu.")
    torch.set_num_threads(setup.threads)
    torch.manual_seed(0)
    dtype, dtype_name = (torch.bfloat16, "bf16") if device == "cuda" else (torch.float32, "fp32")
    points = [measure.measure_matmul(n, dtype, device, setup.repeats)
              for n in progress(setup.matmul_sizes, desc="matmul")]
    gemv = measure.measure_gemv(setup.gemv_n, dtype, device, setup.repeats)
    points.append(gemv)
    bandwidth = measure.measure_bandwidth(setup.bandwidth_mib << 20, device, setup.repeats)
    model = measure.tiny_llama(setup.lm_d_model, setup.lm_layers, max(1, setup.lm_d_model // 64),
                               4 * setup.lm_d_model, setup.lm_vocab)
    cfg = cm.TransformerConfig.from_hf(model.config)
    fp32 = cm.Precision(4, 4, 4)
    phases = []
    for batch in progress(setup.lm_batches, desc="tiny Llama"):
        times = measure.time_lm_phases(model, batch, setup.lm_seq, device, setup.repeats)
        for phase, ops in (("prefill", cm.prefill_ops(cfg, batch, setup.lm_seq, fp32)),
                           ("decode", cm.decode_ops(cfg, batch, setup.lm_seq, fp32, activations=True))):
            t = cm.total(ops)
            name = f"tiny Llama {phase}, B={batch}"
            phases.append(measure.Measurement.timed(name, t.flops, t.bytes, times[phase]))
    peak = max(p.flop_rate for p in points)
    machine = cm.Hardware("this machine (measured)", {dtype_name: peak}, bandwidth["copy"].byte_rate, 0,
                          "measured by replbook.measure", "measured")
    return Measured(points, bandwidth, phases, machine, dtype_name, cfg)


def recorded_gpu_run() -> RecordedRun | None:
    """The recorded GPU run of ``benchmarks/roofline.py`` (:data:`RECORDED_GPU_RUN`), if present: its provenance
    line and its rows."""
    import json

    path = project_root() / RECORDED_GPU_RUN
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return RecordedRun(record["recorded"], record["rows"])


def fedprophet_module_table(batch: int = 64, budget_fraction: float = 0.5) -> pd.DataFrame:
    """FedProphet's memory per module on the specification's miniature CNN (8×8 digits, SGD with momentum):
    each module's atom memory against training the whole model at once, with the budget a fraction of the latter.
    Aux heads are excluded from the per-module sums, as in ``module_memory``."""
    from replbook import fedprophet

    profiles = fedprophet.profile_atoms(fedprophet.digits_cnn_atoms(), (batch, 1, 8, 8))
    full = sum(p.mem_bytes for p in profiles)
    modules = fedprophet.partition(profiles, int(full * budget_fraction), 10)
    rows = [{"module": "+".join(m), "memory kB": mem / 1e3, "share of whole model": mem / full}
            for m, mem in zip(modules, fedprophet.module_memory(profiles, modules), strict=True)]
    rows.append({"module": "whole model (end-to-end)", "memory kB": full / 1e3, "share of whole model": 1.0})
    return pd.DataFrame(rows)


def lm_head_shares() -> dict[str, float]:
    """Each preset's LM head (vocabulary × width) as a share of its linear parameters: of the linear FLOPs per
    token, what scoring the full vocabulary at every position costs."""
    return {m: cfg.vocab * cfg.d_model / cm.linear_params(cfg) for m, cfg in MODELS.items()}


def kv_crossovers() -> dict[str, tuple[int, int]]:
    """:func:`kv_crossover_tokens` of Llama-2-7B and of GQA-8 Llama-2-70B, exact as (numerator, denominator)."""
    out = {}
    for name in ("Llama-2-7B", "Llama-2-70B"):
        cross = kv_crossover_tokens(MODELS[name])
        out[name] = (cross.numerator, cross.denominator)
    return out


def run_all(hardware: list[str], prompt_len: int, context: int, batches: list[int], machine: MachineSetup,
            quant: QuantSetup) -> HwswResults:
    """The modelled tables at the chapter's presets (Llama-2-7B for the per-model tables, on the first accelerator of
    ``hardware``), the measured points of this machine, the SmolLM2 section and the ties to other chapters."""
    fit = speechprune_fit()
    return HwswResults(
        hardware=[cm.load_hardware(h) for h in hardware],
        points=columns(roofline_points(hardware, prompt_len, context, batches)),
        kv=columns(kv_table([512, 2048, 8192, 32768, 131072], [1, 8])),
        quant=columns(quantisation_table(cm.LLAMA2_7B, hardware[0], context)),
        sparsity=columns(sparsity_table(cm.LLAMA2_7B, hardware[0], context)),
        flash=columns(flash_table([512, 1024, 2048, 4096, 8192, 16384])),
        spec=columns(spec_table([round(0.05 * i, 2) for i in range(0, 20)], [1, 2, 4, 8], 0.05)),
        zero=columns(zero_table(7.5e9, 64)),
        kv_crossover=kv_crossovers(),
        comparison=columns(compare_llm_analysis(prompt_len)) if llm_analysis_available() else None,
        measured=measure_machine(machine),
        quantised=measure_smollm2(quant),
        recorded_gpu=recorded_gpu_run(),
        speechprune_fit=columns(fit),
        lm_head_share=lm_head_shares(),
        lora_shares=columns(lora_share_table([2, 8, 16])),
        fedprophet_modules=columns(fedprophet_module_table()),
    )
