"""Tables: one file per schedule, in the paper's layout (models x columns, ours beside the
paper), every planned cell present (unfinished ones with their progress), and what the numbers
are (schedule, iterations, device, a caveat when the schedule is not the paper's)."""

from __future__ import annotations

from omegaconf import OmegaConf

from stn_repro.tables import table_path, write_column, write_tables


def run(row: str, column: str, seed: int, error: float) -> dict:
    return {"row": row, "column": column, "seed": seed, "test_error": error, "params": 400_000,
            "iterations": 9000, "device": "cpu", "data": "mnist -> rts", "width": None}


def test_a_table_per_schedule_in_the_papers_layout_with_progress(tmp_path):
    exp = OmegaConf.create({"table": "table1", "name": "table1_rts", "column": "RTS"})
    cells = [{"row": "FCN", "seed": s, "iterations": 100000, "batch": 128,
              "iteration": it} for s, it in [(1, 100000), (2, 100000), (3, 40000)]]
    cells += [{"row": "CNN", "seed": s, "iterations": 10000, "batch": 128, "iteration": 0}
              for s in (1, 2, 3)]  # fmt: skip
    runs = [run("FCN", "RTS", 1, 4.5), run("FCN", "RTS", 2, 4.7)]
    write_column(tmp_path, exp, "cpu", runs, cells)
    write_column(tmp_path, exp, "paper", [run("FCN", "RTS", 1, 5.37)],
                 [{"row": "FCN", "seed": 1, "iterations": 150000, "batch": 256,
                   "iteration": 150000}])  # fmt: skip
    cpu = write_tables(tmp_path, "table1", "cpu")
    paper = write_tables(tmp_path, "table1", "paper")
    assert cpu == table_path(tmp_path, "table1", "cpu") and cpu.name == "table1-cpu.md"
    text = cpu.read_text()
    assert "| Model | RTS: ours | RTS: paper |" in text  # the paper's columns, ours beside
    assert "| FCN | 4.60 ± 0.14 (2) [seed 3 at 40%] | 5.2 |" in text
    assert "| CNN | seed 1 not started, seed 2 not started, seed 3 not started | 0.8 |" in text
    assert "Schedule `cpu`: 10,000 iterations of 128, 100,000 iterations of 128" in text
    assert "device cpu; 2 of 6 runs finished" in text
    assert "**Not the paper's schedule**" in text
    assert "| FCN | 5.37 (1) | 5.2 |" in paper.read_text()  # the other schedule, untouched
    assert "Not the paper's schedule" not in paper.read_text()
    tex = table_path(tmp_path, "table1", "cpu", "tex").read_text()
    assert "FCN & 4.60 $\\pm$ 0.14 (2) {[}seed 3 at 40\\%{]} & 5.2 \\\\" in tex
