"""The GPU check in one command: every table's models' training speed under each precision
and layout, runs sharing the GPU, a slice of A.4's schedule against the CPU's, and the projected
GPU-hours of `make all-tables SCHEDULE=paper`, within a wall-time budget it enforces.

    python scripts/gpu_check.py [--budget 540] [--device cuda] [--out outputs/gpu_check]
                                [--slice-steps 2000]
    python scripts/gpu_check.py --device cpu --smoke        # the same code, seconds, on a CPU
    python scripts/gpu_check.py --device cpu --cpu-reference   # the slice's CPU figure, to docs/

Writes gpu_check.json and gpu_check.md under --out after every measurement (a budget that runs
out leaves what was measured) and prints the Markdown, the projection last.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from stn_repro import gpu_check


def cpu_reference(steps: int) -> Path:
    """Run the slice on this CPU and record its validation curve for the GPU check."""
    from stn_repro.runs import code_version
    from stn_repro.schema import hydra_initialised

    out = Path("outputs") / "gpu_check_cpu"
    with hydra_initialised():
        found = gpu_check.paper_slice(out, torch.device("cpu"), steps, [])
    source = (f"CPU, {torch.get_num_threads()} threads, commit {code_version()['commit']}, "
              f"{time.strftime('%Y-%m-%d')}, {found['images_per_s']:,.0f} images/s")  # fmt: skip
    record = {"row": found["row"], "curve": found["curve"], "source": source}
    gpu_check.CPU_REFERENCE.write_text(json.dumps(record, indent=1) + "\n")
    return gpu_check.CPU_REFERENCE


def main(argv: list[str] | None = None) -> gpu_check.Check | Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget", type=float, default=540, help="seconds (default 9 minutes)")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "gpu_check")
    parser.add_argument("--smoke", action="store_true", help="a few small rows, tiny batches")
    parser.add_argument("--slice-steps", type=int, default=None,
                        help="iterations of the paper slice (default 2000; 4 with --smoke)")
    parser.add_argument("--cpu-reference", action="store_true",
                        help="run only the slice, here, and record it in docs/")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for the slice run (e.g. paths.cache_dir=...)")
    args = parser.parse_args(argv)
    steps = args.slice_steps or (4 if args.smoke else 2000)
    if args.cpu_reference:
        path = cpu_reference(steps)
        print(f"recorded: {path}")
        return path
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: error: no CUDA device here; use --device cpu --smoke")
    check = gpu_check.run(device, args.budget, args.out, args.smoke, steps, args.set)
    print(check.markdown())
    print(f"written: {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
    return check


if __name__ == "__main__":
    main()
