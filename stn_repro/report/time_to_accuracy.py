"""Time to accuracy: each row of a table column, its watched error (validation digits when the
run holds some out, else test) against training minutes, beside the paper's number.

Reads the curve every run records (``metrics.json``'s ``curve``, or an unfinished run's
checkpoint), one run per row: the run directory the caller names for it (the one the row's
composed config trains in: ``experiment.row_run_dirs``). Draws one figure per column (log error
axis) and a Markdown table of the minutes each row took to reach its paper number.

A curve record (JSON, written beside the figure) keeps the curves drawn, each with its run's
identity (``<experiment>/<schedule>/<row>/<config hash>/seed<k>``), so a column whose rows
trained on different machines is drawn whole: a row with no run here is taken from the record
when the record holds the run of the same config, never one of another config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..files import CorruptFile, read_json, write_json
from ..runs import read_checkpoint
from .paper import paper_value


@dataclass
class RowCurve:
    row: str
    paper: float | None
    split: str  # the split the curve follows: val or test
    points: list[dict]  # {"iteration", "seconds", "images", "error"}
    finished: bool
    run: str = ""  # the run's identity: <experiment>/<schedule>/<row>/<config hash>/seed<k>
    recorded: bool = False  # taken from a curve record: the run is not on this machine

    def minutes_to_paper(self) -> float | None:
        """Training minutes to the first point at or below the paper's number (None: never)."""
        if self.paper is None:
            return None
        hit = next((p for p in self.points if p["error"] <= self.paper), None)
        return None if hit is None else hit["seconds"] / 60


def read_curve(seed_dir: Path) -> tuple[list[dict], str, bool] | None:
    """``(curve, split, finished)`` of a run directory, from its metrics or its checkpoint."""
    try:
        metrics = read_json(seed_dir / "metrics.json")
        return metrics.get("curve", []), metrics.get("curve_split", "test"), True
    except (CorruptFile, FileNotFoundError):
        pass
    path = seed_dir / "checkpoint.pt"
    if not path.exists():
        return None
    try:
        ckpt = read_checkpoint(path)
        held = OmegaConf.load(seed_dir / "config.yaml").dataset.get("validation")
    except (CorruptFile, RuntimeError, EOFError, OSError):
        return None
    return ckpt.get("curve", []), "val" if held else "test", False


def run_identity(seed_dir: Path) -> str:
    """``<experiment>/<schedule>/<row slug>/<config hash>/seed<k>`` (the last five parts of the
    run directory ``config.run_dir`` names): the same on every machine."""
    return "/".join(seed_dir.parts[-5:])


def column_curves(exp: DictConfig, seed_dirs: dict[str, Path],
                  record: Path | None = None) -> list[RowCurve]:  # fmt: skip
    """A :class:`RowCurve` per row of ``exp`` whose run directory (``seed_dirs[row name]``)
    has recorded a curve, else whose run the curve ``record`` holds, in the table's row
    order."""
    kept = {c.run: c for c in read_record(record)} if record else {}
    curves = []
    for row in exp.rows:
        if row.name not in seed_dirs:
            continue
        run = run_identity(seed_dirs[row.name])
        found = read_curve(seed_dirs[row.name])
        if found and found[0]:
            points, split, finished = found
            paper = paper_value(exp.table, row.name, exp.column)
            curves.append(RowCurve(row.name, paper, split, points, finished, run))
        elif run in kept:
            curves.append(kept[run])
    return curves


def write_record(curves: list[RowCurve], path: Path) -> Path:
    """The curves as JSON (atomic, checksummed), every one marked as recorded, beside the
    record's curves of other runs (other seeds, other configs), which are kept."""
    drawn = {c.run for c in curves}
    kept = [c for c in read_record(path) if c.run not in drawn]
    write_json(path, {"curves": [asdict(c) | {"recorded": True} for c in [*kept, *curves]]})
    return path


def read_record(path: Path) -> list[RowCurve]:
    """The curves of a record ``write_record`` wrote; none when there is no record yet."""
    if not path.exists():
        return []
    try:
        return [RowCurve(**c) for c in read_json(path)["curves"]]
    except (CorruptFile, KeyError, TypeError) as err:
        raise CorruptFile(f"curve record {path}: {err}") from None


def draw(curves: list[RowCurve], title: str, path: Path) -> Path:
    """One figure: error (log) against training minutes, a line per row, its paper number
    dashed in the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for k, curve in enumerate(curves):
        colour = f"C{k % 10}"
        minutes = [p["seconds"] / 60 for p in curve.points]
        errors = [max(p["error"], 1e-2) for p in curve.points]
        label = curve.row + ("" if curve.finished else " (running)")
        ax.plot(minutes, errors, "-o", color=colour, markersize=3, label=label)
        if curve.paper is not None:
            ax.axhline(curve.paper, color=colour, linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("training minutes")
    splits = sorted({c.split for c in curves})
    ax.set_ylabel(f"% error ({', '.join(splits)}); dashed: the paper's test error")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def summary(curves: list[RowCurve]) -> str:
    """A Markdown table: each row's last error, its paper number, minutes to reach it."""
    lines = ["| Row | Paper | Ours (last point) | Split | Iterations | Minutes | "
             "Minutes to paper |", "|---|---:|---:|---|---:|---:|---:|"]  # fmt: skip
    for c in curves:
        last, reach = c.points[-1], c.minutes_to_paper()
        paper = "-" if c.paper is None else f"{c.paper:.1f}"
        lines.append(
            f"| {c.row} | {paper} | {last['error']:.2f} | {c.split} | {last['iteration']:,} | "
            f"{last['seconds'] / 60:.1f} | {'-' if reach is None else f'{reach:.1f}'} |"
        )
    return "\n".join(lines)
