"""One report of everything reproduced so far: ``outputs/report.md`` (``make report``).

It holds every table written under ``outputs/tables/`` (paper beside ours), where each column's
numbers come from (``provenance``: schedule, seeds, iterations, device, torch, commit, wall
time, read from the runs' metrics kept in ``tables/columns/``), the pose table, and the figures
and animations under ``outputs/figures/``; ``report.html`` beside it is the same, rendered by
Python-Markdown.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ..config import CONF_DIR
from ..files import CorruptFile, read_json, write_atomic
from .paper import TABLES

# Tables in the paper's order; any other table written comes after them.
ORDER = [*TABLES, "pose"]


def provenance(output_dir: str | Path) -> list[dict]:
    """One entry per recorded column (``tables/columns/*.json``): where its numbers come from."""
    found = []
    for path in sorted((Path(output_dir) / "tables" / "columns").glob("*.json")):
        try:
            column = read_json(path)
        except (CorruptFile, OSError, ValueError) as err:
            found.append({"unreadable": f"{path} ({err})"})
            continue
        runs = column["runs"]
        if not runs:
            continue
        devices = sorted({r.get("device", "cpu") for r in runs})  # (co-localisation: the CPU)
        found.append({
            "table": column["table"], "experiment": column["experiment"],
            "schedule": column["schedule"], "column": runs[0]["column"], "runs": len(runs),
            "rows": len({r["row"] for r in runs}),
            "seeds": " ".join(str(s) for s in sorted({r["seed"] for r in runs})),
            "iterations": " / ".join(str(i) for i in sorted({r["iterations"] for r in runs})),
            "devices": ", ".join(devices),
            "torch": ", ".join(sorted({str(r.get("torch", "?")) for r in runs})),
            "commits": ", ".join(sorted({str(r["code"].get("commit")) for r in runs})),
            "wall_h": sum(r["wall_time_s"] for r in runs) / 3600,
            "cpu_short": column["schedule"] != "paper" and "cpu" in devices,
        })  # fmt: skip
    return found


def split_name(path: Path) -> tuple[str, str | None]:
    """``(table, schedule)`` of ``tables/<table>-<schedule>.md``; ``(name, None)`` for a table
    kept once for all schedules (``pose.md``, ``table5_ablation.md``)."""
    table, _, schedule = path.stem.rpartition("-")
    schedules = {p.stem for p in (CONF_DIR / "schedule").glob("*.yaml")}
    return (table, schedule) if table and schedule in schedules else (path.stem, None)


def table_key(path: Path) -> tuple:
    name, schedule = split_name(path)
    return (ORDER.index(name) if name in ORDER else len(ORDER), name, schedule or "")


def table_files(output_dir: Path, schedule: str | None) -> list[Path]:
    """The tables to show: those of ``schedule`` (every schedule's when None), in the paper's
    order, and those kept once for all schedules."""
    found = [p for p in (output_dir / "tables").glob("*.md")
             if schedule is None or split_name(p)[1] in (None, schedule)]  # fmt: skip
    return sorted(found, key=table_key)


def write_report(output_dir: str | Path, schedule: str | None = None) -> Path:
    """Write ``report.md`` (and ``report.html``) from what ``output_dir`` holds now, the tables
    of ``schedule`` only (None: every schedule's); return the Markdown's path."""
    out = Path(output_dir)
    columns = [c for c in provenance(out)
               if schedule is None or c.get("schedule", schedule) == schedule]  # fmt: skip
    unreadable = [c["unreadable"] for c in columns if "unreadable" in c]
    columns = [c for c in columns if "unreadable" not in c]
    lines = [
        "# Spatial Transformer Networks: reproduction report", "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by stn-repro from "
        f"`{out}`" + (f", schedule `{schedule}`" if schedule else ", every schedule")
        + ". The paper's numbers appear only in its \"paper\" columns.", "",
    ]  # fmt: skip
    if unreadable:
        lines += ["**Unreadable column records** (their tables may be incomplete; rerun the "
                  "experiment's command to rewrite them): " + "; ".join(unreadable), ""]
    cpu = [c for c in columns if c["cpu_short"]]
    if cpu:
        named = ", ".join(sorted({f"{c['table']} {c['column']} (`{c['schedule']}`)"
                                  for c in cpu}))  # fmt: skip
        lines += [
            f"**Not the paper's schedule:** {named} were trained on a CPU with a schedule of "
            "ours (`fast` and `smoke` are short: their numbers show the pipeline and the rows' "
            "ordering only; `cpu` is Table 1's recipe for the paper's numbers).", "",
        ]  # fmt: skip
    lines += [
        "## Provenance", "",
        "| Table | Column | Schedule | Rows | Seeds | Iterations | Device | torch | Commit | "
        "Wall time (h) |",
        "|---|---|---|---:|---|---|---|---|---|---:|",
    ]  # fmt: skip
    for c in columns:
        lines.append(
            f"| {c['table']} | {c['column']} | {c['schedule']}{' (CPU)' if c['cpu_short'] else ''}"
            f" | {c['rows']} | {c['seeds']} | {c['iterations']} | {c['devices']} | {c['torch']} "
            f"| {c['commits']} | {c['wall_h']:.2f} |"
        )
    if not columns:
        lines.append("| (no table written yet) | | | | | | | | | |")
    for path in table_files(out, schedule):
        text = path.read_text().strip().split("\n")
        title = text[0].lstrip("# ") if text and text[0].startswith("#") else path.stem
        lines += ["", f"## {title}", "", "\n".join(text[1:]).strip()]
    figures = sorted(p for p in (out / "figures").glob("*") if p.suffix in (".png", ".gif"))
    skipped = not_drawn(out)
    if figures or skipped:
        lines += ["", "## Figures and animations", ""]
        for figure in figures:
            lines += [f"### {figure.stem}", "", f"![{figure.stem}](figures/{figure.name})", ""]
    if skipped:
        lines += ["### Not drawn", "", *(f"- `{name}`: {why}" for name, why in skipped), ""]
    text = "\n".join(lines).rstrip() + "\n"
    path = out / "report.md"
    write_atomic(path, text)
    import markdown

    body = markdown.markdown(text, extensions=["tables", "sane_lists"])
    write_atomic(out / "report.html", '<!doctype html>\n<meta charset="utf-8">\n'
                 f"<title>stn-repro report</title>\n<style>{STYLE}</style>\n{body}\n")  # fmt: skip
    return path


def not_drawn(output_dir: Path) -> list[tuple[str, str]]:
    """The figures ``analyse`` could not draw, each with why (``figures/skipped.json``)."""
    try:
        record = read_json(output_dir / "figures" / "skipped.json")
        return [tuple(item) for item in record["skipped"]]
    except (FileNotFoundError, CorruptFile, KeyError):
        return []


STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; } tbody tr:nth-child(even) { background: #fafafa; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f5f5f5; padding: 0 .2rem; } li { margin: .2rem 0; }
"""
"""report.html's stylesheet: readable tables (borders, numbers aligned right), figures sized to
the page."""
