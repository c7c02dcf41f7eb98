"""What the finished runs learnt: the pose table and the paper's figures and animations.

    python scripts/analyse.py [--schedule fast] [--output-dir outputs]

Writes outputs/tables/pose.{md,csv} and outputs/figures/ (see stn_repro/report/analysis.py); `make
report` runs it, then scripts/report.py.
"""

import argparse

from stn_repro.report.analysis import analyse

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", default="fast", help="whose runs: paper, fast or smoke")
    parser.add_argument("--output-dir", default="outputs")
    args = parser.parse_args()
    for path in analyse(args.output_dir, args.schedule):
        print(path)
