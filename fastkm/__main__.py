"""``python -m fastkm ...``: the fastkm command line (see fastkm.cli)."""
import sys

from fastkm.cli import main

if __name__ == "__main__":
    sys.exit(main())
