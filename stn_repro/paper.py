"""The paper's published numbers, in one place, each with its table, row, column and source.

Values are % test error. ``SOURCES`` says where each table's numbers were read from.
"""

from __future__ import annotations

SOURCES = {
    "table1": (
        "Jaderberg et al., 'Spatial Transformer Networks', NIPS 2015, Table 1 (distorted MNIST, "
        "% error; left: R, RTS, P, E; right: TC). Transcribed by the stn-repro team; no copy of "
        "the paper was at hand to re-check the transcription in the session that entered it."
    ),
}

TABLE1_ROWS = [
    "FCN", "CNN",
    "ST-FCN Aff", "ST-FCN Proj", "ST-FCN TPS",
    "ST-CNN Aff", "ST-CNN Proj", "ST-CNN TPS",
]  # fmt: skip
TABLE1_COLUMNS = ["R", "RTS", "P", "E", "TC"]

# Table 1, left part: % error on R, RTS, P, E.
TABLE1_LEFT = {
    "FCN": (2.1, 5.2, 3.1, 3.2),
    "CNN": (1.2, 0.8, 1.5, 1.4),
    "ST-FCN Aff": (1.2, 0.8, 1.5, 2.7),
    "ST-FCN Proj": (1.3, 0.9, 1.4, 2.6),
    "ST-FCN TPS": (1.1, 0.8, 1.4, 2.4),
    "ST-CNN Aff": (0.7, 0.5, 0.8, 1.2),
    "ST-CNN Proj": (0.8, 0.6, 0.8, 1.3),
    "ST-CNN TPS": (0.7, 0.5, 0.8, 1.1),
}
# Table 1, right part: % error on TC; the ST models there use the affine transformer.
TABLE1_TC = {"FCN": 13.2, "CNN": 3.5, "ST-FCN Aff": 2.0, "ST-CNN Aff": 1.7}

PAPER: dict[str, dict[tuple[str, str], float]] = {
    "table1": {
        **{
            (row, column): value
            for row, values in TABLE1_LEFT.items()
            for column, value in zip(("R", "RTS", "P", "E"), values, strict=True)
        },
        **{(row, "TC"): value for row, value in TABLE1_TC.items()},
    },
}


def paper_value(table: str, row: str, column: str) -> float | None:
    """The paper's number for a cell, or None where the paper has none."""
    return PAPER.get(table, {}).get((row, column))
