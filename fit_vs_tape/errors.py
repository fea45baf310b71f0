"""How the application ends a run that cannot go on: each kind of ending its own exit code.

The teaching code (shared/, high_level/, low_level/) raises ordinary Python exceptions; the
application turns the ones that are the user's to fix into a UserError, which the command line
prints as one line, ``fit-vs-tape: error: ...``, with no traceback.

Exit codes: 0 done; 1 a non-finite loss stopped training, or a file could not be written (a full
disk, a lost permission, a removed directory: WriteFailed); 2 a mistake in the command (UserError);
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


class RunInterrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM stopped a training run cleanly; the message says how to resume
    it. ``code``: 130 for SIGINT, 143 for SIGTERM."""

    def __init__(self, message: str, code: int = 130) -> None:
        super().__init__(message)
        self.code = code


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training (loading, evaluating, writing): ends the run like Ctrl-C does."""


def stopped_by(e: KeyboardInterrupt) -> tuple[str, int]:
    """How a run stopped outside training says it, and its exit code: ("terminated", 143) for
    SIGTERM, ("interrupted", 130) for Ctrl-C."""
    if isinstance(e, Terminated):
        return "terminated", exit_code(signal.SIGTERM)
    return "interrupted", exit_code(signal.SIGINT)


def resume_hint(command: str, out) -> str:
    """The words that end every stopped run's message: how to carry it on."""
    return f"resume with: {PROG} {command} --resume {out}"


def exit_code(signum: int) -> int:
    """The exit code of a run stopped by signal ``signum``: 128 + its number (130, 143)."""
    return 128 + int(signum)


def describe_os_error(e: OSError) -> str:
    """``PATH: cause`` for an OSError, in one line (``/x/run/results.json: no space left on
    device``)."""
    cause = (e.strerror or str(e) or type(e).__name__).strip().splitlines()[0]
    cause = cause[:1].lower() + cause[1:]
    return f"{e.filename}: {cause}" if e.filename else cause


def _terminate(signum, frame) -> None:
    raise Terminated()


def report_errors(command: Callable[..., int], *args) -> int:
    """Call ``command(*args)`` and return its exit code; a UserError, a failed write or an
    interrupt is printed as one line and becomes exit code 2, 1, or 130 / 143."""
    previous = signal.signal(signal.SIGTERM, _terminate)  # training installs its own, gentler one
    try:
        return command(*args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except WriteFailed as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # outside training (loading, evaluating): nothing half-written
        how, code = stopped_by(e)
        print(f"{PROG}: {how}", file=sys.stderr)
        return code
    except RunInterrupted as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.code
    finally:
        signal.signal(signal.SIGTERM, previous)
