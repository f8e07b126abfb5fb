"""Figures, tables and claims of the HW/SW co-design chapter, read from its saved results."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from replbook import costmodel as cm
from replbook.experiments.hwsw.common import HwswResults, Measured, Quantised, Table
from replbook.intervals import Interval
from replbook.measure import Measurement
from replbook.verdicts import Claim, Premise, apply_premises, illustrated, judge_effect, not_comparable, premise

#: The survey states none of C1-C4 in its abstract; they are our reading of its background (prefill vs decode, the
#: memory wall) and inference sections (quantisation, KV-cache management, attention kernels).
SURVEY_SOURCE = ("survey Sec. II (background) and Sec. IV (inference), section numbers from an unverified outline "
                 "[recon]; no number in the survey")


def frame(table: Table | None) -> pd.DataFrame | None:
    """A saved table (its columns) as a DataFrame; None stays None."""
    return None if table is None else pd.DataFrame(table)


def _roofline_axes(ax, hardware: list[cm.Hardware], dtype: str, ai_range=(0.1, 3000)) -> None:
    ai = np.logspace(np.log10(ai_range[0]), np.log10(ai_range[1]), 200)
    for hw in hardware:
        ax.plot(ai, [cm.attainable(hw, a, dtype) / 1e12 for a in ai], label=f"{hw.name} roof")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP/byte)", ylabel="TFLOP/s")


def plot_roofline(results: HwswResults):
    """Each accelerator's roof with the modelled prefill (circles) and decode (crosses) points of the presets."""
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    points, hws = frame(results.points), results.hardware
    hardware = [hw.name for hw in hws]
    _roofline_axes(ax, hws, "fp16")
    first = points[points.hardware == hardware[0]]
    for phase, marker in (("prefill", "o"), ("decode", "x")):
        rows = first[first.phase == phase]
        ys = [cm.attainable(hws[0], ai, "fp16") / 1e12 for ai in rows["AI (FLOP/B)"]]
        ax.scatter(rows["AI (FLOP/B)"], ys, marker=marker, s=40, zorder=3, color="black", label=f"{phase} points")
        if phase == "decode":  # prefill points crowd the flat roof; decode points spread along the slope
            for (_, row), y in zip(rows.iterrows(), ys, strict=True):
                ax.annotate(f"{row.model} B={row.batch}", (row["AI (FLOP/B)"], y), fontsize=6, xytext=(4, -8),
                            textcoords="offset points")
    ax.set_title(f"Roofline (fp16); points attained on {hardware[0]}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_kv(kv: pd.DataFrame, capacity_gb: float = 80.0):
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for (model, batch), rows in kv.groupby(["model", "batch"]):
        line = ax.plot(rows["context"], rows["KV GB"], marker=".", label=f"{model} KV, B={batch}")[0]
        ax.axhline(rows["weights GB"].iloc[0], color=line.get_color(), ls=":", lw=0.8)
    ax.axhline(capacity_gb, color="black", lw=1.2, label=f"{capacity_gb:.0f} GB device")
    ax.set(xscale="log", yscale="log", xlabel="context length T", ylabel="GB (fp16)",
           title="KV cache against context (dotted: the model's fp16 weights)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_quantisation(table: pd.DataFrame, hw_name: str, context: int):
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for kv_bits, rows in table.groupby("KV bits"):
        ax.plot(rows["weight bits"], rows["decode ms"], marker="o", label=f"KV {kv_bits}-bit")
    ax.set(xlabel="weight bits", ylabel="ms per decode step", xticks=[4, 8, 16],
           title=f"Llama-2-7B decode, T={context}, {hw_name}")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_flash_spec_zero(flash: pd.DataFrame, spec: pd.DataFrame, zero: pd.DataFrame):
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.4))
    axes[0].plot(flash["N"], flash["standard"], marker="o", label="standard")
    axes[0].plot(flash["N"], flash["flash"], marker="o", label="FlashAttention-2")
    axes[0].set(xscale="log", yscale="log", xlabel="sequence length N", ylabel="HBM elements per head",
                title="Attention memory traffic")
    axes[0].legend(fontsize=7)
    for gamma, rows in spec.groupby("gamma"):
        axes[1].plot(rows["alpha"], rows["speedup"], label=f"γ={gamma}")
    axes[1].axhline(1, color="grey", lw=0.8, ls=":")
    axes[1].set(xlabel="acceptance rate α", ylabel="speedup", title="Speculative decoding (c = 0.05)")
    axes[1].legend(fontsize=7)
    axes[2].bar(zero["stage"].astype(str), zero["GB per GPU"])
    axes[2].set(xlabel="ZeRO stage", ylabel="GB per GPU", title="Model states, Ψ = 7.5B, 64 GPUs")
    fig.tight_layout()
    return fig


def plot_measured(measured: Measured):
    """The measured machine's roof with its measured matmul, GEMV, bandwidth and tiny-Llama points."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    _roofline_axes(ax, [measured.machine], measured.dtype, (0.05, 1000))
    for p in measured.points + measured.phases:
        ax.scatter(p.ai, p.flop_rate / 1e12, zorder=3)
        ax.annotate(p.name, (p.ai, p.flop_rate / 1e12), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_title(f"Measured roofline of this machine ({measured.dtype})")
    fig.tight_layout()
    return fig


def measured_table(measured: Measured) -> pd.DataFrame:
    """Every measured point: its rates, intensity and best time, and the median of its timed repeats where the
    results keep them."""
    rows = [{"what": p.name, "GFLOP/s": p.flop_rate / 1e9, "GB/s": p.byte_rate / 1e9, "AI (FLOP/B)": p.ai,
             "ms": 1e3 * p.seconds,
             "median ms": 1e3 * float(np.median(p.repeat_seconds)) if p.repeat_seconds else np.nan}
            for p in measured.points + list(measured.bandwidth.values()) + measured.phases]
    return pd.DataFrame(rows)


def _median_seconds(measured: Measured, m: Measurement, path: str) -> tuple[np.ndarray, str]:
    """The timed repeats of measurement ``m`` (its best time alone where the results kept no repeats) and the
    ``from`` expression of their median; ``path`` is where ``m`` sits in the results."""
    if m.repeat_seconds:
        return np.asarray(m.repeat_seconds, dtype=np.float64), f"median({path}.repeat_seconds)"
    return np.asarray([m.seconds]), f"{path}.seconds"


def _copy(measured: Measured) -> tuple[Measurement, np.ndarray, str]:
    """The copy bandwidth: its measurement, its repeats and the ``from`` expression of its median byte rate."""
    copy = measured.bandwidth["copy"]
    seconds, expr = _median_seconds(measured, copy, 'measured.bandwidth["copy"]')
    return copy, seconds, f'measured.bandwidth["copy"].bytes / {expr}'


def copy_rate(measured: Measured) -> float:
    """The copy bandwidth of this machine in B/s, from the median of its timed repeats: the roof every measured
    share is read against."""
    copy, seconds, _ = _copy(measured)
    return copy.bytes / float(np.median(seconds))


def share_of_copy(measured: Measured, m: Measurement, path: str, n_boot: int = 2000, seed: int = 0) -> Interval:
    """The share of the copy bandwidth that measurement ``m`` (at ``path`` in the results) moves: its bytes over its
    median time, over the copy's bytes over its median time, with a percentile bootstrap 95% interval over the
    repeats (each resampled on its own)."""
    seconds, expr = _median_seconds(measured, m, path)
    copy, copy_seconds, copy_expr = _copy(measured)
    point = (m.bytes / float(np.median(seconds))) / (copy.bytes / float(np.median(copy_seconds)))
    rng = np.random.default_rng(seed)
    ours = np.median(rng.choice(seconds, (n_boot, len(seconds))), axis=1)
    theirs = np.median(rng.choice(copy_seconds, (n_boot, len(copy_seconds))), axis=1)
    lo, hi = np.percentile((m.bytes / ours) / (copy.bytes / theirs), [2.5, 97.5])
    return Interval(point, float(lo), float(hi), "percentile bootstrap over timed repeats (medians)",
                    min(len(seconds), len(copy_seconds)), source=f"={path}.bytes / {expr} / ({copy_expr})")


def _find(items: list[Measurement], prefix: str) -> int | None:
    return next((i for i, p in enumerate(items) if p.name.startswith(prefix)), None)


#: C1's effect and premise R2's bound: the share of the measured copy bandwidth at which a step counts as bound by
#: memory (a memory-bound kernel moves its bytes near the roof; half of it leaves room for overheads).
C1_BANDWIDTH_SHARE = 0.5
#: R1's bound: the share of the copy bandwidth the fp32 SmolLM2 decode step must move for its time to follow bytes.
R1_BANDWIDTH_SHARE = 0.5
C1_RULE = ("rule: judge_effect on the measured batch-1 decode step's share of the copy bandwidth (its bytes over its "
           "median time, over the copy's; bootstrap over repeats) from the share the batch-1 prefill moves (a "
           "compute-bound step of the same model, measured in the same run) towards 0.5, the share of a memory-bound "
           "step; the model's side of the claim (decode left, prefill right of every ridge) is ours by construction, "
           "shown")


def claim_c1(results: HwswResults, profile: str) -> Claim:
    """C1: the measured batch-1 decode step's share of the copy bandwidth, judged from 0 towards
    :data:`C1_BANDWIDTH_SHARE`; the model's half (decode on the memory side, prefill on the compute side of every
    ridge) is shown beside it. Needs R2 (the GEMV reaches the memory roof here)."""
    statement = "decode is memory-bound, prefill compute-bound"
    points, measured = frame(results.points), results.measured
    decode = points[(points.phase == "decode") & (points.batch == 1)]
    prefill = points[points.phase == "prefill"]
    model_ok = (decode.bound == "memory").all() and (prefill.bound == "compute").all()
    ridge = cm.ridge_point(measured.machine, measured.dtype)
    at = _find(measured.phases, "tiny Llama decode, B=1")
    if at is None:
        return Claim.judged("C1", statement, "qualitative", SURVEY_SOURCE, "no batch-1 decode step was measured",
                            profile, not_comparable("the rule needs a measured batch-1 decode step"),
                            missing=("a batch-1 decode step (lm_batches must include 1)",), premises=("R2",))
    step = measured.phases[at]
    share = share_of_copy(measured, step, f"measured.phases[{at}]")
    pre = _find(measured.phases, "tiny Llama prefill, B=1")
    # no effect = a compute-bound step's byte rate: the same model's prefill (a reference level, measured here)
    null = share_of_copy(measured, measured.phases[pre], f"measured.phases[{pre}]").mean if pre is not None else 0.0
    v = judge_effect(share, C1_BANDWIDTH_SHARE, null=null, what="the decode step's share of copy bandwidth",
                     effect_name="the memory-bound share")
    if v.verdict == "partly":  # the same bound decides premise R1 of C3-measured: say how the two readings agree
        v = v.with_note(f": decode leans to the memory side (it moves more of the bandwidth than the compute-bound "
                        f"prefill) but is not memory-bound by the {C1_BANDWIDTH_SHARE:g} bound, the bound premise R1 "
                        f"applies to SmolLM2's fp32 decode; per-operation overhead takes the rest of its time")
    ours = (f"measured batch-1 decode moves {share.text(2, signed=False)} of the copy bandwidth (median of "
            f"{share.n} repeats, 95% CI; the batch-1 prefill {null:.2f}), at AI {step.ai:.2f} against the measured "
            f"ridge {ridge:.1f} FLOP/B; model "
            f"(shown, not judged): decode B=1 memory-bound on {decode.hardware.nunique()} accelerators and prefill "
            f"compute-bound: {model_ok}")
    return Claim.judged("C1", statement, "qualitative", SURVEY_SOURCE, ours, profile, v, C1_RULE, premises=("R2",))


def claim_c2(results: HwswResults, profile: str) -> Claim:
    """C2: the KV cache outweighs the weights past a B·T the exact cost model gives (illustrated)."""
    cross, cross_70b = (Fraction(*results.kv_crossover[m]) for m in ("Llama-2-7B", "Llama-2-70B"))
    ours = (f"Llama-2-7B fp16: KV exceeds the weights once B·T > {float(cross):,.0f} tokens (exact "
            f"{cross.numerator:,}/{cross.denominator:,}); GQA-8 Llama-2-70B needs B·T > {float(cross_70b):,.0f}")
    v = illustrated("follows from the exact cost model (weights and KV bytes are both our formulas): shown, not "
                    "tested")
    return Claim.judged("C2", "the KV cache dominates memory at long context", "qualitative", SURVEY_SOURCE, ours,
                        profile, v)


def claim_c3(results: HwswResults, profile: str) -> Claim:
    """C3 (modelled): 4-bit weights' decode time ratio beside their bytes ratio (illustrated)."""
    quant = frame(results.quant)
    w4 = quant[(quant["weight bits"] == 4) & (quant["KV bits"] == 16)].iloc[0]
    v = illustrated("the roofline model assumes memory-bound decode, so time follows bytes by construction; "
                    "measured on a real LM in C3-measured (when the SmolLM2 section runs)")
    return Claim.judged("C3", "quantisation cuts decode time in proportion to bytes", "qualitative", SURVEY_SOURCE,
                        f"4-bit weights: modelled time ratio {w4['time ratio']:.3f} vs bytes ratio "
                        f"{w4['bytes ratio']:.3f}", profile, v)


def claim_c4(results: HwswResults, profile: str) -> Claim:
    """C4: FlashAttention-2's share of standard attention traffic at the longest N (illustrated)."""
    big = frame(results.flash).iloc[-1]
    v = illustrated("follows from the IO model of Dao et al. 2022 that we implement: shown, not tested")
    return Claim.judged("C4", "FlashAttention cuts attention memory traffic", "qualitative", SURVEY_SOURCE,
                        f"N={int(big['N'])}: {big['ratio']:.2f} of standard traffic in the IO model", profile, v)


def _fp32_row(table: pd.DataFrame, batch: int) -> int | None:
    rows = table.index[(table.precision == "fp32") & (table.batch == batch)]
    return int(rows[0]) if len(rows) else None


def quantisation_claim(quantised: Quantised, profile: str, copy_bandwidth: float | None = None) -> Claim:
    """C3 measured: int8 against fp32 decode time of SmolLM2 at batch 1 on this machine, judged by the directional
    rule from no speed-up (ratio 1) towards the cost model's bytes ratio. With ``copy_bandwidth`` (B/s) the text
    says what share of it the fp32 step moves: the bytes predict the time only of a memory-bound step (premise R1,
    which the claim needs)."""
    statement = "quantisation cuts decode time in proportion to bytes (measured)"
    table = frame(quantised.table)
    row = table[(table.precision == "int8") & (table.batch == table.batch.min())]
    if row.empty:
        return Claim.judged("C3-measured", statement, "qualitative", SURVEY_SOURCE, "int8 was not measured", profile,
                            not_comparable("rule needs int8 among qlm_precisions"), missing=("int8",),
                            premises=("R1",))
    i, row = int(row.index[0]), row.iloc[0]
    fp32 = table.loc[_fp32_row(table, row.batch)]
    share = (f"; the fp32 step moves {fp32['decode GB/s']:.1f} GB/s, {1e9 * fp32['decode GB/s'] / copy_bandwidth:.0%} "
             f"of this machine's copy bandwidth" if copy_bandwidth else "")
    rounds = len(quantised.samples.get("int8", {}).get(int(row.batch), []))
    ratio = Interval(float(row["decode time ratio to fp32"]), float(row["ratio lo"]), float(row["ratio hi"]),
                     "median of per-round ratios, bootstrap over rounds", rounds,
                     source=f'=quantised.table["decode time ratio to fp32"][{i}]')
    v = judge_effect(ratio, float(row["predicted ratio (bytes)"]), null=1.0, what="int8 / fp32 decode time",
                     effect_name="the bytes ratio")
    ours = (f"SmolLM2-135M, batch {int(row.batch)}, {quantised.threads} CPU threads: int8 decode takes "
            f"{ratio.text(2, signed=False)} of fp32's time ({row['decode ms/token']:.1f} ms/token); bytes predict "
            f"{row['predicted ratio (bytes)']:.2f}{share}")
    return Claim.judged("C3-measured", statement, "qualitative", SURVEY_SOURCE, ours, profile, v,
                        "rule: judge_effect on the measured time ratio (median of per-round ratios of interleaved "
                        "samples, bootstrap 95% interval over rounds) from no speed-up (1) towards the cost model's "
                        "bytes ratio", premises=("R1",))


def premises(results: HwswResults, params: dict[str, Any]) -> list[Premise]:
    """The premises of the measured claims, both shares of this machine's copy bandwidth (median of its repeats):
    R1, the fp32 batch-1 SmolLM2 decode step is memory-bound (C3-measured needs it: only then does time follow
    bytes); R2, a low-intensity kernel, the GEMV, reaches the memory roof here (C1 needs it: otherwise no step could
    show it is memory-bound against the copy bandwidth). The illustrated claims need none."""
    measured, out = results.measured, []
    quantised = results.quantised
    table = frame(quantised.table) if quantised is not None else None
    at = _fp32_row(table, int(table.batch.min())) if table is not None else None
    _, _, copy_expr = _copy(measured)
    value = None if at is None else 1e9 * float(table.loc[at, "decode GB/s"]) / copy_rate(measured)
    out.append(premise("R1", "the fp32 batch-1 decode step of SmolLM2 is memory-bound: it moves this share of the "
                             "measured copy bandwidth (its bytes over its median time)", value,
                       at_least=R1_BANDWIDTH_SHARE, fmt="{:.2f}",
                       source="" if at is None else f'=quantised.table["decode GB/s"][{at}] * 1e9 / ({copy_expr})',
                       note="fp32 is the reference arm of the int8 / fp32 ratio: a reference level, not the ratio"
                       if at is not None else "the SmolLM2 section did not run (qlm_samples = 0)"))
    at = _find(measured.points, "GEMV")
    gemv = None if at is None else share_of_copy(measured, measured.points[at], f"measured.points[{at}]")
    out.append(premise("R2", "a low-arithmetic-intensity kernel reaches the memory roof here: the GEMV moves this "
                             "share of the measured copy bandwidth (medians of their repeats)",
                       None if gemv is None else gemv.mean, at_least=C1_BANDWIDTH_SHARE, fmt="{:.2f}",
                       source="" if gemv is None else gemv.source,
                       note=("" if gemv is None else f"95% interval over repeats [{gemv.lo:.2f}, {gemv.hi:.2f}]; ")
                       + "a kernel no claim compares"))
    return out


def claims(results: HwswResults, params: dict[str, Any]) -> list[Claim]:
    """The survey's claims: C1 judged on this machine's measured decode step (the model's half shown beside it); C2-C4
    *illustrated*, since they follow from our own cost model (shown, never counted as reproduced); C3 also gets a
    measured row (``C3-measured``) from the SmolLM2 section when it ran. A claim whose premise does not hold is not
    comparable."""
    profile = params["profile"]
    out = [claim_c1(results, profile), claim_c2(results, profile), claim_c3(results, profile)]
    if results.quantised is not None:
        out.append(quantisation_claim(results.quantised, profile, copy_rate(results.measured)))
    return apply_premises(out + [claim_c4(results, profile)], premises(results, params))


#: What our cost model must match in llm-analysis 0.2.2: the KV cache exactly, the latencies within 5%.
CROSS_CHECK_TOLERANCE = 0.05


def cross_check(table: Table | None) -> str:
    """One sentence on the agreement of our cost model with llm-analysis: a check of our model, not a claim of the
    survey, so it stays out of the claims table."""
    if table is None:
        return "llm-analysis is not installed here (make setup installs it): no cross-check."
    comparison = frame(table)
    kv = comparison[comparison.quantity == "KV cache bytes"]["relative difference"].abs().max()
    lat = comparison[comparison.quantity.str.endswith("ms")]["relative difference"].abs().max()
    ok = kv == 0 and lat <= CROSS_CHECK_TOLERANCE
    return (f"{'Passed' if ok else 'Failed'}: KV-cache bytes differ by at most {kv:.1%} (must be 0), latencies by at "
            f"most {lat:.1%} (must be ≤ {CROSS_CHECK_TOLERANCE:.0%}).")


def plot_quantised(quantised: Quantised):
    """Measured decode time per token of SmolLM2 at each precision and batch (bars, with the spread of the samples)
    beside what the bytes predict from the fp32 time (black ticks)."""
    table = frame(quantised.table)
    batches = sorted(table.batch.unique())
    precisions = list(dict.fromkeys(table.precision))
    fig, axes = plt.subplots(1, len(batches), figsize=(4.2 * len(batches), 3.6), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=True):
        rows = table[table.batch == batch].set_index("precision").loc[precisions]
        fp32 = rows.loc["fp32", "decode ms/token"]
        spread = [1e3 * np.percentile(quantised.samples[p][batch], [25, 75]) for p in precisions]
        err = np.array([[r["decode ms/token"] - lo, hi - r["decode ms/token"]]
                        for (_, r), (lo, hi) in zip(rows.iterrows(), spread, strict=True)]).T
        ax.bar(precisions, rows["decode ms/token"], yerr=err, capsize=4, color="tab:blue", alpha=0.8,
               label="measured (IQR of samples)")
        ax.scatter(precisions, fp32 * rows["predicted ratio (bytes)"], marker="_", s=600, color="black", zorder=3,
                   label="fp32 × bytes ratio")
        ax.set(title=f"SmolLM2-135M decode, batch {batch}", ylabel="ms per token")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
