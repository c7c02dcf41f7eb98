"""Stop signals: SIGINT (Ctrl-C), SIGTERM and SIGUSR1 (SLURM's pre-emption warning) end a run
cleanly, and the next launch of the same command resumes it.

``install()`` (the CLI calls it) makes these signals raise ``Interrupted``. Inside a training
loop run under ``deferred()`` they only raise a flag: the loop finishes its step, saves a
checkpoint (``stop.requested``), and ``stop.check()`` then raises ``Interrupted``.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class Interrupted(BaseException):
    """A stop signal arrived. A BaseException, like KeyboardInterrupt, so that nothing (Hydra's
    multirun included) mistakes it for one failed job and carries on."""

    def __init__(self, signum: int, where: str = ""):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}{where}")


class Stop:
    def __init__(self) -> None:
        self.deferring = False
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Stop as if ``signum`` had arrived (another process training this run got a signal)."""
        if self.signum is None:
            self.signum = signum

    def check(self, where: str) -> None:
        """Raise ``Interrupted`` if a stop signal arrived (call after saving a checkpoint)."""
        if self.signum is not None:
            raise Interrupted(self.signum, where)


STOP = Stop()


def handler(signum: int, frame) -> None:
    if STOP.deferring:
        STOP.signum = signum
    else:
        raise Interrupted(signum)


def install() -> None:
    """Route the stop signals to ``handler`` (main thread only)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)


@contextmanager
def held_from_children():
    """Block the stop signals in this thread while it forks (DataLoader workers): a child starts
    with them blocked until it ignores them (``leave_to_parent``), so a signal sent to the whole
    process group in between cannot kill it (torch's worker SIGTERM handler, installed before
    ``worker_init_fn`` runs, exits on one). This process still gets the signal: another of its
    threads takes it, or it arrives when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def leave_to_parent(_worker_id: int = 0) -> None:
    """In a child forked under ``held_from_children`` (a DataLoader ``worker_init_fn``): ignore
    the stop signals (dropping any already pending) and unblock them; the parent stops its
    children itself."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextmanager
def deferred():
    """Within this block a stop signal only sets ``STOP.requested``."""
    STOP.deferring, STOP.signum = True, None
    try:
        yield STOP
    finally:
        STOP.deferring = False
