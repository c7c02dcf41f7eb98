"""The package's layers point down only, and no import cycle exists (read from the source with
ast, so function-local imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stn_repro"
LAYERS = [  # each may import its own layer and those above it in this list
    {"errors", "checks", "files", "config", "signals", "report.paper", "tasks", "terminal", "viz",
     "sweep", "distributed", "speed", "contrast"},  # base: no knowledge of models or data
    {"st"},  # the layer library
    {"data", "models"},  # generators and stored data; the models (never each other)
    {"runs", "lifecycle", "schema", "trained", "report.pose"},  # run records and life, config
    # checks, finished models, pose measures (the training loop evaluates them too)
    {"engine", "coloc", "report", "report.figures", "report.tables", "report.time_to_accuracy",
     "report.document"},
    {"experiment", "report.analysis", "coloc_ablation", "gpu_check"},
    {"cli"},
]  # fmt: skip
TRAINING = {"engine", "experiment", "coloc", "lifecycle", "cli"}
"""What trains: the report package (``stn_repro.report``) reads finished runs without it."""


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """Module (``engine``, ``data.feeds``) -> the package modules it imports."""
    mods, edges = modules(), {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - node.level + 1] if node.level > 1 else base
                    module = [node.module] if node.module else []
                    target = ".".join([*filter(None, base), *module])
                elif (node.module or "").startswith("stn_repro"):
                    target = node.module.removeprefix("stn_repro").lstrip(".")
                else:
                    continue
                for candidate in (target, *(f"{target}.{a.name}".lstrip(".") for a in node.names)):
                    if candidate in mods and candidate != name:
                        found.add(candidate)
        edges[name] = found
    return edges


def layer(module: str) -> int:
    """The layer of ``module``, or of its package (``data.feeds``: ``data``'s)."""
    parts = module.split(".")
    names = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    return next(i for name in names for i, group in enumerate(LAYERS) if name in group)


def test_every_module_has_a_layer():
    assert all(layer(m) is not None for m in modules() if m)


def test_no_import_points_up_and_data_and_models_stay_apart():
    wrong = [f"{m} -> {d}" for m, deps in imports().items() if m for d in deps if d
             and (layer(d) > layer(m) or {m.split(".")[0], d.split(".")[0]} == {"data", "models"})]
    assert not wrong, wrong


def test_no_import_cycle():
    edges, cycles = imports(), []

    def visit(node: str, path: list[str]) -> None:
        for dep in edges.get(node, ()):
            if dep in path:
                cycles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif len(path) < 30:
                visit(dep, [*path, dep])

    for start in edges:
        visit(start, [start])
    assert not cycles, sorted(set(cycles))[:5]


def test_reading_finished_runs_never_imports_the_training_loop():
    edges = imports()

    def reach(module: str, seen: set[str]) -> set[str]:
        for dep in edges.get(module, ()):
            if dep not in seen:
                seen.add(dep)
                reach(dep, seen)
        return seen

    report = [module for module in edges if module.split(".")[0] == "report"]
    assert len(report) >= 7, report
    for module in report:
        assert not TRAINING & reach(module, set()), module


def test_whatever_composes_a_config_has_the_schemas_registered():
    """Hydra composes with the schemas in its ConfigStore only once ``stn_repro.schema`` is
    imported: the package and its scripts initialise Hydra through ``schema.hydra_initialised``
    (the CLI through ``hydra.main`` in cli.py, which imports the schema)."""
    root = PACKAGE.parent
    direct = [str(p.relative_to(root)) for p in [*PACKAGE.rglob("*.py"), *root.glob("scripts/*.py")]
              if "initialize_config_dir(" in p.read_text() and p.name != "schema.py"]
    assert not direct, direct
