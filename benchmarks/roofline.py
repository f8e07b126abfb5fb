"""Measure this machine's roofline points (matmul, GEMV, copy/sum bandwidth, a tiny Llama's prefill and decode) with
the hwsw chapter's code, outside the notebook: on a GPU with `--device cuda` (the `paper` profile's sizes).

Prints the table and writes it as JSON (`--out`), so a GPU run can be recorded beside the chapter's CPU figures.
"""

from __future__ import annotations

import argparse
import json

import torch

from replbook import costmodel as cm
from replbook.experiments.hwsw import PARAMS, report
from replbook.experiments.hwsw import miniature as hwsw
from replbook.profiles import config, resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"])
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    params = resolve(PARAMS, args.profile, {"device": args.device}, check_assets=False)
    measured = hwsw.measure_machine(config(hwsw.MachineSetup, params))
    table = report.measured_table(measured)
    machine = measured.machine
    where = torch.cuda.get_device_name(0) if params["device"] == "cuda" else "CPU"
    print(f"device: {where}, dtype {measured.dtype}, torch {torch.__version__}")
    print(table.round(3).to_string(index=False))
    peak = machine.peak[measured.dtype]
    print(f"measured peak {peak / 1e12:.2f} TFLOP/s, copy bandwidth {machine.mem_bw / 1e9:.1f} GB/s, "
          f"ridge {peak / machine.mem_bw:.1f} FLOP/B")
    if params["device"] == "cuda" and "H100" in where:
        hw = cm.load_hardware("h100-sxm")
        print(f"vs the h100-sxm row: {peak / hw.peak['bf16']:.2f} of the dense bf16 peak, "
              f"{machine.mem_bw / hw.mem_bw:.2f} of the bandwidth")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"device": where, "dtype": measured.dtype, "rows": table.to_dict("records")}, handle,
                      indent=2)


if __name__ == "__main__":
    main()
