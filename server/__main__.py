"""``python -m server`` is the ``steelyard`` command (used to start helper processes with the
same interpreter and environment as the server)."""

import sys

from server.cli import main

if __name__ == "__main__":
    sys.exit(main())
