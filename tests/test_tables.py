"""Tables: one file per schedule, in the paper's layout (models x columns, ours beside the
paper), every planned cell present (unfinished ones with their progress), and what the numbers
are (schedule, iterations, device, a caveat when the schedule is not the paper's)."""

from __future__ import annotations

from omegaconf import OmegaConf

from stn_repro.report.tables import table_path, write_column, write_tables


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


def test_a_table_names_each_columns_command_line_settings(tmp_path):
    # Two columns of one table run with different settings: the table says which is which.
    from stn_repro.experiment import settings_of

    given = ["experiment=table5_coloc_tc", "schedule=fast", "coloc.starts=3", "jobs=2",
             "speed.threads=1", "row=1", "seed=2", "model/transform=affine"]  # fmt: skip
    assert settings_of(given) == ["coloc.starts=3", "model/transform=affine"]
    for column, settings in (("T", []), ("TC", settings_of(given))):
        exp = OmegaConf.create({"table": "table5", "name": f"table5_coloc_{column.lower()}",
                                "column": column})  # fmt: skip
        cells = [{"row": "0", "seed": 1, "iterations": 1500, "batch": 128, "length": 3000,
                  "iteration": 1500}]  # fmt: skip
        write_column(tmp_path, exp, "fast", [], cells, settings)
    text = write_tables(tmp_path, "table5", "fast").read_text()
    assert ("Settings given on the command line, by column: T none; TC `coloc.starts=3`, "
            "`model/transform=affine`.") in text  # fmt: skip
    assert "seed 1 at 50%" in text  # a co-localisation's progress over all its starts


def test_every_table_spec_is_consistent_and_filled_by_experiments_that_compose(compose_cfg):
    # The registry owns each table's facts; every registered table has experiments (one per
    # column at most), each composing on `smoke` with rows the spec knows.
    from stn_repro.config import CONF_DIR
    from stn_repro.report.paper import TABLES

    filled: dict[str, set[str]] = {name: set() for name in TABLES}
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        exp = compose_cfg(f"experiment={path.stem}").experiment
        filled[exp.table].add(exp.column)
        assert {row.name for row in exp.rows} <= set(TABLES[exp.table].rows)
    for name, spec in TABLES.items():
        assert filled[name], f"no experiment fills table {name}"
        assert filled[name] <= set(spec.columns)
        assert {cell for cell in spec.paper} <= {(r, c) for r in spec.rows for c in spec.columns}
        assert set(spec.reference_rows) <= set(spec.rows)


def test_an_experiment_of_an_unknown_table_or_row_stops_in_one_line(compose_cfg):
    import pytest

    from stn_repro.errors import UserError

    with pytest.raises(UserError, match="experiment.table.*table9"):
        compose_cfg("experiment=table1_rts", "experiment.table=table9")
    with pytest.raises(UserError, match="'ST-FCN Foo' not among table table1's rows"):
        compose_cfg("experiment=table1_rts", "experiment.rows.0.name=ST-FCN Foo")
