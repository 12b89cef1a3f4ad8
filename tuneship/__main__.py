"""`python -m tuneship ...` (and `torchrun -m tuneship train ...`): the same as the `tuneship` command."""

import sys

from tuneship.cli import main

sys.exit(main())
