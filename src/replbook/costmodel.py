"""An exact analytical cost model of transformer LLMs on a roofline: parameters, KV cache, GEMM cost, prefill and
decode, quantisation, sparsity, FlashAttention traffic, speculative decoding, training FLOPs and ZeRO memory.

It makes the central arguments of Guo et al., "A Survey: Collaborative Hardware and Software Design in the Era of
Large Language Models" (Duke, IEEE CAS Magazine 2025, arXiv:2410.07265) executable. The survey publishes no formulas;
each one here carries its standard source. Counts are Python integers (ratios are ``Fraction``) so tests can be
exact; times are floats in seconds.

Notation: L layers, d width, n_h query heads, n_kv KV heads, h head dim, d_ff MLP width (SwiGLU: 3 matrices,
GELU: 2), V vocabulary, B batch, N prompt tokens, T context during decode, b_w / b_a / b_kv bytes per weight /
activation / KV element.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class TransformerConfig:
    """A decoder-only transformer's shape. ``mlp`` is "swiglu" (gate, up, down) or "gelu" (up, down)."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    vocab: int
    mlp: str = "swiglu"
    tied: bool = False

    def __post_init__(self) -> None:
        if self.mlp not in ("swiglu", "gelu"):
            raise ValueError(f"mlp must be 'swiglu' or 'gelu'; got {self.mlp!r}.")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} must be a multiple of n_kv_heads {self.n_kv_heads}.")

    @classmethod
    def from_hf(cls, config: Any) -> TransformerConfig:
        """From a transformers config (Llama, Mistral, Qwen2, GPT-NeoX, GPT-2 style attribute names)."""
        get = lambda *names, default=None: next(  # noqa: E731
            (getattr(config, n) for n in names if getattr(config, n, None) is not None), default)
        d = get("hidden_size", "n_embd", "d_model")
        heads = get("num_attention_heads", "n_head")
        if d is None or heads is None:
            raise ValueError(f"{type(config).__name__}: no hidden size or head count found.")
        act = str(get("hidden_act", "activation_function", default="silu"))
        return cls(
            n_layers=get("num_hidden_layers", "n_layer"), d_model=d, n_heads=heads,
            n_kv_heads=get("num_key_value_heads", default=heads), head_dim=get("head_dim", default=d // heads),
            d_ff=get("intermediate_size", "n_inner", default=4 * d), vocab=get("vocab_size"),
            mlp="swiglu" if act == "silu" else "gelu", tied=bool(get("tie_word_embeddings", default=False)),
        )

    @property
    def attn_params(self) -> int:
        """Q, K, V, O projections of one layer: d·n_h·h + 2·d·n_kv·h + n_h·h·d."""
        return 2 * self.d_model * self.n_heads * self.head_dim + 2 * self.d_model * self.n_kv_heads * self.head_dim

    @property
    def mlp_params(self) -> int:
        return (3 if self.mlp == "swiglu" else 2) * self.d_model * self.d_ff


#: Presets (Hugging Face configs of the Meta releases).
LLAMA2_7B = TransformerConfig(32, 4096, 32, 32, 128, 11008, 32000)
LLAMA2_70B = TransformerConfig(80, 8192, 64, 8, 128, 28672, 32000)
LLAMA3_8B = TransformerConfig(32, 4096, 32, 8, 128, 14336, 128256)


def param_count(cfg: TransformerConfig) -> int:
    """All parameters: L·(attention + MLP + 2 norms) + embedding + LM head (unless tied) + final norm."""
    per_layer = cfg.attn_params + cfg.mlp_params + 2 * cfg.d_model
    head = 0 if cfg.tied else cfg.vocab * cfg.d_model
    return cfg.n_layers * per_layer + cfg.vocab * cfg.d_model + head + cfg.d_model


def linear_params(cfg: TransformerConfig, lm_head: bool = True) -> int:
    """Parameters that enter GEMMs (P_lin): L·(attention + MLP), plus the LM head V·d."""
    return cfg.n_layers * (cfg.attn_params + cfg.mlp_params) + (cfg.vocab * cfg.d_model if lm_head else 0)


def kv_cache_bytes(cfg: TransformerConfig, batch: int, seq_len: int, bytes_per_elem: float = 2) -> int:
    """KV cache = 2 · L · n_kv · h · B · T · b_kv bytes."""
    return int(2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * batch * seq_len * bytes_per_elem)


# ---------------------------------------------------------------------------------------------------- costs


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes moved to and from memory; ``ai`` is the arithmetic intensity (FLOP/B) as a Fraction."""

    flops: int
    bytes: int
    name: str = ""

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes, self.name or other.name)

    def __mul__(self, times: int) -> Cost:
        return Cost(self.flops * times, self.bytes * times, self.name)

    __rmul__ = __mul__

    @property
    def ai(self) -> Fraction:
        if self.bytes == 0:
            raise ZeroDivisionError(f"{self.name or 'cost'} moves no bytes: its intensity is undefined.")
        return Fraction(self.flops, self.bytes)


def gemm_cost(m: int, n: int, k: int, b_a: float = 2, b_w: float = 2, b_out: float = 2, name: str = "") -> Cost:
    """[m, k] @ [k, n]: 2mnk FLOPs; minimum traffic m·k·b_a + k·n·b_w + m·n·b_out bytes (each operand once)."""
    return Cost(2 * m * n * k, int(m * k * b_a + k * n * b_w + m * n * b_out), name)


@dataclass(frozen=True)
class Precision:
    """Bytes per weight, activation and KV element (16/8/4-bit weights: 2, 1, 0.5)."""

    weight: float = 2
    activation: float = 2
    kv: float = 2


def _linear_ops(cfg: TransformerConfig, tokens: int, p: Precision, activations: bool) -> list[Cost]:
    """The GEMMs of all layers and the LM head over ``tokens`` rows (B·N in prefill, B in decode)."""
    b_a = p.activation if activations else 0
    d, h = cfg.d_model, cfg.head_dim
    shapes = [("q_proj", d, cfg.n_heads * h), ("k_proj", d, cfg.n_kv_heads * h), ("v_proj", d, cfg.n_kv_heads * h),
              ("o_proj", cfg.n_heads * h, d)]
    if cfg.mlp == "swiglu":
        shapes += [("gate_proj", d, cfg.d_ff), ("up_proj", d, cfg.d_ff), ("down_proj", cfg.d_ff, d)]
    else:
        shapes += [("up_proj", d, cfg.d_ff), ("down_proj", cfg.d_ff, d)]
    layer = [gemm_cost(tokens, n_out, n_in, b_a, p.weight, b_a, name) * cfg.n_layers for name, n_in, n_out in shapes]
    return layer + [gemm_cost(tokens, cfg.vocab, d, b_a, p.weight, b_a, "lm_head")]


def decode_ops(cfg: TransformerConfig, batch: int, context: int, precision: Precision = Precision(),
               activations: bool = False) -> list[Cost]:
    """One decode step of ``batch`` sequences at context ``context``: the linear GEMVs (weights read once) and the
    attention over the KV cache, 4·B·L·T·n_h·h FLOPs reading the whole cache. ``activations=False`` counts only
    weight and KV bytes (the convention of the spec's worked numbers)."""
    attention = Cost(4 * batch * cfg.n_layers * context * cfg.n_heads * cfg.head_dim,
                     kv_cache_bytes(cfg, batch, context, precision.kv), "attention")
    return _linear_ops(cfg, batch, precision, activations) + [attention]


def prefill_ops(cfg: TransformerConfig, batch: int, seq_len: int, precision: Precision = Precision(),
                causal_discount: bool = False, flash: bool = True, activations: bool = True) -> list[Cost]:
    """Prefill of ``batch`` prompts of ``seq_len`` tokens: linear GEMMs (the LM head on every token, as scoring
    needs) and attention 4·B·L·N²·n_h·h FLOPs (half with ``causal_discount``). Attention bytes: Q, K, V, O once and
    the KV cache written; without ``flash`` also the N×N score matrix written and read twice (S and P)."""
    n, h = seq_len, cfg.head_dim
    factor = Fraction(1, 2) if causal_discount else 1
    flops = int(factor * 4 * batch * cfg.n_layers * n * n * cfg.n_heads * h)
    qo = 2 * batch * n * cfg.n_heads * h * precision.activation * cfg.n_layers
    attn_bytes = int(qo + 2 * kv_cache_bytes(cfg, batch, n, precision.kv))  # KV read by attention and written
    if not flash:
        attn_bytes += int(4 * batch * cfg.n_layers * cfg.n_heads * n * n * precision.activation)
    return _linear_ops(cfg, batch * n, precision, activations) + [Cost(flops, attn_bytes, "attention")]


def total(ops: list[Cost]) -> Cost:
    return sum(ops[1:], ops[0])


# ---------------------------------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class Hardware:
    """An accelerator: dense peak FLOP/s per dtype, memory bandwidth (B/s), capacity (B), and where it comes from."""

    name: str
    peak: dict[str, float]
    mem_bw: float
    mem_capacity: float
    source: str = ""
    confidence: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def peak_for(self, dtype: str) -> float:
        if dtype not in self.peak:
            raise ValueError(f"{self.name} has no {dtype!r} peak; it lists {sorted(self.peak)}.")
        return self.peak[dtype]


HARDWARE_CSV = "hardware_specs.csv"
_PEAK_COLUMNS = {"bf16_tflops": ("bf16", "fp16"), "fp8_tflops": ("fp8",), "int8_tops": ("int8",),
                 "fp32_tflops": ("fp32",)}


def load_hardware(name: str, path: str | Path | None = None) -> Hardware:
    """One row of ``data_manifests/hardware_specs.csv`` by its lower-case hyphenated name (e.g. ``h100-sxm``)."""
    table = hardware_table(path)
    if name not in table:
        raise KeyError(f"unknown hardware {name!r}; known: {', '.join(sorted(table))}.")
    return table[name]


def hardware_table(path: str | Path | None = None) -> dict[str, Hardware]:
    """Every accelerator of the CSV, by name. Peaks are dense (non-sparse); units decimal."""
    if path is None:
        from replbook.paths import project_root

        path = project_root() / "data_manifests" / HARDWARE_CSV
    out = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(line for line in handle if not line.startswith("#")):
            peak = {}
            for column, dtypes in _PEAK_COLUMNS.items():
                if row.get(column):
                    for dtype in dtypes:
                        peak[dtype] = float(row[column]) * 1e12
            out[row["name"]] = Hardware(row["name"], peak, float(row["bandwidth_gbs"]) * 1e9,
                                        float(row["capacity_gb"]) * 1e9, row["source"], row["confidence"])
    return out


def ridge_point(hw: Hardware, dtype: str = "bf16") -> float:
    """Peak / bandwidth (FLOP/B): below it an operation is memory-bound."""
    return hw.peak_for(dtype) / hw.mem_bw


def attainable(hw: Hardware, ai: float, dtype: str = "bf16") -> float:
    """Roofline: min(peak, AI · bandwidth) FLOP/s."""
    return min(hw.peak_for(dtype), float(ai) * hw.mem_bw)


def op_time(hw: Hardware, cost: Cost, dtype: str = "bf16") -> float:
    """Seconds: max(FLOPs / peak, bytes / bandwidth)."""
    return max(cost.flops / hw.peak_for(dtype), cost.bytes / hw.mem_bw)


def phase_time(hw: Hardware, ops: list[Cost], dtype: str = "bf16", granularity: str = "op") -> float:
    """A phase's time: the sum of per-op roofline times (``"op"``, LLM-Viewer's convention) or one roofline time of
    the phase's totals (``"phase"``; never more than "op")."""
    if granularity == "op":
        return sum(op_time(hw, c, dtype) for c in ops)
    if granularity == "phase":
        return op_time(hw, total(ops), dtype)
    raise ValueError(f"granularity must be 'op' or 'phase'; got {granularity!r}.")


_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}


def decode_time(cfg: TransformerConfig, hw: Hardware, batch: int, context: int, dtype: str = "fp16",
                precision: Precision | None = None, granularity: str = "op") -> float:
    """Seconds per decode step (one token for each of ``batch`` sequences) on the roofline."""
    precision = precision or Precision(*(3 * [_DTYPE_BYTES[dtype]]))
    return phase_time(hw, decode_ops(cfg, batch, context, precision), dtype, granularity)


def prefill_time(cfg: TransformerConfig, hw: Hardware, batch: int, seq_len: int, dtype: str = "fp16",
                 precision: Precision | None = None, granularity: str = "op", **kwargs: Any) -> float:
    """Seconds to prefill ``batch`` prompts of ``seq_len`` tokens on the roofline."""
    precision = precision or Precision(*(3 * [_DTYPE_BYTES[dtype]]))
    return phase_time(hw, prefill_ops(cfg, batch, seq_len, precision, **kwargs), dtype, granularity)


# ---------------------------------------------------------------------------------------------------- techniques


def quantized_weight_bytes(n_params: int, bits: int, group_size: int | None = None, scale_bytes: int = 2) -> int:
    """P·bits/8, plus one scale of ``scale_bytes`` per group of ``group_size`` weights (ceil(P/g) groups)."""
    body = Fraction(n_params * bits, 8)
    scales = math.ceil(n_params / group_size) * scale_bytes if group_size else 0
    return math.ceil(body) + scales


def sparse_weight_cost(cost: Cost, weight_elems: int, value_bytes: float, density: Fraction | float,
                       index_bits: int) -> Cost:
    """A GEMM whose ``weight_elems`` weights keep a fraction ``density``: FLOPs·density; weight bytes·density plus
    ``index_bits`` of metadata per kept value. 2:4 structured sparsity is density ½ with 2 index bits per kept
    value (NVIDIA's format); unstructured CSR is ~32 bits."""
    density = Fraction(density)
    kept = weight_elems * density
    weight_bytes = kept * Fraction(value_bytes) + kept * Fraction(index_bits, 8)
    return Cost(int(cost.flops * density), int(cost.bytes - weight_elems * Fraction(value_bytes) + weight_bytes),
                cost.name)


def prune_tokens(seq_len: int, keep_ratio: float) -> int:
    """Tokens kept by token pruning: floor(N · keep_ratio), at least 1."""
    if not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must lie in (0, 1]; got {keep_ratio}.")
    return max(1, math.floor(seq_len * keep_ratio + 1e-9))


def spec_expected_tokens(alpha: Fraction | float, gamma: int) -> Fraction | float:
    """Speculative decoding (Leviathan et al. 2023): expected tokens per target call, (1 − α^{γ+1}) / (1 − α)."""
    if alpha == 1:
        return gamma + 1
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def spec_speedup(alpha: Fraction | float, gamma: int, cost_ratio: Fraction | float) -> Fraction | float:
    """Expected wall-time speedup: E[tokens] / (γ·c + 1), c the draft/target cost ratio."""
    return spec_expected_tokens(alpha, gamma) / (gamma * cost_ratio + 1)


def attention_io_standard(n: int, d: int) -> int:
    """HBM elements per head of standard attention: Q, K, V read and O written (4Nd), S written and read, P written
    and read (4N²). Dao et al. 2022, §3.2."""
    return 4 * n * d + 4 * n * n


def attention_io_flash(n: int, d: int, block_rows: int) -> int:
    """FlashAttention-2 tiling: Q read and O written once (2Nd); K and V re-read for each of ceil(N/B_r) query
    blocks (2Nd·ceil(N/B_r))."""
    return 2 * n * d + 2 * n * d * math.ceil(n / block_rows)


def training_flops(n_params: float, tokens: float, recompute: bool = False) -> float:
    """6·P·D (forward 2PD, backward 4PD); 8·P·D with full activation recomputation."""
    return (8 if recompute else 6) * n_params * tokens


def zero_memory_bytes(n_params: float, stage: int, n_gpus: int, k: int = 12) -> float:
    """Model-state bytes per GPU under ZeRO (Rajbhandari et al. 2020) with mixed-precision Adam: fp16 weights (2Ψ),
    fp16 gradients (2Ψ) and K·Ψ optimizer state (K = 12: fp32 weights, momentum, variance); stage 0 = plain data
    parallelism, 1 partitions the optimizer state, 2 also the gradients, 3 also the weights."""
    psi = n_params
    per_stage = {0: (2 + 2 + k) * psi, 1: 4 * psi + k * psi / n_gpus, 2: 2 * psi + (2 + k) * psi / n_gpus,
                 3: (2 + 2 + k) * psi / n_gpus}
    if stage not in per_stage:
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3; got {stage}.")
    return per_stage[stage]


def lora_params(shapes: list[tuple[int, int]], rank: int) -> int:
    """Trainable LoRA parameters: r·(d_in + d_out) per adapted [d_in, d_out] matrix."""
    return sum(rank * (d_in + d_out) for d_in, d_out in shapes)
