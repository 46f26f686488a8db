"""`python -m rprloc_core.cli`: the `rprloc` command."""

import sys

from rprloc_core.cli import main

sys.exit(main())
