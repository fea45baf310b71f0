"""How the application ends a run that cannot go on: each kind of ending its own exit code.

The teaching code (shared/, high_level/, low_level/) raises ordinary Python exceptions; the
application turns the ones that are the user's to fix into a UserError, which the command line
prints as one line, ``fit-vs-tape: error: ...``, with no traceback.

Exit codes: 0 done; 1 a non-finite loss stopped training, `compare` or `check` found a side that
differs from fit(), or a file could not be written (a full disk, a lost permission, a removed
directory: WriteFailed); 2 a mistake in the command (UserError), an exception raised in the code
a user gave `check` included;
130 Ctrl-C (SIGINT) and 143 SIGTERM (128 + the signal's number, as a shell reports them).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

PROG = "fit-vs-tape"


class UserError(Exception):
    """A mistake the user can fix (bad option, missing file, damaged data): exit code 2.

    The message must name the file, option or value that is wrong.
    """


class WriteFailed(Exception):
    """A file of the run could not be written (no space left, no permission, the directory
    gone): exit code 1. The message names the path and the cause, and how to carry on."""


class RunStopped(KeyboardInterrupt):
    """The one way a run stops on a signal: Ctrl-C (SIGINT) or SIGTERM (what a batch scheduler,
    ``timeout`` or a preempted machine sends). Raised between two training steps
    (callbacks.GracefulInterrupt, with ``where``: "in epoch 2, step 5"), by the SIGTERM handler
    outside training, and again by the application with ``hint``, how to resume. A
    KeyboardInterrupt, as Ctrl-C's own is, so that no ``except Exception`` on the way swallows it.
    ``code``: the exit code, 130 for SIGINT and 143 for SIGTERM (128 + the signal's number, as a
    shell reports them)."""

    def __init__(self, signum: int = signal.SIGINT, where: str = "", hint: str = "") -> None:
        self.signum, self.where, self.hint = int(signum), where, hint
        how = "interrupted" if self.signum == signal.SIGINT else "terminated (SIGTERM)"
        super().__init__("; ".join(part for part in (f"{how} {where}".strip(), hint) if part))

    @property
    def code(self) -> int:
        """The exit code: 128 + the signal's number."""
        return 128 + self.signum

    @classmethod
    def of(cls, stop: KeyboardInterrupt) -> RunStopped:
        """``stop`` as a RunStopped (Python's own KeyboardInterrupt is a Ctrl-C)."""
        return stop if isinstance(stop, RunStopped) else cls(signal.SIGINT)

    def with_hint(self, hint: str) -> RunStopped:
        """The same stop, saying ``hint`` (how to resume) after where it happened."""
        return RunStopped(self.signum, self.where, hint)


def resume_hint(command: str, out) -> str:
    """The words that end every stopped run's message: how to carry it on."""
    return f"resume with: {PROG} {command} --resume {out}"


def describe_os_error(e: OSError) -> str:
    """``PATH: cause`` for an OSError, in one line (``/x/run/results.json: no space left on
    device``)."""
    cause = (e.strerror or str(e) or type(e).__name__).strip().splitlines()[0]
    cause = cause[:1].lower() + cause[1:]
    return f"{e.filename}: {cause}" if e.filename else cause


def _terminate(signum, frame) -> None:
    raise RunStopped(signum)


def report_errors(command: Callable[..., int], *args) -> int:
    """Call ``command(*args)`` and return its exit code; a UserError, a failed write or a stop
    (RunStopped, or Python's own Ctrl-C) is printed as one line and becomes exit code 2, 1, or
    130 / 143."""
    previous = signal.signal(signal.SIGTERM, _terminate)  # training installs its own, gentler one
    try:
        return command(*args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except WriteFailed as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: in training, or outside it (loading,
        stop = RunStopped.of(e)     # evaluating), where nothing is half-written either
        print(f"{PROG}: {stop}", file=sys.stderr)
        return stop.code
    finally:
        signal.signal(signal.SIGTERM, previous)
