"""``python -m neuronjax``: the `neuronjax` command."""

import sys

from neuronjax.cli import main

sys.exit(main())
