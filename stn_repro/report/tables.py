"""Metrics of finished runs -> tables (Markdown, CSV, LaTeX), the paper's numbers beside ours."""

from __future__ import annotations

import csv
import io
import statistics
from datetime import date
from pathlib import Path

from ..config import slug
from ..errors import warn
from ..files import CorruptFile, locked, read_json, write_atomic, write_json
from .paper import TABLES, paper_value


def metric(table: str) -> tuple[str, str]:
    """The table's metric: its key in metrics.json and its caption."""
    return TABLES[table].metric, TABLES[table].caption


def column_path(output_dir: str | Path, table: str, schedule: str, experiment: str) -> Path:
    return Path(output_dir) / "tables" / "columns" / f"{table}-{schedule}-{slug(experiment)}.json"


def table_path(output_dir: str | Path, table: str, schedule: str, suffix: str = "md") -> Path:
    """``<output_dir>/tables/<table>-<schedule>.<suffix>``: one table per schedule."""
    return Path(output_dir) / "tables" / f"{table}-{schedule}.{suffix}"


def write_column(output_dir: str | Path, exp, schedule: str, runs: list[dict],
                 cells: list[dict] | None = None, settings: list[str] = ()) -> None:  # fmt: skip
    """Record experiment ``exp``'s finished runs (one column of its table), every run it
    plans (``cells``: row, seed, iterations, batch, length, the iteration reached) and the
    command line's ``settings`` it ran with under ``<output_dir>/tables/columns/``: the table
    step reads these records, so a table shows, for each column, the runs of the config that
    column was last run with, that config's settings, and what is left."""
    record = {"table": exp.table, "schedule": schedule, "experiment": exp.name,
              "column": exp.column, "runs": runs, "cells": cells or [],
              "settings": list(settings)}  # fmt: skip
    write_json(column_path(output_dir, exp.table, schedule, exp.name), record)


def collect(output_dir: str | Path, table: str, schedule: str) -> tuple[list[dict], list[dict]]:
    """The finished runs, and the planned cells (each with its ``column``), of every column
    recorded for ``table`` and ``schedule``."""
    runs, cells = [], []
    for path in sorted(column_path(output_dir, table, schedule, "*").parent.glob(
            f"{table}-{schedule}-*.json")):  # fmt: skip
        try:
            record = read_json(path)
        except CorruptFile as err:
            warn(f"{path} is corrupt ({err}); rerun its experiment to rewrite it")
            continue
        if record["table"] == table and record["schedule"] == schedule:
            runs += record["runs"]
            column = record.get("column") or (record["runs"] or [{}])[0].get("column")
            settings = record.get("settings")  # None: written before settings were
            cells += [{**cell, "column": column, "settings": settings}
                      for cell in record.get("cells", [])]  # fmt: skip
    return runs, cells


def summarise(runs: list[dict], table: str, cells: list[dict] | None = None) -> list[dict]:
    """One line per (column, row) that has runs or planned cells: paper, ours (mean, sd, n),
    difference, and ``unfinished`` (each unfinished seed's progress). Rows of other papers'
    models (the spec's ``reference_rows``) get a line with the paper's number only, in each
    column that has runs."""
    rows, columns = TABLES[table].rows, TABLES[table].columns
    reference = TABLES[table].reference_rows
    cells = cells or []
    lines = []
    for column in columns:
        if not any(r["column"] == column for r in [*runs, *cells]):
            continue
        for row in rows:
            paper = paper_value(table, row, column)
            if row in reference:
                if paper is not None:
                    lines.append({"column": column, "model": row, "paper": paper,
                                  "ours_mean": None, "ours_sd": None, "n": 0, "diff": None,
                                  "params": None, "seeds": "reference",
                                  "unfinished": ""})  # fmt: skip
                continue
            done = [r for r in runs if r["column"] == column and r["row"] == row]
            done_seeds = {r["seed"] for r in done}
            left = [c for c in cells if c["column"] == column and c["row"] == row
                    and c["seed"] not in done_seeds]  # fmt: skip
            if not done and not left:
                continue
            values = [r[metric(table)[0]] for r in done]
            mean = statistics.fmean(values) if values else None
            lines.append({
                "column": column,
                "model": row,
                "paper": paper,
                "ours_mean": None if mean is None else round(mean, 3),
                "ours_sd": round(statistics.stdev(values), 3) if len(values) > 1 else None,
                "n": len(values),
                "diff": None if paper is None or mean is None else round(mean - paper, 3),
                "params": done[0]["params"] if done else None,
                "seeds": " ".join(str(r["seed"]) for r in sorted(done, key=lambda r: r["seed"])),
                "unfinished": ", ".join(progress(c) for c in sorted(left, key=lambda c: c["seed"])),
            })  # fmt: skip
    return lines


def progress(cell: dict) -> str:
    """``seed 2 at 40%`` or ``seed 3 not started``."""
    if not cell.get("iteration"):
        return f"seed {cell['seed']} not started"
    length = cell.get("length", cell["iterations"])
    return f"seed {cell['seed']} at {100 * cell['iteration'] / length:.0f}%"


def fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ours(line: dict, key: str = "ours_mean") -> str:
    """``mean ± sd (n)`` of ``line[key]`` (``ours_mean``, or ``ours_accuracy``), with the
    unfinished seeds' progress; ``-`` where nothing is."""
    if line["seeds"] == "reference":
        return "(reference)"
    text = "" if line[key] is None else f"{line[key]:.2f}"
    if line[key] is not None:
        text += ("" if line["ours_sd"] is None else f" ± {line['ours_sd']:.2f}") + f" ({line['n']})"
    if line.get("unfinished"):
        text += f" [{line['unfinished']}]" if text else line["unfinished"]
    return text or "-"


def with_accuracy(lines: list[dict]) -> list[dict]:
    """Each line with ``paper_accuracy`` and ``ours_accuracy``: 100 - the % errors."""

    def acc(v):
        return None if v is None else round(100 - v, 3)

    return [{**line, "paper_accuracy": acc(line["paper"]),
             "ours_accuracy": acc(line["ours_mean"])} for line in lines]  # fmt: skip


def grid(table: str, lines: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The paper's layout: a header (Model, then ours and paper for each column that has
    lines) and one row per model, in the paper's order."""
    rows, columns = TABLES[table].rows, TABLES[table].columns
    by = {(line["column"], line["model"]): line for line in lines}
    present = [c for c in columns if any(line["column"] == c for line in lines)]
    accuracy = TABLES[table].with_accuracy
    header = ["Model"]
    for column in present:
        header += [f"{column}: ours", f"{column}: paper"]
    body = []
    for model in rows:
        if not any((c, model) in by for c in present):
            continue
        cells = [model]
        for column in present:
            line = by.get((column, model))
            if line is None:
                cells += ["", fmt(paper_value(table, model, column), 1)]
                continue
            mine, paper = ours(line), fmt(line["paper"], 2 if accuracy else 1)
            if accuracy and line["ours_accuracy"] is not None:
                mine += f"; acc. {line['ours_accuracy']:.2f}"
            if accuracy and line["paper"] is not None:
                paper += f" (acc. {line['paper_accuracy']:.2f})"
            cells += [mine, paper]
        body.append(cells)
    return header, body


def describe(runs: list[dict], cells: list[dict], schedule: str) -> list[str]:
    """What the numbers are: schedule, iterations x batch, device, how many runs are done, and
    a caveat when the schedule is not the paper's."""
    budgets = sorted({(c["iterations"], c["batch"]) for c in cells if "batch" in c})
    trained = ", ".join(f"{i:,} iterations of {b}" for i, b in budgets) or ", ".join(
        f"{i:,} iterations" for i in sorted({r["iterations"] for r in runs}))  # fmt: skip
    devices = ", ".join(sorted({str(r.get("device", "cpu")) for r in runs})) or "-"
    planned = len(cells) or len(runs)
    text = [f"Schedule `{schedule}`: {trained or '-'}; device {devices}; "
            f"{len(runs)} of {planned} runs finished; generated {date.today().isoformat()}."]
    settings = {c["column"]: c.get("settings") for c in cells}
    if any(settings.values()):  # the columns were run with settings of their own
        text += ["", "Settings given on the command line, by column: " + "; ".join(
            f"{column} " + ("not recorded" if given is None else
                            ", ".join(f"`{s}`" for s in given) or "none")
            for column, given in settings.items()) + "."]  # fmt: skip
    if schedule != "paper":
        text += ["", f"**Not the paper's schedule**: `{schedule}` is ours; the paper column "
                 "comes from the paper's own training (`schedule=paper`)."]  # fmt: skip
    return text


def to_markdown(table: str, lines: list[dict], runs: list[dict], schedule: str,
                cells: list[dict] | None = None) -> str:  # fmt: skip
    cells = cells or []
    data = sorted({r["data"] for r in runs})
    header, body = grid(table, lines)
    out = [
        f"# {table}: {metric(table)[1]}, paper vs ours (`{schedule}`)",
        "",
        *describe(runs, cells, schedule),
        "",
        "Ours: mean ± sd (seeds finished); [progress of the seeds not finished].",
        "",
        f"Paper: {TABLES[table].source}",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in body),
    ]
    narrow = sorted({f"{r['row']} ({r['column']}): width x{r['width']:g}" for r in runs
                     if r.get("width") not in (None, 1.0)})  # fmt: skip
    if narrow:
        out += ["", "Reduced-width models (not the paper's networks):", "",
                *[f"- {n}" for n in narrow]]
    order = TABLES[table].rows
    params = sorted({(r["row"], r["params"]) for r in runs},
                    key=lambda p: order.index(p[0]) if p[0] in order else 0)  # fmt: skip
    if params:
        out += ["", "Parameters: " + ", ".join(f"{row} {fmt_params(n)}" for row, n in params)]
    out += ["", "Data:", "", *[f"- {d}" for d in data], ""]
    return "\n".join(out)


def fmt_params(params: int | None) -> str:
    return "-" if params is None else f"{params:,}"


def to_csv(lines: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["column", "model", "paper", "ours_mean", "ours_sd", "n", "diff", "params", "seeds",
              "unfinished"]  # fmt: skip
    if lines and "paper_accuracy" in lines[0]:
        fields[7:7] = ["paper_accuracy", "ours_accuracy"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(lines)
    return buf.getvalue()


def to_latex(table: str, lines: list[dict], schedule: str) -> str:
    header, body = grid(table, lines)

    def tex(text: str) -> str:
        return (text.replace("±", "$\\pm$").replace("%", "\\%").replace("[", "{[}")
                .replace("]", "{]}"))  # fmt: skip

    out = ["\\begin{tabular}{l" + "lr" * ((len(header) - 1) // 2) + "}", "\\hline",
           " & ".join(tex(h) for h in header) + " \\\\", "\\hline"]  # fmt: skip
    out += [" & ".join(tex(c) for c in row) + " \\\\" for row in body]
    caption = f"% {table}, schedule {schedule}: {metric(table)[1]}"
    out += ["\\hline", "\\end{tabular}", caption, ""]
    return "\n".join(out)


def write_tables(output_dir: str | Path, table: str, schedule: str) -> Path:
    """Write ``<output_dir>/tables/<table>-<schedule>.{md,csv,tex}`` from the column records."""
    runs, cells = collect(output_dir, table, schedule)
    lines = summarise(runs, table, cells)
    if TABLES[table].with_accuracy:
        lines = with_accuracy(lines)
    for suffix, text in [
        ("md", to_markdown(table, lines, runs, schedule, cells)),
        ("csv", to_csv(lines)),
        ("tex", to_latex(table, lines, schedule)),
    ]:
        write_atomic(table_path(output_dir, table, schedule, suffix), text)
    return table_path(output_dir, table, schedule)


def table_lock(output_dir: str | Path, table: str):
    """Hold this while reading runs and writing a column and its table, so that of concurrent
    launches the last to write has seen every finished run."""
    return locked(Path(output_dir) / "tables" / table)
