"""The HW/SW co-design survey (arXiv:2410.07265): the chapter's parameters and its one entry, :func:`run`.

Every profile runs the same code (:mod:`.miniature`): the cost model's tables, the llm-analysis cross-check and the
measured points of the machine at hand (``paper`` measures on a GPU).
"""

from __future__ import annotations

from typing import Any

from replbook.costmodel import HARDWARE_CSV
from replbook.experiments.hwsw.common import HwswResults
from replbook.experiments.hwsw.miniature import RECORDED_GPU_RUN, MachineSetup, run_all
from replbook.experiments.hwsw.quantised import PRECISIONS, QuantSetup
from replbook.models.pretrained_lm import SMOLLM2
from replbook.profiles import ChapterParams, Param, ParameterError, config


def _validate(p: dict[str, Any]) -> None:
    if p["qlm_samples"] and "fp32" not in p["qlm_precisions"]:
        raise ParameterError("parameter 'qlm_precisions' must include 'fp32', the reference of every measured ratio; "
                             f"got {p['qlm_precisions']}.")


PARAMS = ChapterParams(
    slug="hwsw",
    params=(
        Param("hardware", list, "Accelerators of data_manifests/hardware_specs.csv to draw.", item=str),
        Param("prompt_len", int, "Prompt tokens N of the modelled prefill.", 1, 1_000_000),
        Param("context", int, "Context T of the modelled decode step.", 1, 1_000_000),
        Param("batches", list, "Batch sizes of the modelled points.", 1, 4096, item=int),
        Param("matmul_sizes", list, "n of the measured n³ matmuls.", 16, 16384, item=int),
        Param("gemv_n", int, "n of the measured n² GEMV.", 16, 65536),
        Param("bandwidth_mib", int, "Copy/sum array size, beyond the last-level cache.", 1, 65536),
        Param("lm_d_model", int, "Width of the measured tiny Llama.", 16, 8192),
        Param("lm_layers", int, "Layers of the measured tiny Llama.", 1, 64),
        Param("lm_vocab", int, "Vocabulary of the measured tiny Llama.", 64, 200_000),
        Param("lm_seq", int, "Measured prefill length and decode context.", 2, 32768),
        Param("lm_batches", list, "Batch sizes of the measured tiny-Llama phases.", 1, 512, item=int),
        Param("repeats", int, "Timed repeats, each kept (the best is a point's time; the medians give the shares of "
              "the copy bandwidth).", 1, 100),
        Param("threads", int, "torch threads on CPU.", 1, 256),
        Param("device", str, "Where to measure.", choices=("cpu", "cuda")),
        Param("qlm_samples", int, "SmolLM2 quantisation: timed decode samples per precision and batch (0 skips "
              "the section).", 0, 1000),
        Param("qlm_seq", int, "SmolLM2 quantisation: prompt length, decode context and perplexity window.", 4, 8192),
        Param("qlm_batches", list, "SmolLM2 quantisation: batch sizes timed.", 1, 256, item=int),
        Param("qlm_precisions", list, "SmolLM2 quantisation: precisions measured (fp32 needed; int8 keeps the MLP "
              "down-projections fp32, int8-all quantises every linear).", choices=PRECISIONS, item=str),
        Param("qlm_ppl_texts", int, "SmolLM2 quantisation: held-out windows for perplexity.", 1, 10_000),
    ),
    defaults={
        "smoke": dict(hardware=["h100-sxm", "a100-sxm-80gb"], prompt_len=512, context=4096, batches=[1, 16],
                      matmul_sizes=[128, 256], gemv_n=1024, bandwidth_mib=16, lm_d_model=128, lm_layers=2,
                      lm_vocab=1024, lm_seq=64, lm_batches=[1], repeats=2, threads=2, device="cpu", qlm_samples=2,
                      qlm_seq=16, qlm_batches=[1], qlm_precisions=list(PRECISIONS), qlm_ppl_texts=2),
        "cpu": dict(hardware=["h100-sxm", "h200", "a100-sxm-80gb", "tpu-v5e"], matmul_sizes=[256, 512, 1024],
                    gemv_n=4096, bandwidth_mib=256, lm_d_model=512, lm_layers=4, lm_vocab=8192, lm_seq=256,
                    lm_batches=[1, 4], repeats=5, qlm_samples=15, qlm_seq=128, qlm_batches=[1, 4],
                    qlm_ppl_texts=8),
        "paper": dict(hardware=["h100-sxm", "h200", "a100-sxm-80gb", "tpu-v5e"], matmul_sizes=[1024, 4096, 8192],
                      gemv_n=16384, bandwidth_mib=4096, lm_d_model=2048, lm_layers=8, lm_vocab=32000, lm_seq=1024,
                      lm_batches=[1, 16], repeats=10, threads=16, device="cuda", qlm_samples=0),
    },
    # SmolLM2 (the quantisation section) and the held-out text of its perplexity
    assets={profile: (lambda p: [SMOLLM2, "stdlib-docstrings"] if p["qlm_samples"] else [])
            for profile in ("smoke", "cpu", "paper")},
    validate=_validate,
)


#: The chapter's results type (``replbook.results`` saves and loads it).
RESULTS = HwswResults
#: Repository files the computation reads (they enter the compute key): the accelerators' specifications and the
#: recorded GPU run the page shows.
DATA_FILES = (f"data_manifests/{HARDWARE_CSV}", RECORDED_GPU_RUN)


def run(params: dict[str, Any]) -> HwswResults:
    """Every modelled table and the measured points (on ``params["device"]``)."""
    return run_all(params["hardware"], params["prompt_len"], params["context"], params["batches"],
                   config(MachineSetup, params), config(QuantSetup, params))
