"""Interactive training: the same as `python scripts/run_training.py --mode semi`."""

import sys

from prosetting.scripts.run_training import main

if __name__ == "__main__":
    sys.exit(main(["--mode", "semi", *sys.argv[1:]]))
