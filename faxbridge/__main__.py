"""``python -m faxbridge`` is the ``faxbridge`` command."""

import sys

from faxbridge.cli import main

sys.exit(main())
