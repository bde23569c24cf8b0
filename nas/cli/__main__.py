"""`python -m nas.cli`: the `spinenas` command line."""

import sys

from nas.cli import main

sys.exit(main())
