"""``python -m signaling``: the same as the ``kelian`` console script, for when it is not on PATH."""

import sys

from signaling.cli import main

if __name__ == "__main__":
    sys.exit(main())
