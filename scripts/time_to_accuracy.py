"""Time to accuracy of a table column: every row's watched error against training minutes.

    python scripts/time_to_accuracy.py table1_rts [--schedule cpu] [--seed 1]
        [--outputs outputs] [--out outputs/figures/time_to_accuracy-table1_rts-cpu.png]
        [OVERRIDE=VALUE ...]

Each row's curve is read from the run directory of the row's config as the experiment composes
it with these settings (overrides as on the experiment's command line, e.g.
``dataset.params.moved=frame``), so runs of other configs beside it are never drawn. Writes the
figure and, beside it, a Markdown table (.md) of each row's last error and the minutes it took
to reach the paper's number, and the curve record (.json): a later call draws a row whose run
is not on its machine from the record when the record holds the run of the same config (rows
trained on different machines make one figure). Prints the table. Runs still training are
drawn from their last checkpoint. Tune on validation digits (``dataset.validation=5000``):
without them the curve follows the test digits, which must then only be reported, never
tuned on.
"""

import argparse
from pathlib import Path

from stn_repro.cli import check_arguments, explain
from stn_repro.config import CONF_DIR
from stn_repro.experiment import row_run_dirs
from stn_repro.files import CorruptFile
from stn_repro.report.time_to_accuracy import column_curves, draw, summary, write_record
from stn_repro.schema import hydra_initialised


def main(argv: list[str]) -> Path:
    # Hydra overrides (KEY=VALUE) may stand anywhere on the line.
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="a table column, e.g. table1_rts")
    parser.add_argument("--schedule", default="cpu", help="cpu: Table 1's recipe (default)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--outputs", type=Path, default=Path("outputs"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args([a for a in argv if a not in overrides])
    if not (CONF_DIR / "experiment" / f"{args.experiment}.yaml").exists():
        known = ", ".join(sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
        raise SystemExit(f"time_to_accuracy: error: no experiment {args.experiment!r} "
                         f"(choose from {known})")  # fmt: skip
    chosen = [*overrides, f"experiment={args.experiment}", f"schedule={args.schedule}",
              f"paths.output_dir={args.outputs.resolve()}"]  # fmt: skip
    try:
        for given in overrides:
            if (key := given.split("=", 1)[0].lstrip("+~")) in ("experiment", "schedule", "seed"):
                option = f"--{key}" if key != "experiment" else "the first argument"
                raise SystemExit(f"time_to_accuracy: error: {given}: give the {key} as {option}")
        check_arguments(chosen)
        with hydra_initialised():
            exp, seed_dirs = row_run_dirs(chosen, args.seed)
    except Exception as err:  # one line for what the user can fix, else the traceback
        if (message := explain(err)) is None:
            raise
        raise SystemExit(f"time_to_accuracy: error: {message}") from None
    seed = "" if args.seed == 1 else f"-seed{args.seed}"
    out = args.out or (args.outputs / "figures" /
                       f"time_to_accuracy-{args.experiment}-{args.schedule}{seed}.png")  # fmt: skip
    record = out.with_suffix(".json")
    try:
        curves = column_curves(exp, seed_dirs, record)
    except CorruptFile as err:
        raise SystemExit(f"time_to_accuracy: error: {err}") from None
    if not curves:
        raise SystemExit(f"no run of {args.experiment} ({args.schedule}, seed {args.seed}) "
                         f"has a curve under {args.outputs / 'runs'} or in {record}")  # fmt: skip
    title = f"{exp.table} {exp.column}: {args.schedule}, seed {args.seed}"
    draw(curves, title, out)
    table = summary(curves)
    out.with_suffix(".md").write_text(f"# {title}\n\n{table}\n")
    write_record(curves, record)
    print(table)
    if from_record := [c.row for c in curves if c.recorded]:
        print(f"from the curve record {record} (runs not here): {', '.join(from_record)}")
    print(f"figure: {out}")
    return out


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
