"""What would block a run, found before GPU hours are spent: configuration, model, data, disk, packages,
GPUs, the Teacher endpoint and the workspace's saved state.

    python utils/status_checker.py                   # every check (imports torch, loads the model config)
    python utils/status_checker.py --quick           # a few seconds: no heavy imports, 3 s endpoint timeout
    python utils/status_checker.py --json --env-file prod.env --workspace /data/run1

Each check is ok, warn, fail or skip, with a message and, for problems, how to fix it. The checks of the run's
inputs and of settings that would make a real run quietly differ from what they say (utils/preflight.py) are the
very functions the launcher runs before its first stage. Exit status, as the launcher's: 0 ready; 2 the run would
be refused (invalid configuration or a failed pre-run check: `python scripts/run_training.py` exits 2 on the same
settings); 1 another check failed (an endpoint down, a stale lock, disk, packages: the run would start and fail).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict

from prosetting.core.config import Config, ConfigError, load_config
from prosetting.processors.stages import check_settings
from prosetting.utils.health_endpoints import check_teacher
from prosetting.utils.health_machine import check_gpus, check_packages, check_training_launch, check_workspace
from prosetting.utils.health_models import check_models
from prosetting.utils.health_state import check_state
from prosetting.utils.preflight import Check, Inputs, Machine, preflight

EXIT_NOT_READY, EXIT_REFUSED = 1, 2


# ---------------------------------------------------------------- configuration
def check_config(env_file: str | None, workspace: str | None) -> tuple[Check, Config | None, dict[str, str]]:
    try:
        cfg, sources = load_config(env_file, {"WORKSPACE_DIR": workspace} if workspace else None)
        check_settings(cfg)  # each stage's own checks (processors/stages.py)
    except ConfigError as exc:
        key = str(exc).split(":", 1)[0]
        return (
            Check(
                "configuration",
                "fail",
                str(exc),
                f"set {key} to a valid value in {env_file or 'the .env file'} or the environment "
                "(.env.example lists every key with what it expects)",
                refuses=True,
            ),
            None,
            {},
        )
    where = f"{len(sources)} settings from {', '.join(sorted(set(sources.values())))}" if sources else "all defaults"
    return (
        Check(
            "configuration",
            "ok",
            f"valid ({where}); teacher "
            f"{cfg.TEACHER_BACKEND}, collection {cfg.COLLECTION_BACKEND}, {cfg.TOTAL_ROUNDS} rounds",
        ),
        cfg,
        sources,
    )


# ---------------------------------------------------------------- all of it
def run_checks(env_file: str | None = ".env", workspace: str | None = None, quick: bool = False) -> list[Check]:
    check, cfg, sources = check_config(env_file, workspace)
    checks = [check]
    timeout = 3.0 if quick else 10.0
    if cfg is not None:
        checks += check_models(cfg, quick, timeout)
        # the launcher's own checks (utils/preflight.py), here allowed to ask the Hub about what is not cached
        checks += preflight(Inputs(cfg, sources, Machine.probe(), network=True, quick=quick, timeout=timeout))
        checks.append(check_workspace(cfg))
    checks += [*check_packages(cfg, quick), check_gpus(cfg)]
    if cfg is None:
        skipped = ("solver model", "questions", "workspace", "training launch", "teacher endpoint", "training state")
        return checks + [Check(name, "skip", "configuration invalid") for name in skipped]
    return checks + [
        *check_training_launch(cfg, timeout),
        *check_teacher(cfg, timeout),
        *check_state(cfg),
    ]


def render(checks: list[Check], seconds: float) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper() if c.status != 'ok' else 'ok':<5} {c.name:<{width}}  {c.message}")
        if c.fix and c.status in ("warn", "fail"):
            lines.append(f"{'':<5} {'':<{width}}  fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail", "skip")}
    verdict = "ready" if not counts["fail"] else "not ready: fix the failures above"
    lines.append(
        f"{len(checks)} checks in {seconds:.1f}s: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; {verdict}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="skip the slow checks (package imports, model loading)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--env-file", default=".env", help="dotenv file with settings (default: .env if present)")
    p.add_argument("--workspace", help="WORKSPACE_DIR to check (overrides the settings)")
    args = p.parse_args(argv)
    t0 = time.time()
    checks = run_checks(args.env_file, args.workspace, args.quick)
    seconds = time.time() - t0
    ready = not any(c.status == "fail" for c in checks)
    refused = any(c.status == "fail" and c.refuses for c in checks)
    if args.json:
        print(
            json.dumps(
                {
                    "ready": ready,
                    "quick": args.quick,
                    "seconds": round(seconds, 2),
                    "checks": [asdict(c) for c in checks],
                },
                indent=2,
            )
        )
    else:
        print(render(checks, seconds))
    return 0 if ready else EXIT_REFUSED if refused else EXIT_NOT_READY


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
