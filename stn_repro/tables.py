"""Metrics of finished runs -> tables (Markdown, CSV, LaTeX), the paper's numbers beside ours."""

from __future__ import annotations

import csv
import io
import statistics
from datetime import date
from pathlib import Path

from .config import slug
from .errors import warn
from .files import CorruptFile, locked, read_json, write_atomic, write_json
from .paper import (
    GTSRB_COLUMNS,
    GTSRB_ROWS,
    REFERENCE_ROWS,
    SOURCES,
    TABLE1_COLUMNS,
    TABLE1_ROWS,
    TABLE2_COLUMNS,
    TABLE2_ROWS,
    TABLE3_COLUMNS,
    TABLE3_ROWS,
    TABLE3D_COLUMNS,
    TABLE3D_ROWS,
    TABLE4_COLUMNS,
    TABLE4_ROWS,
    TABLE5_COLUMNS,
    TABLE5_ROWS,
    paper_value,
)

LAYOUTS = {
    "table1": (TABLE1_ROWS, TABLE1_COLUMNS),
    "table2": (TABLE2_ROWS, TABLE2_COLUMNS),
    "table4": (TABLE4_ROWS, TABLE4_COLUMNS),
    "table3d": (TABLE3D_ROWS, TABLE3D_COLUMNS),
    "table5": (TABLE5_ROWS, TABLE5_COLUMNS),
    "gtsrb": (GTSRB_ROWS, GTSRB_COLUMNS),
    "table3": (TABLE3_ROWS, TABLE3_COLUMNS),
}
METRICS = {
    "table2": ("test_error", "% sequence error"),
    "table5": ("localised_pct", "% of digits localised (IoU > 0.5)"),
    "gtsrb": ("test_error", "% test error and accuracy"),
    "table3": ("test_error", "% test error and accuracy"),
}
"""Each table's metric (key in metrics.json, caption); the default is % test error."""
WITH_ACCURACY = {"gtsrb", "table3"}
"""Tables that also show % accuracy (100 - % error), the figure their sources publish."""


def metric(table: str) -> tuple[str, str]:
    return METRICS.get(table, ("test_error", "% test error"))


def column_path(output_dir: str | Path, table: str, schedule: str, experiment: str) -> Path:
    return Path(output_dir) / "tables" / "columns" / f"{table}-{schedule}-{slug(experiment)}.json"


def write_column(output_dir: str | Path, exp, schedule: str, runs: list[dict]) -> None:
    """Record the finished runs of experiment ``exp`` (one column of its table) under
    ``<output_dir>/tables/columns/``: the table step reads these records, so a table shows,
    for each column, the runs of the config that column was last run with."""
    record = {"table": exp.table, "schedule": schedule, "experiment": exp.name, "runs": runs}
    write_json(column_path(output_dir, exp.table, schedule, exp.name), record)


def collect(output_dir: str | Path, table: str, schedule: str) -> list[dict]:
    """The finished runs of every column recorded for ``table`` and ``schedule``."""
    found = []
    for path in sorted(column_path(output_dir, table, schedule, "*").parent.glob(
            f"{table}-{schedule}-*.json")):  # fmt: skip
        try:
            record = read_json(path)
        except CorruptFile as err:
            warn(f"{path} is corrupt ({err}); rerun its experiment to rewrite it")
            continue
        if record["table"] == table and record["schedule"] == schedule:
            found += record["runs"]
    return found


def summarise(runs: list[dict], table: str) -> list[dict]:
    """One line per (column, row) that has runs: paper, ours (mean, sd, n), difference. Rows of
    other papers' models (``REFERENCE_ROWS``) get a line with the paper's number only, in each
    column that has runs."""
    rows, columns = LAYOUTS[table]
    reference = REFERENCE_ROWS.get(table, ())
    lines = []
    for column in columns:
        if not any(r["column"] == column for r in runs):
            continue
        for row in rows:
            paper = paper_value(table, row, column)
            if row in reference:
                if paper is not None:
                    lines.append({"column": column, "model": row, "paper": paper,
                                  "ours_mean": None, "ours_sd": None, "n": 0, "diff": None,
                                  "params": None, "seeds": "reference"})  # fmt: skip
                continue
            cell = [r for r in runs if r["column"] == column and r["row"] == row]
            if not cell:
                continue
            values = [r[metric(table)[0]] for r in cell]
            mean = statistics.fmean(values)
            lines.append({
                "column": column,
                "model": row,
                "paper": paper,
                "ours_mean": round(mean, 3),
                "ours_sd": round(statistics.stdev(values), 3) if len(values) > 1 else None,
                "n": len(values),
                "diff": None if paper is None else round(mean - paper, 3),
                "params": cell[0]["params"],
                "seeds": " ".join(str(r["seed"]) for r in sorted(cell, key=lambda r: r["seed"])),
            })  # fmt: skip
    return lines


def fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ours(line: dict, key: str = "ours_mean") -> str:
    """``mean ± sd (n=k)`` of ``line[key]`` (``ours_mean``, or ``ours_accuracy``)."""
    if line[key] is None:
        return "-"
    sd = "" if line["ours_sd"] is None else f" ± {line['ours_sd']:.2f}"
    return f"{line[key]:.2f}{sd} (n={line['n']})"


def with_accuracy(lines: list[dict]) -> list[dict]:
    """Each line with ``paper_accuracy`` and ``ours_accuracy``: 100 - the % errors."""

    def acc(v):
        return None if v is None else round(100 - v, 3)

    return [{**line, "paper_accuracy": acc(line["paper"]),
             "ours_accuracy": acc(line["ours_mean"])} for line in lines]  # fmt: skip


def to_markdown(table: str, lines: list[dict], runs: list[dict], schedule: str) -> str:
    data = sorted({r["data"] for r in runs})
    out = [
        f"# {table}: {metric(table)[1]}, paper vs ours",
        "",
        f"Schedule `{schedule}`; generated {date.today().isoformat()} by stn-repro from "
        f"{len(runs)} finished runs. Ours: mean ± sd over n seeds. Diff: ours - paper.",
        "",
        f"Paper values: {SOURCES[table]}",
        "",
    ]
    accuracy = table in WITH_ACCURACY
    if accuracy:
        out += ["| Column | Model | Paper | Ours | Diff | Paper acc. | Ours acc. | Params "
                "| Seeds |", "|---|---|---:|---|---:|---:|---|---:|---|"]  # fmt: skip
    else:
        out += ["| Column | Model | Paper | Ours | Diff | Params | Seeds |",
                "|---|---|---:|---|---:|---:|---|"]  # fmt: skip
    for line in lines:
        acc = (f"{fmt(line['paper_accuracy'])} | {ours(line, 'ours_accuracy')} | "
               if accuracy else "")  # fmt: skip
        out.append(
            f"| {line['column']} | {line['model']} | {fmt(line['paper'], 2 if accuracy else 1)} | "
            f"{ours(line)} | {fmt(line['diff'])} | {acc}{fmt_params(line['params'])} | "
            f"{line['seeds']} |"
        )
    narrow = sorted({f"{r['row']} ({r['column']}): width x{r['width']:g}" for r in runs
                     if r.get("width") not in (None, 1.0)})  # fmt: skip
    if narrow:
        out += ["", "Reduced-width models (not the paper's networks):", *[f"- {n}" for n in narrow]]
    out += ["", "Data:", *[f"- {d}" for d in data], ""]
    return "\n".join(out)


def fmt_params(params: int | None) -> str:
    return "-" if params is None else f"{params:,}"


def to_csv(lines: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["column", "model", "paper", "ours_mean", "ours_sd", "n", "diff", "params", "seeds"]
    if lines and "paper_accuracy" in lines[0]:
        fields[7:7] = ["paper_accuracy", "ours_accuracy"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(lines)
    return buf.getvalue()


def to_latex(table: str, lines: list[dict], schedule: str) -> str:
    accuracy = table in WITH_ACCURACY
    out = [
        "\\begin{tabular}{llrlr" + ("rl" if accuracy else "") + "r}",
        "\\hline",
        "Column & Model & Paper & Ours & Diff & " + ("Paper acc. & Ours acc. & " if accuracy
                                                    else "") + "Params \\\\",
        "\\hline",
    ]  # fmt: skip

    def tex(text: str) -> str:
        return text.replace("±", "$\\pm$").replace("(n=", "($n$=")

    for line in lines:
        acc = (f"{fmt(line['paper_accuracy'])} & {tex(ours(line, 'ours_accuracy'))} & "
               if accuracy else "")  # fmt: skip
        out.append(
            f"{line['column']} & {line['model']} & {fmt(line['paper'], 2 if accuracy else 1)} & "
            f"{tex(ours(line))} & {fmt(line['diff'])} & {acc}{fmt_params(line['params'])} \\\\"
        )
    caption = f"% {table}, schedule {schedule}: {metric(table)[1]}"
    out += ["\\hline", "\\end{tabular}", caption, ""]
    return "\n".join(out)


def write_tables(output_dir: str | Path, table: str, schedule: str) -> Path:
    """Write ``<output_dir>/tables/<table>.{md,csv,tex}`` from the finished runs."""
    folder = Path(output_dir) / "tables"
    runs = collect(output_dir, table, schedule)
    lines = summarise(runs, table)
    if table in WITH_ACCURACY:
        lines = with_accuracy(lines)
    for suffix, text in [
        ("md", to_markdown(table, lines, runs, schedule)),
        ("csv", to_csv(lines)),
        ("tex", to_latex(table, lines, schedule)),
    ]:
        write_atomic(folder / f"{table}.{suffix}", text)
    return folder / f"{table}.md"


def table_lock(output_dir: str | Path, table: str):
    """Hold this while reading runs and writing a column and its table, so that of concurrent
    launches the last to write has seen every finished run."""
    return locked(Path(output_dir) / "tables" / table)
