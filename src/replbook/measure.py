"""Measured roofline points of the machine at hand: matmul throughput, memory bandwidth, a GEMV, and a small
transformer's prefill and decode step, each timed over several repeats (CUDA-synchronised on a GPU): the best time
is the point, every repeat is kept so that a rate can have an interval.

Timings depend on the host and its load: the chapter records both, and tests never assert them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def repeat_times(fn: Callable[[], object], repeats: int, device: str = "cpu", warmup: int = 1) -> list[float]:
    """Wall time of each of ``repeats`` calls after ``warmup`` calls, in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def best_time(fn: Callable[[], object], repeats: int, device: str = "cpu", warmup: int = 1) -> float:
    """Best wall time of ``repeats`` calls after ``warmup`` calls, in seconds."""
    return min(repeat_times(fn, repeats, device, warmup))


@dataclass(frozen=True)
class Measurement:
    """One measured point: what ran, its FLOPs and bytes (analytical), its best time and every repeat's time."""

    name: str
    flops: float
    bytes: float
    seconds: float
    repeat_seconds: tuple[float, ...] = ()

    @classmethod
    def timed(cls, name: str, flops: float, nbytes: float, times: list[float]) -> Measurement:
        return cls(name, flops, nbytes, min(times), tuple(times))

    @property
    def flop_rate(self) -> float:
        return self.flops / self.seconds

    @property
    def byte_rate(self) -> float:
        return self.bytes / self.seconds

    @property
    def ai(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")


def measure_matmul(n: int, dtype: torch.dtype = torch.float32, device: str = "cpu", repeats: int = 5) -> Measurement:
    """[n, n] @ [n, n]: 2n³ FLOPs, 3n² elements of minimum traffic."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    out = torch.empty_like(a)
    times = repeat_times(lambda: torch.mm(a, b, out=out), repeats, device)
    return Measurement.timed(f"matmul {n}³", 2 * n**3, 3 * n * n * a.element_size(), times)


def measure_gemv(n: int, dtype: torch.dtype = torch.float32, device: str = "cpu", repeats: int = 5) -> Measurement:
    """[n, n] @ [n]: 2n² FLOPs over n² + 2n elements: the decode-like, memory-bound operation."""
    a, x = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, dtype=dtype, device=device)
    times = repeat_times(lambda: torch.mv(a, x), repeats, device)
    return Measurement.timed(f"GEMV {n}²", 2 * n * n, (n * n + 2 * n) * a.element_size(), times)


def measure_bandwidth(nbytes: int, device: str = "cpu", repeats: int = 5) -> dict[str, Measurement]:
    """STREAM-like copy (bytes read + written) and sum (bytes read) over float32 arrays of ``nbytes``; pick sizes
    beyond the last-level cache."""
    n = nbytes // 4
    src, dst = torch.rand(n, device=device), torch.empty(n, device=device)
    copy = repeat_times(lambda: dst.copy_(src), repeats, device)
    total = repeat_times(lambda: src.sum(), repeats, device)
    return {"copy": Measurement.timed("copy", 0, 2 * nbytes, copy), "sum": Measurement.timed("sum", n, nbytes, total)}


def tiny_llama(d_model: int = 512, n_layers: int = 4, n_heads: int = 8, d_ff: int = 2048, vocab: int = 8192,
               seed: int = 0):
    """A randomly initialised Llama-architecture decoder (transformers), eval mode, fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                         num_key_value_heads=n_heads, intermediate_size=d_ff, vocab_size=vocab,
                         max_position_embeddings=4096)
    return LlamaForCausalLM(config).eval()


@torch.no_grad()
def time_lm_phases(model, batch: int, seq_len: int, device: str = "cpu", repeats: int = 5) -> dict[str, list[float]]:
    """Every repeat's seconds of a prefill of [batch, seq_len] tokens and of one decode step on top of its KV
    cache."""
    model = model.to(device)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len), device=device)
    prefill = repeat_times(lambda: model(ids, use_cache=True), repeats, device)
    out = model(ids, use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    step = ids[:, -1:]

    # The cache grows by one position per call: crop it back so every timed step sees the same context.
    def decode_once():
        model(step, cache=cache, use_cache=True)
        cache.crop(-1)

    return {"prefill": prefill, "decode": repeat_times(decode_once, repeats, device)}


def peak_cpu_allocation(fn: Callable[[], object]) -> int:
    """Peak bytes allocated by torch's CPU allocator while ``fn()`` runs, above what was held when it started, read
    from torch's profiler (its ``[memory]`` events: + bytes at each allocation, − at each free, in time order). Add
    what was already resident (parameters, optimizer state) for a step's total. Python objects are not counted."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() ==
              torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak
