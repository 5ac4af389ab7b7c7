"""`python -m remove_background INPUT...`: the remove-background command without its script."""

import sys

from .command.cli import main

sys.exit(main())
