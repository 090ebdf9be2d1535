"""The whole plan of a run, as `python scripts/run_training.py --dry-run` prints it: every model and endpoint,
the loss and learning rate, pairs, pool sizes, evaluation sets, training layout and lengths, every setting that is
not at its default with where it came from (a WARNING where the environment overrides the settings file), then the
rounds.

    print(describe_plan(cfg, inputs, report))     # inputs, report: utils/preflight.py, already run

Nothing is downloaded and no GPU is needed: a Hub id not in the local cache, or a machine without GPUs, is said
so in the plan.
"""

from __future__ import annotations

from dataclasses import fields

from prosetting.core.config import REDACTED, SECRET_KEYS, Config, Sources
from prosetting.core.context import RunContext
from prosetting.core.eval_spec import parse_eval_sets
from prosetting.core.io import read_json
from prosetting.core.models import ResolvedModel, cached_model, hub_hint, hub_offline
from prosetting.core.state_manager import SHIPPED_HELDOUT, SHIPPED_SEEDS, StateManager
from prosetting.processors.progress import STATUS_LABEL, read_progress
from prosetting.processors.stages import SOLVER_STAGE
from prosetting.trainers import launch
from prosetting.utils.preflight import Check, Inputs


def describe_models(cfg: Config, ctx: RunContext) -> dict[str, str]:
    """Each model setting the run loads (Config.models_in_use) as the run would find it, from the local cache only (a
    dry run downloads nothing)."""
    models = {}
    for key, revision_key in cfg.models_in_use():
        value, revision = getattr(cfg, key), getattr(cfg, revision_key) or None
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
    return models


def describe_teacher(cfg: Config) -> list[str]:
    if cfg.TEACHER_BACKEND != "llm":
        what = (
            f"built-in {cfg.BUILTIN_TASK} Teacher"
            if cfg.TEACHER_BACKEND == "builtin"
            else "rule Teacher (writes nothing)"
        )
        return [f"teacher        {cfg.TEACHER_BACKEND}: the {what}, grading by reference"]
    url, model, key = cfg.writer_endpoint()  # each TEACHER_WRITER_* falls back to the grading Teacher's
    shape = f", structured output {'on' if cfg.TEACHER_STRUCTURED_OUTPUT else 'off'}"
    return [
        f"teacher        grades (GRADING_MODE={cfg.GRADING_MODE}, per {cfg.TEACHER_GRADING_UNIT}) at "
        f"{cfg.TEACHER_BASE_URL} with {cfg.TEACHER_MODEL_NAME}{shape}, "
        + ("TEACHER_API_KEY set" if cfg.TEACHER_API_KEY else "no TEACHER_API_KEY"),
        f"               writes (WRITE_POLICIES={cfg.WRITE_POLICIES}, {cfg.NEW_QUESTIONS_PER_PARENT} per parent and "
        f"policy) at {url} with {model}, T={cfg.TEACHER_WRITING_TEMPERATURE}, "
        + ("a key" if key else "no key")
        + ("" if cfg.TEACHER_WRITER_BASE_URL else " (the grading endpoint)"),
    ]


def describe_generator(cfg: Config, models: dict[str, str]) -> str:
    if not cfg.uses_generator:
        why = (
            "QUESTION_WRITER=teacher: the Teacher writes every question"
            if cfg.QUESTION_WRITER == "teacher"
            else "CURRICULUM=static: no question is written"
            if cfg.CURRICULUM == "static"
            else f"QUESTION_WRITER={cfg.QUESTION_WRITER}, but its first training round, "
            f"{max(cfg.GENERATOR_TRAIN_START_ROUND, 2)}, is after TOTAL_ROUNDS={cfg.TOTAL_ROUNDS}"
        )
        unused = f"; GENERATOR_MODEL_PATH={cfg.GENERATOR_MODEL_PATH} unused" if cfg.GENERATOR_MODEL_PATH else ""
        return f"generator      none ({why}){unused}"
    first = max(cfg.GENERATOR_TRAIN_START_ROUND, 2)  # round 1 has no graded Teacher-written questions to learn
    share = "every" if cfg.QUESTION_WRITER == "generator" else f"{cfg.GENERATOR_SHARE:.0%} of the"
    base = models.get("GENERATOR_MODEL_PATH") or "the initial solver"
    return (
        f"generator      QUESTION_WRITER={cfg.QUESTION_WRITER}: writes from {share} parent questions of the pools of "
        f"rounds {first + 1}-{cfg.TOTAL_ROUNDS} (the Teacher before; trained from round {first} on, weighted SFT lr "
        f"{cfg.GENERATOR_LEARNING_RATE:g}, {cfg.GENERATOR_NUM_EPOCHS:g} epochs); base {base}; samples at "
        f"T={cfg.GENERATOR_TEMPERATURE}, top_p {cfg.GENERATOR_TOP_P}, at most {cfg.GENERATOR_MAX_NEW_TOKENS} tokens"
    )


def describe_pool(cfg: Config, inputs: Inputs) -> str:
    questions = inputs.questions()
    first = f"{len(questions)} seed questions" if questions is not None else "the seed questions"
    sizes = []
    for r in range(2, cfg.TOTAL_ROUNDS + 1):
        cap = cfg.pool_cap(r)
        text = f"at most {cap}" if cap else "no cap"
        if sizes and sizes[-1][1] == text:
            sizes[-1] = (sizes[-1][0].split("-")[0] + f"-{r}", text)
        else:
            sizes.append((str(r), text))
    caps = "; ".join(f"round {rounds}: {text}" for rounds, text in sizes)
    replay = (
        "every unmastered question and " if cfg.REPLAY_FAILED else ""
    ) + f"{cfg.REPLAY_RATIO:.0%} of the mastered ones replayed"
    return (
        f"pool           round 1: {first}; {caps} (POOL_CAP={cfg.POOL_CAP}); CURRICULUM={cfg.CURRICULUM}, {replay}"
        if cfg.TOTAL_ROUNDS > 1
        else f"pool           round 1: {first}"
    )


def describe_training(cfg: Config, gpus: list[int]) -> list[str]:
    pairs = (
        "every correct x incorrect pair (MAX_PAIRS_PER_QUESTION=0)"
        if not cfg.MAX_PAIRS_PER_QUESTION
        else f"at most {cfg.MAX_PAIRS_PER_QUESTION} of the correct x incorrect pairs"
    )
    loss = (
        "plain DPO" if cfg.loss_types == ["sigmoid"] else "DPO plus NLL" if cfg.loss_types == ["sigmoid", "sft"] else ""
    )
    batch = cfg.TRL_BATCH_SIZE * cfg.TRL_GRAD_ACCUM * cfg.TRL_NUM_PROCESSES
    steps = f"{cfg.TRL_MAX_STEPS} steps" if cfg.TRL_MAX_STEPS else f"{cfg.TRL_NUM_EPOCHS:g} epoch(s)"
    try:
        preset = launch.resolve_preset(cfg, gpus)
    except ValueError as exc:
        preset = f"? ({exc})"
    here = " (resolved for this machine's GPUs: none visible)" if not gpus and cfg.TRL_DISTRIBUTED == "auto" else ""
    lora = (
        f"LoRA r={cfg.TRL_LORA_R} alpha={cfg.TRL_LORA_ALPHA} on {cfg.TRL_LORA_TARGET_MODULES}"
        if cfg.TRL_LORA_R
        else "every weight"
    )
    return [
        f"pairs          {pairs} per question"
        + (", rejected cut after its first differing step" if cfg.DPO_TRUNCATE_REJECTED else ""),
        f"training       TRL loss {cfg.TRL_LOSS_TYPE}{f' ({loss})' if loss else ''}, beta {cfg.TRL_BETA}, lr "
        f"{cfg.TRL_LEARNING_RATE:g} (warmup {cfg.TRL_WARMUP_RATIO:g}), {batch} pairs a step "
        f"({cfg.TRL_BATCH_SIZE} x {cfg.TRL_GRAD_ACCUM} accumulation x {cfg.TRL_NUM_PROCESSES} processes), {steps} a "
        f"round, rounds {cfg.TRAIN_START_ROUND}-{cfg.TOTAL_ROUNDS}"
        + (" on every round's pairs so far" if cfg.TRL_ACCUMULATE_ROUNDS else " on the round's own pairs")
        + f", reference {cfg.TRL_REF_MODEL}",
        f"layout         {cfg.TRL_NUM_PROCESSES} process(es) on {cfg.NUM_MACHINES} machine(s), precision "
        f"{cfg.TRL_MIXED_PRECISION}, preset {preset} (TRL_DISTRIBUTED={cfg.TRL_DISTRIBUTED}){here}, gradient "
        f"checkpointing {'on' if cfg.TRL_GRADIENT_CHECKPOINTING else 'off'}, {lora}",
    ]


def describe_lengths(cfg: Config, inputs: Inputs, report: list[Check]) -> str:
    measured = next((c for c in report if c.name == "lengths"), None)
    if inputs.longest_prompt:
        tokens, qid = inputs.longest_prompt
        prompt = f"longest seed prompt {tokens} tokens ({qid})"
    else:
        prompt = measured.message if measured else "longest prompt not measured"
    vllm = ", VLLM_MAX_MODEL_LEN " + (str(cfg.VLLM_MAX_MODEL_LEN) if cfg.VLLM_MAX_MODEL_LEN else "0 (the model's own)")
    return (
        f"lengths        MAX_NEW_TOKENS {cfg.MAX_NEW_TOKENS} (collection and evaluation), TRL_MAX_LENGTH "
        f"{cfg.TRL_MAX_LENGTH}{vllm}; {prompt}"
    )


def describe_evaluation(cfg: Config) -> list[str]:
    heldout = cfg.HELDOUT_FILE or (str(SHIPPED_HELDOUT) if cfg.embedded else "")
    sets = ([("heldout", heldout)] if heldout else []) + [
        (s.name, s.describe()) for s in parse_eval_sets(cfg.EVAL_SETS, check_paths=False)
    ]
    if not sets:
        return ["evaluation     none (no HELDOUT_FILE or EVAL_SETS)"]
    if not cfg.EVAL_K:
        return [f"evaluation     none (EVAL_K=0; {len(sets)} set(s) named)"]
    lines = [f"evaluation     at the start and after every trained round, {len(sets)} set(s), greedy and:"]
    lines += [
        f"                 {name}: Mean@{cfg.EVAL_K} at T={cfg.EVAL_TEMPERATURE}, {where}" for name, where in sets
    ]
    return lines


def describe_machine(inputs: Inputs) -> str:
    m = inputs.machine
    gpus = (
        f"{len(m.gpus)} GPU(s) ({m.gpus[0].name}{', bf16' if m.bf16 else ''})"
        if m.gpus
        else "no GPU visible (the GPU checks are skipped; a server's own run checks them)"
    )
    return f"this machine   {gpus}; vLLM {'installed' if m.vllm else 'not installed'}" + (
        "; HF_HUB_OFFLINE=1: only cached models and datasets" if hub_offline() else ""
    )


def describe_checks(report: list[Check]) -> list[str]:
    counts = {s: sum(c.status == s for c in report) for s in ("ok", "warn", "fail", "skip")}
    lines = ["checks         " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    for c in report:
        if c.status in ("warn", "fail", "skip"):
            lines.append(f"  {c.status:<5} {c.name}: {c.message}")
    return lines


def shown_value(cfg: Config, key: str) -> str:
    """A value as a settings file writes it (booleans in lower case), secrets redacted."""
    value = getattr(cfg, key)
    if key in SECRET_KEYS and value:
        return REDACTED
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe_settings(cfg: Config, sources: dict[str, str]) -> list[str]:
    """Every value not left to Config's default, in field order, with where it came from (a settings file's line, the
    environment, the command line or the embedded profile): the "settings" block of the plan and of the run's log."""
    if not isinstance(sources, Sources) and not sources:
        return []  # not told where the values came from (a caller that loaded none)
    where = sources.where if isinstance(sources, Sources) else sources.__getitem__
    given = [f.name for f in fields(Config) if f.name in sources]
    if not given:
        return ["settings       every value is Config's default"]
    return [
        f"settings       {len(given)} not left to their defaults (command line > environment > settings file > "
        "defaults; the rest: .env.example):",
        *(f"                 {key}={shown_value(cfg, key)} (from {where(key)})" for key in given),
    ]


def settings_warnings(sources: dict[str, str]) -> list[str]:
    """A WARNING for each value of the settings file that the environment replaced: a leftover `export SEED=3` over
    a preset's SEED=42 changes the run without a word otherwise."""

    def shown(key: str, value: object) -> str:
        return (
            REDACTED if key in SECRET_KEYS and value else str(value).lower() if isinstance(value, bool) else str(value)
        )

    return [
        f"WARNING: {s.key}={shown(s.key, s.env_value)} from the environment overrides {s.key}="
        f"{shown(s.key, s.file_value)} of {s.where}; the run uses {shown(s.key, s.env_value)} (unset {s.key} to use "
        "the file's value, or give it on the command line to choose)"
        for s in getattr(sources, "shadowed", [])
    ]


def describe_plan(cfg: Config, inputs: Inputs | None = None, report: list[Check] | None = None) -> str:
    """What a run would do now: models, endpoints, recipe, evaluation, layout, then each round's stages."""
    inputs = inputs or Inputs(cfg)
    report = report or []
    sm = StateManager(cfg.workspace)
    ctx = RunContext(cfg=cfg, sm=sm)
    progress = read_progress(sm, cfg.TOTAL_ROUNDS)
    state = progress.state
    models = describe_models(cfg, ctx)
    embedded = f"embedded tiny solver, built and warm-started in {sm.paths.base_model}"
    questions = inputs.questions()
    count = f"{len(questions)} questions" if questions is not None else "unreadable"
    source = (
        f"{cfg.QUESTIONS_FILE} ({count})" if cfg.QUESTIONS_FILE else f"{SHIPPED_SEEDS} (the shipped seeds, {count})"
    )
    lines = [
        *settings_warnings(inputs.sources),
        f"workspace      {cfg.workspace} (state: {state['status']})",
        f"solver         {models.get('SOLVER_MODEL_PATH') or embedded}",
        f"questions      {source}",
        *describe_teacher(cfg),
        describe_generator(cfg, models),
        f"collection     {cfg.COLLECTION_BACKEND}, {cfg.ATTEMPTS_PER_QUESTION} attempts per question at "
        f"T={cfg.SAMPLING_TEMPERATURE}, top_p {cfg.SAMPLING_TOP_P}",
        *describe_training(cfg, launch.training_gpus(cfg)),
        describe_lengths(cfg, inputs, report),
        describe_pool(cfg, inputs),
        *describe_evaluation(cfg),
        describe_machine(inputs),
        *describe_settings(cfg, inputs.sources),
        *(describe_checks(report) if report else []),
        "",
    ]
    lock = sm.read_lock()
    if lock:
        lines.append(
            f"lock           held by pid {lock.get('pid')} on {lock.get('host')}"
            + (" (stale: will be taken over)" if sm.lock_is_stale(lock) else " (LIVE: a run is in progress)")
        )
    for rp in progress.rounds:
        r = rp.round
        cells = []
        for sp in rp.stages:
            note = sp.stage.plan_note(cfg, r)
            cells.append(f"{sp.stage.name}: {STATUS_LABEL.get(sp.status, 'todo')}" + (f", {note}" if note else ""))
        solver = (
            ctx.solver_for_round(r)
            if r == 1 or progress.round(r - 1).of(SOLVER_STAGE.name).status == "done"
            else "(output of the previous rounds)"
        )
        pool = sm.paths.questions(r)
        pool_text = (
            f"{len(read_json(pool))} questions"
            if pool.exists()
            else "the seed questions"
            if r == 1
            else "pool written by the previous round"
        )
        lines.append(f"round {r}: {pool_text}; solver {solver}")
        lines.append("   " + "; ".join(cells))
    return "\n".join(lines)
