"""``python -m faxbridge.simulator``: run the simulator until SIGINT or SIGTERM."""

from .cli import main

raise SystemExit(main())
