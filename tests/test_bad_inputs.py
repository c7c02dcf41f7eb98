"""Every bad input of tests/bad_inputs.py, through the real command line (in this process):
one line on stderr and exit 2 with no run recorded, or a repaired file and a finished run."""

from __future__ import annotations

import resource
from contextlib import contextmanager

import pytest
from bad_inputs import CASES, base_args


def test_the_list_is_long_enough():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@contextmanager
def file_limit(size: int | None):
    """The file-size limit (``ulimit -f``) at ``size`` bytes in this process, then restored
    (Python ignores SIGXFSZ: a write past it raises OSError EFBIG)."""
    if size is None:
        yield
        return
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, invoke, tmp_path, monkeypatch):
    if case.setup is not None:
        case.setup(tmp_path, invoke)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    runs = tmp_path / "outputs" / "runs"
    before = set(runs.rglob("metrics.json")) if runs.exists() else set()
    args = [a.format(tmp=tmp_path) for a in case.args]
    with file_limit(case.file_limit):
        code, out, err = invoke([*base_args(tmp_path), *args])
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    if case.expect == "error":
        assert code == 2, (out, err)
        assert len(lines) == 1 and lines[0].startswith("stn-repro: error: "), err
        assert case.message in lines[0]
        after = set(runs.rglob("metrics.json")) if runs.exists() else set()
        assert after == before, "a run was recorded"
    else:
        assert code == 0, err
        assert all(line.startswith("stn-repro: warning: ") for line in lines), err
        assert case.message in err
        assert "test error" in out
