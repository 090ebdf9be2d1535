"""From parsed command-line arguments to a finished (or cleanly stopped) run; used by scripts/run_training.py.

The round loop (round_controller, semi_driver) is imported only once the configuration and inputs have been
checked: it pulls in torch and the Teacher clients (about 3 s), and a bad setting must fail in a second.
"""

from __future__ import annotations

import logging
import shlex
import sys
from argparse import Namespace

from prosetting.collectors.placement import check_engines
from prosetting.core import tracking
from prosetting.core.config import Config, ConfigError, load_config, parse_set_args
from prosetting.core.context import RunContext
from prosetting.core.devices import query_gpus
from prosetting.core.eval_spec import parse_eval_sets
from prosetting.core.io import read_json
from prosetting.core.models import MODEL_KEYS, ResolvedModel, cached_model, hub_hint, hub_offline
from prosetting.core.questions import QuestionFileError, load_questions_file
from prosetting.core.state_manager import SHIPPED_HELDOUT, SHIPPED_SEEDS, STAGES, StateManager, WorkspaceLockedError
from prosetting.processors.eval_sets import EvalSetError, load_eval_set
from prosetting.utils.logging_setup import setup_logging

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def overrides_from_args(args: Namespace) -> dict[str, str]:
    out = parse_set_args(args.set)
    if args.workspace:
        out["WORKSPACE_DIR"] = args.workspace
    if args.rounds is not None:
        out["TOTAL_ROUNDS"] = str(args.rounds)
    return out


def check_inputs(cfg: Config) -> None:
    """Parse the questions (and held-out) files before anything is written to the workspace."""
    if not StateManager(cfg.workspace).paths.questions(1).exists():
        load_questions_file(cfg.QUESTIONS_FILE or SHIPPED_SEEDS)
    if cfg.HELDOUT_FILE:
        load_questions_file(cfg.HELDOUT_FILE, origin="heldout")
    sm, sources = StateManager(cfg.workspace), None
    for spec in parse_eval_sets(cfg.EVAL_SETS):  # local sets read now, so a bad row fails before any stage
        if spec.kind != "hub":
            sources = sources if sources is not None else (read_json(sm.paths.eval_sources) or {})
            if not (sm.paths.eval_set(spec.name).exists() and sources.get(spec.name) == spec.text):
                try:
                    load_eval_set(spec)
                except EvalSetError as exc:
                    raise ConfigError(f"EVAL_SETS: {exc}") from None


def describe_plan(cfg: Config) -> str:
    """What a run would do now: rounds, stages done or to do, models and data sources."""
    sm = StateManager(cfg.workspace)
    ctx = RunContext(cfg=cfg, sm=sm)
    state = sm.load_state()
    models = {}
    for key, revision_key in MODEL_KEYS:  # from the cache only: a dry run downloads nothing
        value, revision = getattr(cfg, key), getattr(cfg, revision_key) or None
        if value:
            cached = cached_model(value, revision)
            ctx.models[key] = cached or ResolvedModel(value=value, path=f"{value} (not cached yet)", repo_id=value)
            models[key] = (
                cached.describe()
                if cached
                else f"{value} from the Hub, not in the local cache: "
                + (
                    f"HF_HUB_OFFLINE=1, so the run stops at its start ({hub_hint(value, revision)})"
                    if hub_offline()
                    else "downloaded at the start"
                )
            )
    embedded = f"embedded tiny solver, built and warm-started in {sm.paths.base_model}"
    lines = [
        f"workspace      {cfg.workspace} (state: {state['status']})",
        f"solver         {models.get('SOLVER_MODEL_PATH') or embedded}",
        *([f"generator      {models['GENERATOR_MODEL_PATH']}"] if "GENERATOR_MODEL_PATH" in models else []),
        f"questions      {cfg.QUESTIONS_FILE or SHIPPED_SEEDS}",
        f"evaluation     {describe_evaluation(cfg)}",
        f"teacher        {cfg.TEACHER_BACKEND}"
        + (f" at {cfg.TEACHER_BASE_URL} ({cfg.TEACHER_MODEL_NAME})" if cfg.TEACHER_BACKEND == "llm" else ""),
        f"collection     {cfg.COLLECTION_BACKEND}, {cfg.ATTEMPTS_PER_QUESTION} attempts per question at "
        f"T={cfg.SAMPLING_TEMPERATURE}",
        f"training       TRL DPO loss {cfg.TRL_LOSS_TYPE}, beta {cfg.TRL_BETA}, lr {cfg.TRL_LEARNING_RATE}, "
        f"{cfg.TRL_NUM_PROCESSES} process(es), from round {cfg.TRAIN_START_ROUND}",
        "",
    ]
    lock = sm.read_lock()
    if lock:
        lines.append(
            f"lock           held by pid {lock.get('pid')} on {lock.get('host')}"
            + (" (stale: will be taken over)" if sm.lock_is_stale(lock) else " (LIVE: a run is in progress)")
        )
    for r in range(1, cfg.TOTAL_ROUNDS + 1):
        progress = sm.load_progress(r)["stages"]
        cells = []
        for s in STAGES:
            status = (progress.get(s) or {}).get("status", "todo")
            label = {"done": "done (skip)", "running": "resume", "interrupted": "resume", "failed": "retry"}.get(
                status, "todo"
            )
            if s == "train" and r < cfg.TRAIN_START_ROUND:
                label += ", accumulate only"
            cells.append(f"{s}: {label}")
        solver = (
            ctx.solver_for_round(r) if r == 1 or sm.is_stage_done(r - 1, "train") else "(output of the previous rounds)"
        )
        pool = sm.paths.questions(r)
        pool_text = f"{len(read_json(pool))} questions" if pool.exists() else "pool written by the previous round"
        lines.append(f"round {r}: {pool_text}; solver {solver}")
        lines.append("   " + "; ".join(cells))
    return "\n".join(lines)


def describe_evaluation(cfg: Config) -> str:
    heldout = cfg.HELDOUT_FILE or (SHIPPED_HELDOUT if cfg.embedded else "")
    sets = ([f"heldout ({heldout})"] if heldout else []) + [
        f"{s.name} ({s.describe()})" for s in parse_eval_sets(cfg.EVAL_SETS)
    ]
    if not cfg.EVAL_K or not sets:
        return "none" if sets else "none (no HELDOUT_FILE or EVAL_SETS)"
    return (
        f"greedy and Mean@{cfg.EVAL_K} at T={cfg.EVAL_TEMPERATURE}, at the start and after every trained round: "
        + "; ".join(sets)
    )


def confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def check_collection_engines(cfg: Config) -> None:
    """vLLM engines that could not start (absent GPUs, a model that does not fit) fail here, before any stage."""
    if cfg.COLLECTION_BACKEND == "transformers":
        return
    # a Hub id not cached yet is downloaded at the start and checked by the engines as they load
    model = cached_model(cfg.SOLVER_MODEL_PATH, cfg.SOLVER_MODEL_REVISION or None) if cfg.SOLVER_MODEL_PATH else None
    problems = check_engines(cfg, model.path if model else None, query_gpus())
    if problems:
        raise ConfigError("; ".join(f"{problem}: {fix}" for problem, fix in problems))


def launch(args: Namespace) -> int:
    try:
        cfg, sources = load_config(args.env_file, overrides_from_args(args))
        check_inputs(cfg)
        check_collection_engines(cfg)
        missing = tracking.missing_packages(cfg)
        if missing:
            raise ConfigError(
                f"TRL_REPORT_TO: {', '.join(missing)} not installed; pip install {' '.join(missing)}, "
                "or leave them out of TRL_REPORT_TO"
            )
    except (ConfigError, QuestionFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if args.dry_run:
        print(describe_plan(cfg))
        if args.from_round is not None and args.from_stage is not None:
            files = StateManager(cfg.workspace).discard_plan(args.from_round, args.from_stage, cfg.TOTAL_ROUNDS)
            print(
                f"\nredo from round {args.from_round}, stage {args.from_stage} would discard {len(files)} files or "
                "folders:"
            )
            print("".join(f"  {p}\n" for p in files), end="")
        return EXIT_OK

    from prosetting.managers.round_controller import RoundController

    log_file = setup_logging(cfg.LOG_LEVEL, cfg.workspace / "logs", name=f"{args.mode}_trainer")
    log.info("ProSetting %s run, workspace %s, log %s", args.mode, cfg.workspace, log_file)
    for key, source in sorted(sources.items()):
        log.debug("setting %s from %s", key, source)

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
