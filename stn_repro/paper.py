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

PAPER: dict[str, dict[tuple[str, str], float]] = {
    "table1": {
        # (row, column): % error
        **dict(zip([("FCN", c) for c in "R RTS P E".split()], [2.1, 5.2, 3.1, 3.2])),
        **dict(zip([("CNN", c) for c in "R RTS P E".split()], [1.2, 0.8, 1.5, 1.4])),
        **dict(zip([("ST-FCN Aff", c) for c in "R RTS P E".split()], [1.2, 0.8, 1.5, 2.7])),
        **dict(zip([("ST-FCN Proj", c) for c in "R RTS P E".split()], [1.3, 0.9, 1.4, 2.6])),
        **dict(zip([("ST-FCN TPS", c) for c in "R RTS P E".split()], [1.1, 0.8, 1.4, 2.4])),
        **dict(zip([("ST-CNN Aff", c) for c in "R RTS P E".split()], [0.7, 0.5, 0.8, 1.2])),
        **dict(zip([("ST-CNN Proj", c) for c in "R RTS P E".split()], [0.8, 0.6, 0.8, 1.3])),
        **dict(zip([("ST-CNN TPS", c) for c in "R RTS P E".split()], [0.7, 0.5, 0.8, 1.1])),
        # TC (right part of Table 1): one ST row each, the affine transformer.
        ("FCN", "TC"): 13.2,
        ("CNN", "TC"): 3.5,
        ("ST-FCN Aff", "TC"): 2.0,
        ("ST-CNN Aff", "TC"): 1.7,
    },
}


def paper_value(table: str, row: str, column: str) -> float | None:
    """The paper's number for a cell, or None where the paper has none."""
    return PAPER.get(table, {}).get((row, column))
