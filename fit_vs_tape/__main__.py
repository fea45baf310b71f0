import sys

from fit_vs_tape.cli import main

sys.exit(main())
