"""Run every Socratic-Zero round: collection, grading, DPO export, training, next-round preparation.

python scripts/run_training.py                      # unattended, all rounds, resumes where it stopped
python scripts/run_training.py --mode semi          # asks before each stage: [c]ontinue [s]tatus [q]uit
python scripts/run_training.py --dry-run            # print the plan, and where each setting came from, and exit
python scripts/run_training.py --from-round 3 --from-stage train   # redo from a point
"""

from __future__ import annotations

import argparse
import sys

from prosetting.processors.stages import STAGE_NAMES
from prosetting.utils.settings_docs import render_cli_help


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, epilog=render_cli_help(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--mode", choices=("auto", "semi"), default="auto", help="auto: unattended (default); semi: interactive"
    )
    p.add_argument(
        "--env-file",
        default=".env",
        help="dotenv file with settings (default: .env if present); a key that is neither a setting nor another "
        "tool's (HF_, CUDA_, VLLM_, ...: docs/configuration.md) stops the run with its line",
    )
    p.add_argument("--workspace", help="WORKSPACE_DIR: folder of the run")
    p.add_argument("--rounds", type=int, help="TOTAL_ROUNDS")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any setting of .env.example (repeatable)"
    )
    p.add_argument("--from-round", type=int, help="redo from this round (with --from-stage)")
    p.add_argument("--from-stage", choices=STAGE_NAMES, help="redo from this stage of --from-round")
    p.add_argument("--yes", action="store_true", help="do not ask before discarding files for --from-round")
    p.add_argument("--dry-run", action="store_true", help="print the plan (rounds, stages, what is done) and exit")
    p.add_argument(
        "--pause", choices=("stage", "round"), default="stage", help="semi mode: ask before each stage or each round"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from prosetting.managers.launcher import launch  # after parsing: `--help` and a usage error need no import

    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
