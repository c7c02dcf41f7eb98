"""Every table written so far, with provenance, the pose table and the figures, in one file.

    python scripts/report.py [--output-dir outputs]     # -> outputs/report.md
"""

import argparse

from stn_repro.report import write_report

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="outputs")
    print(write_report(parser.parse_args().output_dir))
