"""`python -m remove_background INPUT...`: the remove-background command without its script."""

import sys

from .cli import main

sys.exit(main())
