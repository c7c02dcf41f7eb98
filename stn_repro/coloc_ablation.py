"""Table 5 ablation: what each co-localisation ingredient beyond the paper's text does.

Rows: the loss as written (``coloc=as_written``), as written plus each ingredient alone, the
full recipe (``coloc=recipe``), and the recipe less each of its ingredients (its keys set back
to ``conf/coloc/as_written.yaml``'s values). Columns: the mean % of digits localised (IoU >
0.5) on T and TC over the chosen classes and seeds. ``run_ablation`` optimises (or reuses) every
variant x column x class x seed (``runs/table5_ablation/<schedule>/<variant>-<column>-<class>/
<config>/seed<k>``);
``write_ablation`` writes ``tables/table5_ablation.{md,csv}``.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from omegaconf import OmegaConf

from .config import CONF_DIR, run_dir
from .files import write_atomic

AS_WRITTEN = "as written"
FULL = "full recipe"
VARIANTS: dict[str, list[str]] = {
    AS_WRITTEN: ["coloc=as_written"],
    "+ stop-gradient on the partner crop": ["coloc=as_written", "coloc.stop_partner_gradient=true"],
    "+ window inside the canvas, start at scale 0.6": [
        "coloc=as_written", "coloc.inside_canvas=true", "coloc.initial_scale=0.6"],
    "+ that, never smaller than the random crops": [
        "coloc=as_written", "coloc.inside_canvas=true", "coloc.initial_scale=0.6",
        "coloc.min_scale=0.333"],
    "+ margin 4000 (the hinge stays active)": ["coloc=as_written", "coloc.margin=4000"],
    "+ all pairs of the step's images": ["coloc=as_written", "coloc.pairing=all"],
    "+ Adam instead of SGD": ["coloc=as_written", "coloc.optimizer=adam"],
    "+ lr 2e-3 with cosine decay": ["coloc=as_written", "coloc.lr=0.002",
                                    "coloc.lr_decay=cosine"],
    "+ leaky ReLUs in the localisation net": ["coloc=as_written",
                                              "coloc.leaky_localisation=true"],
    "+ gradient through a blurred copy (sigma 3)": ["coloc=as_written", "coloc.blur_sigma=3"],
    "+ 4 random negatives per image": ["coloc=as_written", "coloc.negatives=4"],
    "+ negatives at the window's scale": ["coloc=as_written", "coloc.negative_scale=window"],
    "+ negatives at random scales": ["coloc=as_written", "coloc.negative_scale=random"],
    "+ unit-length features": ["coloc=as_written", "coloc.normalise_features=true"],
    FULL: ["coloc=recipe"],
}  # fmt: skip
RECIPE_INGREDIENTS: dict[str, list[str]] = {
    "the stop-gradient": ["stop_partner_gradient"],
    "the window inside the canvas (and its 0.6 start)": ["inside_canvas", "initial_scale",
                                                          "min_scale"],
    "the floor at the random crops' size": ["min_scale"],
    "margin 4000 (margin 1)": ["margin"],
    "all pairs (random pairs)": ["pairing"],
    "Adam (SGD)": ["optimizer"],
    "lr 2e-3 with cosine decay (lr 1e-3, constant)": ["lr", "lr_decay"],
    "leaky ReLUs": ["leaky_localisation"],
}  # fmt: skip
"""The ingredients conf/coloc/recipe.yaml adds to the text, by the ``coloc`` keys each sets."""


def recipe_less_variants() -> dict[str, list[str]]:
    """"recipe less <ingredient>" -> overrides: the recipe with that ingredient's keys set back
    to the paper's text (as_written.yaml, read once)."""
    text = OmegaConf.load(CONF_DIR / "coloc" / "as_written.yaml")
    return {f"recipe less {name}": ["coloc=recipe", *(f"coloc.{key}={text[key]}" for key in keys)]
            for name, keys in RECIPE_INGREDIENTS.items()}  # fmt: skip


VARIANTS.update(recipe_less_variants())
"""Ablation rows: name -> overrides on top of the Table 5 experiment of the column."""
COLUMNS = {"T": "table5_coloc_t", "TC": "table5_coloc_tc"}


def run_ablation(overrides: list[str], variants: list[str], columns: list[str],
                 digits: list[int], seeds: list[int]) -> list[dict]:  # fmt: skip
    """Optimise (or reuse, when finished) each variant x column x digit x seed; return one
    result per run: variant, column, digit, seed, localised_pct, mean_iou. Hydra must be
    initialised (``schema.hydra_initialised``). ``speed.threads`` is honoured as by
    ``stn-repro`` (the thread count changes the sums' order, so a run's result with it)."""
    from .coloc import colocalise_run
    from .experiment import compose_run, train_encoder
    from .files import locked
    from .speed import set_threads

    encoders: dict[str, object] = {}
    results = []
    for variant in variants:
        for column in columns:
            base = [*overrides, f"experiment={COLUMNS[column]}"]
            for digit in digits:
                row = OmegaConf.create({"name": f"{variant} {column} {digit}",
                                        "overrides": [*VARIANTS[variant], f"coloc.digit={digit}"]})
                for seed in seeds:
                    cfg = compose_run(base, row, seed)  # with the experiment's per_schedule
                    set_threads(cfg.speed)
                    key = str(cfg.experiment.encoder)
                    if key not in encoders:
                        encoders[key] = train_encoder(cfg, base).head
                    where = run_dir(cfg, "table5_ablation", row.name)
                    with locked(where):
                        metrics = colocalise_run(cfg, where, encoders[key])
                    print(f"[ablation] {variant} | {column} | {digit} | seed {seed}: "
                          f"{metrics['localised_pct']:.0f}% localised")  # fmt: skip
                    results.append({"variant": variant, "column": column, "digit": digit,
                                    "seed": seed, "localised_pct": metrics["localised_pct"],
                                    "mean_iou": metrics["mean_iou"]})  # fmt: skip
    return results


def write_ablation(output_dir: str | Path, results: list[dict], schedule: str) -> Path:
    """``tables/table5_ablation.{md,csv}``: per variant (in the order first met) and column,
    the mean (and sd) % localised over the classes x seeds, and the classes used."""
    variants = list(dict.fromkeys(r["variant"] for r in results))
    columns = list(dict.fromkeys(r["column"] for r in results))
    cells = {}
    for v in variants:
        for c in columns:
            values = [r["localised_pct"] for r in results if (r["variant"], r["column"]) == (v, c)]
            cells[v, c] = values
    digits = sorted({r["digit"] for r in results})
    seeds = sorted({r["seed"] for r in results})

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        sd = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.1f}{sd}"

    lines = [
        "# Table 5 ablation: % of digits localised (IoU > 0.5)", "",
        f"Schedule `{schedule}`; mean ± sd over classes {digits} x seeds {seeds} "
        "(one optimisation each). Rows: the loss as the paper writes it, that plus one "
        "ingredient, the full recipe (`conf/coloc/recipe.yaml`), and the recipe less one "
        "ingredient (its keys back at the text's values); "
        "docs/reproduction-notes.md says why each ingredient exists.", "",
        "| Variant | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]  # fmt: skip
    lines += [f"| {v} | " + " | ".join(cell(cells[v, c]) for c in columns) + " |"
              for v in variants]  # fmt: skip
    out = Path(output_dir) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["variant", "column", "digit", "seed", "localised_pct",
                                  "mean_iou"], lineterminator="\n")  # fmt: skip
    writer.writeheader()
    writer.writerows(results)
    write_atomic(out / "table5_ablation.csv", buf.getvalue())
    path = out / "table5_ablation.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path
