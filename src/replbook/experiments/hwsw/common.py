"""The HW/SW co-design chapter's results type: the modelled tables, the measured points of the machine at hand, the
SmolLM2 quantisation section and the ties to other chapters, as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from replbook import costmodel as cm
from replbook.codec import ResultsData
from replbook.measure import Measurement

#: A table as its columns (name → values, in order): ``pd.DataFrame(table)`` gives the table back.
Table = dict[str, list[Any]]


@dataclass
class Measured:
    """This machine's measured points: matmuls and the GEMV (``points``), the copy and sum bandwidth, the tiny
    Llama's prefill and decode (``phases``), each with its analytical FLOPs and bytes and its best time; the machine
    as a roofline (peak: the best matmul, bandwidth: the copy), the dtype measured and the tiny Llama's shape.
    Every measurement keeps each timed repeat (``repeat_seconds``), so that a share of the copy bandwidth has an
    interval over repeats."""

    points: list[Measurement]
    bandwidth: dict[str, Measurement]
    phases: list[Measurement]
    machine: cm.Hardware
    dtype: str
    lm_config: cm.TransformerConfig | None = None


@dataclass
class Quantised:
    """SmolLM2 in several precisions on this machine: ``table`` (one row per precision and batch: weight MB, prefill
    ms, decode ms per token, its ratio to fp32 with its interval, the ratio the bytes predict, perplexity) and
    ``samples`` precision → batch → the decode samples in seconds, at ``seq_len`` tokens on ``threads`` threads."""

    table: Table
    samples: dict[str, dict[int, np.ndarray]]
    seq_len: int
    threads: int


@dataclass
class RecordedRun:
    """The recorded GPU run of ``benchmarks/roofline.py`` (``benchmarks/recorded/roofline_h100.json``): its
    provenance line and its rows."""

    recorded: str
    rows: list[dict[str, Any]]


@dataclass
class HwswResults(ResultsData):
    """Everything the chapter shows. ``hardware``: the drawn accelerators (rows of hardware_specs.csv); modelled
    tables (``points``: prefill and decode of the presets on each accelerator; ``kv``, ``quant``, ``sparsity``,
    ``flash``, ``spec``, ``zero``); ``kv_crossover``: model → B·T at which its fp16 KV cache outweighs its fp16
    weights, exact as (numerator, denominator); ``comparison``: our model beside llm-analysis (None when it is not
    installed); ``measured`` and ``quantised`` (None when the SmolLM2 section did not run): this machine; and the
    ties to other chapters (SpeechPrune's TFLOPS fit, the LM head's share of linear FLOPs, LoRA shares, FedProphet's
    modules)."""

    hardware: list[cm.Hardware]
    points: Table
    kv: Table
    quant: Table
    sparsity: Table
    flash: Table
    spec: Table
    zero: Table
    kv_crossover: dict[str, tuple[int, int]]
    measured: Measured
    comparison: Table | None = None
    quantised: Quantised | None = None
    recorded_gpu: RecordedRun | None = None
    speechprune_fit: Table = field(default_factory=dict)
    lm_head_share: dict[str, float] = field(default_factory=dict)
    lora_shares: Table = field(default_factory=dict)
    fedprophet_modules: Table = field(default_factory=dict)
