"""python -m fit_vs_tape: the fit-vs-tape command (fit_vs_tape/cli.py)."""

import sys

from fit_vs_tape.cli import main

sys.exit(main())
