"""Joint image + mask DDIM sampling: `replay.ddim_sample` against diffusers' stock `DDIMPipeline`, in one process.

One randomly initialised diffusers `UNet2DModel` (fixed seed, no training) with 2 channels in and out (one image
channel + one mask channel), block_out_channels (16, 32, 64), 24 × 24 by default, drives both samplers with the same
number of DDIM steps and the official CGR schedule (`replay.make_scheduler("ddim")`; the pipeline gets the same
scheduler, which it converts with `DDIMScheduler.from_config`). Each call makes a batch of images from a seed: x_T
from `diffusers.utils.torch_utils.randn_tensor` with `torch.Generator().manual_seed(seed)` (the pipeline's own draw),
the DDIM loop, and the pipeline's output map (x/2 + 0.5).clamp(0, 1) (`output_type="pt"`). Prints
- max |Δ| between the two samplers' outputs for the same noise (every timed call is compared), goal 0 (or ~1e-6);
- the median images/s of each over `--repeats` interleaved calls after a warm-up, and the ratio ours / pipeline,
  goal ≥ 1.0 (no slower);
with the torch thread count and the 1-minute load average (timings depend on both; nothing here is asserted).
Run: `.venv/bin/python benchmarks/replay.py` (or `--size 16 --batch 4 --steps 10 --threads 2` for a quicker look;
`--json PATH` also writes the results). On a host busy with other jobs pass `--threads 1`: torch's OpenMP
threads competing for the same cores can stall a call for tens of seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from diffusers import DDIMPipeline, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from replbook import replay


def joint_unet(size: int, seed: int) -> UNet2DModel:
    """A small randomly initialised UNet on [image; mask]: 2 channels in and out, one attention level."""
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=size, in_channels=2, out_channels=2, block_out_channels=(16, 32, 64),
                       layers_per_block=2, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))
    return unet.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=24, help="image side (UNet sample_size); a multiple of 4")
    parser.add_argument("--batch", type=int, default=16, help="images per call")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each, interleaved")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each first")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (the UNet is initialised with seed 0)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    unet = joint_unet(args.size, seed=0)
    pipe = DDIMPipeline(unet=unet, scheduler=replay.make_scheduler("ddim"))
    pipe.set_progress_bar_config(disable=True)
    denoiser = replay.unet_denoiser(unet)
    shape = (args.batch, unet.config.in_channels, args.size, args.size)

    def pipeline() -> torch.Tensor:
        generator = torch.Generator().manual_seed(args.seed)
        return pipe(batch_size=args.batch, generator=generator, num_inference_steps=args.steps, output_type="pt").images

    def ours() -> torch.Tensor:
        generator = torch.Generator().manual_seed(args.seed)
        x_T = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=unet.dtype)
        z = replay.ddim_sample(denoiser, x_T, args.steps)
        return (z / 2 + 0.5).clamp(0, 1)

    def timed(fn) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out

    max_diff = 0.0
    times: dict[str, list[float]] = {"ours": [], "pipeline": []}
    for i in range(args.warmup + args.repeats):
        # Interleaved, alternating which goes first, so drift in the host's load reaches both alike.
        order = ("ours", "pipeline") if i % 2 == 0 else ("pipeline", "ours")
        outs = {}
        for name in order:
            seconds, outs[name] = timed(ours if name == "ours" else pipeline)
            if i >= args.warmup:
                times[name].append(seconds)
        max_diff = max(max_diff, (outs["ours"] - outs["pipeline"]).abs().max().item())

    rate = {name: args.batch / statistics.median(t) for name, t in times.items()}
    ratio = rate["ours"] / rate["pipeline"]
    threads, load = torch.get_num_threads(), os.getloadavg()[0]
    print(f"device: {os.cpu_count()} CPU cores, torch {torch.__version__}, {threads} threads, "
          f"load average {load:.2f}")
    print(f"UNet2DModel 2 -> 2 channels (image + mask), {args.size}x{args.size}, block_out_channels (16, 32, 64), "
          f"{sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters; batch {args.batch}, "
          f"{args.steps} DDIM steps, median of {args.repeats} (after {args.warmup} warm-up)")
    print(f"{'sampler':<28}{'median s/call':>14}{'images/s':>10}")
    for name, label in (("pipeline", "diffusers DDIMPipeline"), ("ours", "replay.ddim_sample")):
        print(f"{label:<28}{statistics.median(times[name]):>14.3f}{rate[name]:>10.2f}")
    print(f"speed ratio ours / pipeline: {ratio:.3f}x (goal >= 1.0x)")
    print(f"same noise, max |Δ| of the outputs in [0, 1]: {max_diff:.3g} (goal 0, or ~1e-6)")
    if args.json:
        result = {"device": f"{os.cpu_count()} CPU cores", "torch": torch.__version__, "threads": threads,
                  "load_average_1min": load, "size": args.size, "batch": args.batch, "steps": args.steps,
                  "repeats": args.repeats, "warmup": args.warmup, "seed": args.seed,
                  "seconds": times, "images_per_s": rate, "ratio_ours_over_pipeline": ratio,
                  "max_abs_diff": max_diff}
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
