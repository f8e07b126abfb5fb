"""Quantisation measured on a real LM: SmolLM2-135M in fp32, bf16 and int8 on this machine.

int8 is torch's dynamic quantisation (torch.ao, fbgemm kernels on x86): int8 weights with one scale per output row,
activations quantised on the fly, one scale per tensor per batch. ``int8`` quantises every linear layer except the
MLP down-projections, whose inputs (the SwiGLU products) carry outlier activations that one scale per tensor cannot
represent; ``int8-all`` quantises every linear layer, to show what those outliers cost (the LLM.int8() observation,
Dettmers et al. 2022). The embedding table stays fp32 (a decode step reads one row of it per token); the LM head,
tied to it in fp32, gets its own int8 copy.

Each precision gets its weight bytes, prefill time, per-token decode time (batch 1 and a larger batch) and the
perplexity of held-out text; the decode times are sampled interleaved across precisions, so a change of machine load
hits all of them alike, and the ratio to fp32 comes with a bootstrap interval over the samples.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from replbook import costmodel as cm
from replbook.assets import resolve as resolve_asset
from replbook.experiments.hwsw.common import Quantised
from replbook.progress import progress

PRECISIONS = ("fp32", "bf16", "int8", "int8-all")
#: Linear layers ``int8`` keeps in fp32: their inputs carry outlier activations.
OUTLIER_LAYERS = ("down_proj",)


def quantise_int8(model: nn.Module, keep: tuple[str, ...] = ()) -> nn.Module:
    """A copy of ``model`` with its ``nn.Linear`` layers dynamically quantised to int8 (torch.ao: per-row weight
    scales, per-tensor activation scales), except those whose name ends in one of ``keep``."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = {name for name, m in model.named_modules() if isinstance(m, nn.Linear) and not name.endswith(keep)}
    with warnings.catch_warnings():  # torch.ao's notice that eager quantisation is moving to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model), {name: per_channel_dynamic_qconfig for name in names},
                                dtype=torch.qint8)


def as_precision(model: nn.Module, precision: str) -> nn.Module:
    """The model in ``precision`` (one of :data:`PRECISIONS`): a cast copy, or an int8 dynamic quantisation."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}; got {precision!r}.")
    if precision.startswith("int8"):
        return quantise_int8(model, OUTLIER_LAYERS if precision == "int8" else ()).eval()
    return copy.deepcopy(model).to(torch.bfloat16 if precision == "bf16" else torch.float32).eval()


def _is_dynamic_int8(module: nn.Module) -> bool:
    return type(module).__name__ == "Linear" and type(module).__module__.startswith("torch.ao.nn.quantized.dynamic")


def _packed_bytes(module: nn.Module) -> int:
    """Bytes of a dynamically quantised linear: int8 weight, its scales and zero points (8 bytes each), bias."""
    weight, bias = module.weight(), module.bias()
    per_row = weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
    scales = 2 * 8 * weight.q_per_channel_scales().numel() if per_row else 2 * 8
    return weight.numel() * weight.element_size() + scales + (bias.numel() * bias.element_size() if bias is not None
                                                              else 0)


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights of every linear layer (float or dynamically quantised), what a decode step reads beside
    the KV cache; an LM head tied to the embedding counts (its matmul reads the whole table)."""
    total = 0
    for module in model.modules():
        if _is_dynamic_int8(module):
            total += _packed_bytes(module)
        elif isinstance(module, nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
            total += module.bias.numel() * module.bias.element_size() if module.bias is not None else 0
    return total


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights a forward pass can read: every parameter and buffer once (tied ones once), plus the
    packed int8 weights and scales of dynamically quantised linears (which are neither)."""
    seen, total = set(), 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
    return total + sum(_packed_bytes(m) for m in model.modules() if _is_dynamic_int8(m))


def heldout_windows(tokenizer, n_texts: int, length: int) -> torch.Tensor:
    """The first ``n_texts`` windows of ``length`` tokens of the stdlib docstrings (``stdlib-docstrings``), text no
    other part of this chapter uses."""
    text = resolve_asset("stdlib-docstrings")["stdlib_docstrings.txt"].read_text(encoding="utf-8")
    ids = tokenizer(text[: 12 * n_texts * length], add_special_tokens=False)["input_ids"]
    if len(ids) < n_texts * length:
        raise ValueError(f"the docstring corpus has {len(ids)} tokens, fewer than {n_texts} × {length}.")
    return torch.tensor(ids[: n_texts * length]).view(n_texts, length)


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, batch_size: int = 8) -> float:
    """exp of the mean next-token cross-entropy over every predicted token of ``ids`` [N, L]."""
    total, count = 0.0, 0
    for i in range(0, len(ids), batch_size):
        batch = ids[i : i + batch_size]
        logits = model(input_ids=batch).logits.float()
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                           reduction="sum")
        total, count = total + float(loss), count + batch[:, 1:].numel()
    return float(np.exp(total / count))


@dataclass
class PhaseTimer:
    """Timed prefill and decode of one model at one batch: a prompt of ``seq_len`` tokens fills a KV cache, then
    each decode sample is the mean of ``steps`` one-token steps on top of it (the cache is cropped back after each
    step, so every step sees the same context)."""

    model: nn.Module
    batch: int
    seq_len: int
    steps: int = 4

    def __post_init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, self.model.config.vocab_size, (self.batch, self.seq_len), generator=gen)
        with torch.no_grad():
            out = self.model(self.ids, use_cache=True)
        self.cache = getattr(out, "cache", None) or out.past_key_values
        self.step = self.ids[:, -1:]

    @torch.no_grad()
    def prefill(self) -> float:
        start = time.perf_counter()
        self.model(self.ids, use_cache=True)
        return time.perf_counter() - start

    @torch.no_grad()
    def decode(self) -> float:
        start = time.perf_counter()
        for _ in range(self.steps):
            self.model(self.step, cache=self.cache, use_cache=True)
            self.cache.crop(-1)
        return (time.perf_counter() - start) / self.steps


def ratio_interval(samples: np.ndarray, base: np.ndarray, n_boot: int = 2000, seed: int = 0,
                   ) -> tuple[float, float, float]:
    """The median of the per-round ratios samples[i] / base[i] (round i timed both, back to back) with a 95%
    percentile bootstrap interval over rounds: paired, so a change of load between rounds cancels."""
    ratios = np.asarray(samples, dtype=np.float64) / np.asarray(base, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(ratios, (n_boot, len(ratios))), axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(np.median(ratios)), float(lo), float(hi)


def decode_bytes(config: Any, linear_bytes: int, batch: int, context: int, other_bytes: int = 4) -> int:
    """Bytes one decode step moves, from the cost model, with the linear layers holding ``linear_bytes`` (measured
    on the model) and activations and the KV cache at ``other_bytes`` per element."""
    cfg = cm.TransformerConfig.from_hf(config)
    p = cm.Precision(other_bytes, other_bytes, other_bytes)
    total = cm.total(cm.decode_ops(cfg, batch, context, p, activations=True)).bytes
    return int(total - other_bytes * cm.linear_params(cfg) + linear_bytes)


def predicted_decode_ratio(config: Any, linear_bytes: int, batch: int, context: int, other_bytes: int = 4) -> float:
    """:func:`decode_bytes` of this model over the fp32 model's: the time ratio a memory-bound step would show."""
    fp32 = decode_bytes(config, 4 * cm.linear_params(cm.TransformerConfig.from_hf(config)), batch, context)
    return decode_bytes(config, linear_bytes, batch, context, other_bytes) / fp32


#: Prefill timings per precision and batch (the median is reported); decode gets ``qlm_samples``.
PREFILL_SAMPLES = 3


def measure_precisions(model: nn.Module, precisions: Sequence[str], batches: Sequence[int], seq_len: int,
                       samples: int, ppl_ids: torch.Tensor) -> Quantised:
    """Every measurement of the section, in this process.

    Returns its ``table`` (one row per precision and batch: weight MB, prefill ms (median of up to
    :data:`PREFILL_SAMPLES`), decode ms per token with its ratio to fp32 and that ratio's interval, the predicted
    ratio from the bytes, perplexity) and ``samples`` precision → batch → the decode samples in seconds.
    """
    if "fp32" not in precisions:
        raise ValueError("precisions must include fp32, the reference of every ratio.")
    models = {p: as_precision(model, p) for p in precisions}
    ppl = {p: perplexity(m, ppl_ids) for p, m in progress(models.items(), desc="perplexity")}
    decode, prefill = {}, {}
    for batch in batches:
        timers = {p: PhaseTimer(m, batch, seq_len) for p, m in models.items()}
        for timer in timers.values():  # warm-up: first calls allocate and pick kernels
            timer.prefill(), timer.decode()
        order = list(timers)
        for i in progress(range(samples), desc=f"timing, batch {batch}", leave=False):
            # interleaved, and rotated round by round so no precision always follows the same one
            for p in order[i % len(order):] + order[: i % len(order)]:
                timer = timers[p]
                decode.setdefault((p, batch), []).append(timer.decode())
                if i < PREFILL_SAMPLES:  # a prefill costs a whole prompt (bf16 without hardware support: seconds)
                    prefill.setdefault((p, batch), []).append(timer.prefill())
    rows = []
    for batch in batches:
        base = np.array(decode[("fp32", batch)])
        for p in precisions:
            ratio, lo, hi = ratio_interval(np.array(decode[(p, batch)]), base)
            other = 2 if p == "bf16" else 4  # a bf16 model keeps activations and its KV cache in bf16
            step_bytes = decode_bytes(model.config, linear_weight_bytes(models[p]), batch, seq_len, other)
            rows.append({
                "precision": p, "batch": batch, "weight MB": weight_bytes(models[p]) / 1e6,
                "prefill ms": 1e3 * float(np.median(prefill[(p, batch)])),
                "decode ms/token": 1e3 * float(np.median(decode[(p, batch)])),
                "decode GB/s": step_bytes / float(np.median(decode[(p, batch)])) / 1e9,
                "decode time ratio to fp32": ratio, "ratio lo": lo, "ratio hi": hi,
                "predicted ratio (bytes)": predicted_decode_ratio(model.config, linear_weight_bytes(models[p]), batch,
                                                                  seq_len, other),
                "perplexity": ppl[p],
            })
    samples: dict[str, dict[int, np.ndarray]] = {}
    for (p, batch), values in decode.items():
        samples.setdefault(p, {})[batch] = np.array(values)
    table = pd.DataFrame(rows)
    return Quantised({str(c): table[c].tolist() for c in table.columns}, samples, seq_len, torch.get_num_threads())


@dataclass(frozen=True)
class QuantSetup:
    """The SmolLM2 section's measurements (the parameters of the same names; ``qlm_samples`` 0 skips it)."""

    qlm_samples: int
    qlm_seq: int
    qlm_batches: list[int]
    qlm_precisions: list[str]
    qlm_ppl_texts: int
    threads: int


def measure_smollm2(setup: QuantSetup) -> Quantised | None:
    """The section at the chapter's parameters (``None`` when ``qlm_samples`` is 0)."""
    if setup.qlm_samples == 0:
        return None
    from replbook.models.pretrained_lm import load_smollm2

    torch.set_num_threads(setup.threads)
    model, tokenizer = load_smollm2()
    ppl_ids = heldout_windows(tokenizer, setup.qlm_ppl_texts, setup.qlm_seq)
    return measure_precisions(model, setup.qlm_precisions, setup.qlm_batches, setup.qlm_seq, setup.qlm_samples,
                              ppl_ids)
