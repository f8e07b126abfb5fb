"""Min-K%++ scoring speed: batched kernels vs a per-text loop with the official code's structure, in one process.

Inputs: synthetic logits [32, 128, 50 000] float32 (819 MB) with random ids, and (``--smollm2``, on in ``make bench``)
SmolLM2-135M's real logits [8, 128, 49 152] on windows of the Python reference manual, whose peaked next-token
distributions are what the kernels meet in practice. Prints, for each input,
- the speed ratio of `replbook.minkpp.sequence_scores` (Loss, Min-K% and Min-K%++ at one k from one pass) over
  the per-text baseline (batch 1, softmax + log-softmax, numpy sort; tests/reference_minkpp.py), goal ≥ 10×;
- the bytes of logits read per second as a fraction of a same-size tensor copy's, goal ≥ 0.5;
each for the eager kernel (the default) and the `torch.compile` one (compile time reported apart).
Run: `make bench` (or `.venv/bin/python benchmarks/minkpp.py --batch 8` for a quicker look).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the official-structure reference
from reference_minkpp import official_style_scores  # noqa: E402

from replbook import minkpp  # noqa: E402
from replbook.measure import best_time  # noqa: E402


def best_of(fn, repeats: int, device: str) -> float:
    return best_time(fn, repeats, device, warmup=0)


def smollm2_logits(batch: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SmolLM2-135M's logits [batch, seq, 49 152] on the first ``batch`` windows of ``seq`` tokens of the Python
    reference manual, and those windows' ids."""
    from replbook.experiments.minkpp.real_lm import corpus_windows
    from replbook.models.pretrained_lm import load_smollm2

    model, tokenizer = load_smollm2()
    ids = corpus_windows(tokenizer, batch, seq).ids
    with torch.no_grad():
        return model(input_ids=ids).logits.float(), ids


def compare(label: str, logits: torch.Tensor, ids: torch.Tensor, k: float, repeats: int, device: str) -> None:
    """Time the batched kernels (eager and compiled) against the per-text baseline on one input and print a block."""
    batch, seq, vocab = logits.shape
    nbytes = logits.numel() * logits.element_size()

    def batched(compiled: bool = False):
        scores = minkpp.sequence_scores(logits, ids, ks=[k], compiled=compiled)
        return scores[minkpp.score_name("mink", k)], scores[minkpp.score_name("minkpp", k)]

    def baseline():
        return [official_style_scores(logits[b : b + 1], ids[b : b + 1], k) for b in range(batch)]

    # Same numbers first: the comparison is only meaningful between equal results.
    ours = batched()
    ref = torch.tensor(baseline(), dtype=torch.float64)
    assert torch.allclose(ours[0].double().cpu(), ref[:, 0], atol=1e-4)
    assert torch.allclose(ours[1].double().cpu(), ref[:, 1], atol=1e-3)
    copy_target = torch.empty_like(logits)
    t_copy = best_of(lambda: copy_target.copy_(logits), repeats, device)
    t_batched = best_of(batched, repeats, device)
    t_baseline = best_of(baseline, max(1, repeats - 1), device)
    start = time.perf_counter()
    fused = batched(compiled=True)
    t_compile = time.perf_counter() - start
    assert torch.allclose(fused[1], ours[1], atol=1e-3)
    t_compiled = best_of(lambda: batched(compiled=True), repeats, device)

    print(f"\n{label}: logits [{batch}, {seq}, {vocab}] {logits.dtype} = {nbytes / 1e6:.0f} MB")
    print(f"tensor copy          {t_copy * 1e3:9.1f} ms  {nbytes / t_copy / 1e9:6.2f} GB/s read")
    print(f"official structure   {t_baseline * 1e3:9.1f} ms  {nbytes / t_baseline / 1e9:6.2f} GB/s read "
          "(both scores per text)")
    for name, t in (("replbook eager", t_batched), ("replbook compiled", t_compiled)):
        print(f"{name:<20} {t * 1e3:9.1f} ms  {nbytes / t / 1e9:6.2f} GB/s read   speed ratio "
              f"{t_baseline / t:5.1f}x (goal >= 10x)   bandwidth fraction {t_copy / t:.2f} (goal >= 0.5)")
    print(f"(torch.compile: first call {t_compile:.1f} s, compiling once per shape)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=50_000)
    parser.add_argument("--k", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--smollm2", action="store_true", help="also time SmolLM2-135M's real logits")
    parser.add_argument("--smollm2-batch", type=int, default=8)
    args = parser.parse_args()

    torch.manual_seed(0)
    logits = (torch.randn(args.batch, args.seq, args.vocab) * 3).to(args.device, getattr(torch, args.dtype))
    ids = torch.randint(0, args.vocab, (args.batch, args.seq)).to(args.device)
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"device: {where}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    compare("synthetic (Gaussian logits, std 3)", logits, ids, args.k, args.repeats, args.device)
    if args.smollm2:
        del logits
        real, real_ids = smollm2_logits(args.smollm2_batch, args.seq)
        real = real.to(args.device, getattr(torch, args.dtype))
        compare("SmolLM2-135M's real logits (Python reference manual)", real, real_ids.to(args.device), args.k,
                args.repeats, args.device)


if __name__ == "__main__":
    main()
