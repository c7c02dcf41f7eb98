"""What the terminal showed, kept: ``teed(path)`` copies this process's stdout and stderr into a
log file too (appended, so a resumed run's log continues; progress-bar redraws, the writes
holding a carriage return, are left out of the file)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path


class Tee:
    """A text stream that writes to ``stream`` and to the open file ``log``."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.stream.write(text)
        if "\r" not in text:
            self.log.write(text)
            self.log.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the terminal's
        return getattr(self.stream, name)


@contextmanager
def teed(path: str | Path):
    """Within this block, stdout and stderr also go to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Tee(out, log), Tee(err, log)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = out, err
