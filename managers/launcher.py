"""From parsed command-line arguments to a finished (or cleanly stopped) run; used by scripts/run_training.py.

Before any stage, the run passes the checks of utils/preflight.py, the same functions `python
utils/status_checker.py --quick` prints: the inputs, and with a solver of the user's every combination of
settings that would make the run quietly differ from what they say. A failure stops here with exit 2, its
message naming the setting, and its fix. The round loop (round_controller, semi_driver) is imported only once
they pass: it pulls in torch and the Teacher clients (about 3 s), and a bad setting must fail in a second. The
run's log then starts with every value not left to its default and where it came from, and a warning for each value
of the settings file that the environment overrides (managers/plan.py: describe_settings, settings_warnings).
"""

from __future__ import annotations

import logging
import shlex
import sys
from argparse import Namespace

from prosetting.core.config import ConfigError, load_config, parse_set_args
from prosetting.core.questions import QuestionFileError
from prosetting.core.state_manager import StateManager, WorkspaceLockedError
from prosetting.managers.plan import describe_generator, describe_plan, describe_settings, settings_warnings
from prosetting.processors.stages import check_settings, discard_plan
from prosetting.utils.logging_setup import setup_logging
from prosetting.utils.preflight import Check, Inputs, Machine, preflight

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def overrides_from_args(args: Namespace) -> dict[str, str]:
    out = parse_set_args(args.set)
    if args.workspace:
        out["WORKSPACE_DIR"] = args.workspace
    if args.rounds is not None:
        out["TOTAL_ROUNDS"] = str(args.rounds)
    return out


def confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def refusal_text(check: Check) -> str:
    """One refusal as the launcher prints it: the message (naming the setting), then the fix."""
    return f"error: {check.message}" + (f"\n  fix: {check.fix}" if check.fix else "")


def launch(args: Namespace) -> int:
    try:
        cfg, sources = load_config(args.env_file, overrides_from_args(args))
        check_settings(cfg)  # each stage's own checks (processors/stages.py)
        inputs = Inputs(cfg, sources, Machine.probe())
        report = preflight(inputs)  # utils/preflight.py: the health check's --quick runs the same functions
    except (ConfigError, QuestionFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    refusals = [c for c in report if c.status == "fail"]

    if args.dry_run:
        print(describe_plan(cfg, inputs, report))
        if args.from_round is not None and args.from_stage is not None:
            files = discard_plan(StateManager(cfg.workspace).paths, args.from_round, args.from_stage, cfg.TOTAL_ROUNDS)
            print(
                f"\nredo from round {args.from_round}, stage {args.from_stage} would discard {len(files)} files or "
                "folders:"
            )
            print("".join(f"  {p}\n" for p in files), end="")
        for check in refusals:
            print(refusal_text(check), file=sys.stderr)
        return EXIT_USAGE if refusals else EXIT_OK
    if refusals:
        for check in refusals:
            print(refusal_text(check), file=sys.stderr)
        return EXIT_USAGE
    for check in report:
        if check.status == "warn":
            print(f"warning: {check.message}" + (f" ({check.fix})" if check.fix else ""), file=sys.stderr)

    from prosetting.managers.round_controller import RoundController

    log_file = setup_logging(cfg.LOG_LEVEL, cfg.workspace / "logs", name=f"{args.mode}_trainer")
    log.info("ProSetting %s run, workspace %s, log %s", args.mode, cfg.workspace, log_file)
    log.info("\n".join(describe_settings(cfg, sources)))  # where every value not left to its default came from
    for warning in settings_warnings(sources):
        log.warning(warning.removeprefix("WARNING: "))
    if cfg.GENERATOR_MODEL_PATH and not cfg.uses_generator:
        log.info("generator: %s", describe_generator(cfg, {}).split(maxsplit=1)[1])  # why its model is not loaded

    if args.mode == "semi":
        from prosetting.managers.semi_driver import SemiDriver

        driver = SemiDriver(cfg, pause=args.pause)
    else:
        from prosetting.managers.round_controller import AutoDriver

        driver = AutoDriver(cfg)
    controller = RoundController(cfg, driver=driver, sources=sources)
    controller.ctx.log_file = log_file

    if args.from_round is not None or args.from_stage is not None:
        if args.from_round is None or args.from_stage is None:
            print("error: --from-round and --from-stage go together", file=sys.stderr)
            return EXIT_USAGE
        if not 1 <= args.from_round <= cfg.TOTAL_ROUNDS:
            print(f"error: --from-round must be between 1 and TOTAL_ROUNDS={cfg.TOTAL_ROUNDS}", file=sys.stderr)
            return EXIT_USAGE
        files = controller.discard_plan(args.from_round, args.from_stage)
        print(
            f"Redo from round {args.from_round}, stage {args.from_stage}: {len(files)} files or folders will be "
            "discarded:"
        )
        for p in files:
            print(f"  {p}")
        if not args.yes and not confirm("Discard them and redo?"):
            print("nothing changed")
            return EXIT_OK
        try:
            controller.reset(args.from_round, args.from_stage)
        except WorkspaceLockedError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE

    try:
        summary = controller.run()
    except WorkspaceLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print_final(summary, controller)
    return {"completed": EXIT_OK, "stopped": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(
        summary["status"], EXIT_FAILED
    )


def print_final(summary: dict, controller) -> None:
    paths = controller.paths
    status = summary["status"]
    print(
        f"\nrun {status} in {summary['duration_s']:.0f}s; rounds done {summary['rounds_done']}, failed "
        f"{summary['rounds_failed']}"
    )
    if summary.get("baseline_heldout_accuracy") is not None:
        print(
            f"held-out greedy accuracy: {100 * summary['baseline_heldout_accuracy']:.1f}% at the start -> "
            f"{100 * (summary['final_heldout_accuracy'] or 0):.1f}% now"
        )
    for err in summary["errors"][-3:]:
        print(f"error in round {err['round']} {err['stage']}: {err['error']} (log: {err['log']})")
    print(f"summary {paths.summary}\nreport  {paths.report}\nplot    {paths.plot}")
    if status in ("interrupted", "stopped", "failed"):
        print(f"state saved; to continue, run: {continue_command(sys.argv)}")


def continue_command(argv: list[str]) -> str:
    """The command that resumes this run: the same one, less the one-off redo and dry-run flags."""
    script = argv[0] if argv and argv[0].endswith(".py") else "scripts/run_training.py"
    rest, skip = [], 0
    for arg in argv[1:]:
        if skip:
            skip -= 1
            continue
        if arg in ("--from-round", "--from-stage"):
            skip = 1
            continue
        if arg in ("--yes", "--dry-run") or arg.startswith(("--from-round=", "--from-stage=")):
            continue
        rest.append(shlex.quote(arg))
    return " ".join(["python", shlex.quote(script), *rest])
