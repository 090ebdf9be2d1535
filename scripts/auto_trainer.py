"""Unattended training: the same as `python scripts/run_training.py --mode auto`.

nohup python scripts/auto_trainer.py > auto_training.out 2>&1 &
"""

import sys

from prosetting.scripts.run_training import main

if __name__ == "__main__":
    sys.exit(main(["--mode", "auto", *sys.argv[1:]]))
