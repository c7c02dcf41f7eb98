"""Every table written so far, with provenance, the pose table and the figures, in one file.

    python scripts/report.py [--output-dir outputs] [--schedule cpu]   # -> outputs/report.md

Without --schedule, the tables of every schedule.
"""

import argparse

from stn_repro.report.document import write_report

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="outputs")
    parser.add_argument("--schedule", default=None, help="only this schedule's tables")
    args = parser.parse_args()
    print(write_report(args.output_dir, args.schedule))
