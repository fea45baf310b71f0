"""How the application ends a run that cannot go on: two exception types, each its own exit code.

The teaching code (shared/, high_level/, low_level/) raises ordinary Python exceptions; the
application turns the ones that are the user's to fix into a UserError, which the command line
prints as one line, ``fit-vs-tape: error: ...``, with no traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

PROG = "fit-vs-tape"


class UserError(Exception):
    """A mistake the user can fix (bad option, missing file, damaged data): exit code 2.

    The message must name the file, option or value that is wrong.
    """


class RunInterrupted(Exception):
    """Ctrl-C stopped a training run cleanly; the message says how to resume it (exit code 130)."""


def report_errors(command: Callable[..., int], *args) -> int:
    """Call ``command(*args)`` and return its exit code; a UserError or an interrupt is printed
    as one line and becomes exit code 2 or 130."""
    try:
        return command(*args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside training (loading, evaluating): nothing half-written
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except RunInterrupted as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 130
