"""The one exception type for user mistakes."""


class UserError(Exception):
    """A mistake the user can fix (bad option, missing file, damaged data).

    The CLI prints its message on one line and exits with code 2, without a traceback.
    The message must name the file, option or value that is wrong.
    """


class RunInterrupted(Exception):
    """Ctrl-C stopped a training run cleanly; the message says how to resume it (exit code 130)."""
