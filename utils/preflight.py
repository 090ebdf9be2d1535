"""The checks a run passes before its first stage: one set, run by the launcher and by the health check.

    report = preflight(Inputs(cfg, sources, Machine.probe()))   # [Check, ...]: ok | warn | fail | skip
    refusals = [c for c in report if c.status == "fail"]

`python scripts/run_training.py` (managers/launcher.py) stops with exit 2 and each failure's message and fix before
anything is written; `python utils/status_checker.py --quick` prints the same checks beside its own (models,
disk, packages, GPUs, the Teacher endpoint, the saved state). The inputs: the questions and held-out files, the
evaluation sets, the collection engines and trackers, and, with a solver of the user's (SOLVER_MODEL_PATH set),
every combination of settings that would make a real run quietly differ from what the settings say:

- seed questions: QUESTIONS_FILE empty (or the shipped file) trains the user's model on "7+1=?";
- teacher settings: an endpoint or GRADING_MODE=llm named while TEACHER_BACKEND is not llm (never called);
- teacher task: the built-in Teacher on questions outside its task, the rule Teacher asked to write (nothing
  written: the pool shrinks to replays);
- evaluation: no evaluation set (days without a figure) unless EVAL_K=0 turns evaluation off on purpose, and
  EVAL_K=0 beside sets that would never be measured;
- lengths: the longest prompt plus MAX_NEW_TOKENS over TRL_MAX_LENGTH (TRL cuts the end of the solution, where
  the answer is), over VLLM_MAX_MODEL_LEN, or over the solver's own context (max_position_embeddings);
- training precision: float32 compute on GPUs that do bf16 (a warning: slower, same master weights);
- collection backend: `auto` falling back to transformers on a GPU server without vLLM;
- round schedule: a Generator asked for (QUESTION_WRITER) that no round would ever write with;
- sampling: SAMPLING_TEMPERATURE=0, where every attempt at a question is the same and no pair can be made.
The embedded default (SOLVER_MODEL_PATH empty) skips those: its settings are the project's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prosetting.collectors.backends import resolve_backend, vllm_installed
from prosetting.collectors.placement import check_engines, plan_engines, solver_gpus
from prosetting.core import tracking
from prosetting.core.config import Config
from prosetting.core.devices import GpuInfo, query_compute_capabilities, query_gpus, visible_gpus
from prosetting.core.eval_spec import EvalSetSpec, parse_eval_sets
from prosetting.core.io import read_json, read_jsonl
from prosetting.core.models import cached_model
from prosetting.core.questions import QuestionFileError, load_questions_file
from prosetting.core.state_manager import SHIPPED_SEEDS, StateManager
from prosetting.processors.eval_sets import EvalSetError, hub_dataset_cached, load_eval_set

# Room the end of the assistant's turn takes after a solution of MAX_NEW_TOKENS (end-of-turn and EOS tokens).
TURN_END_TOKENS = 8
PAPER_PRESET = "presets/paper_qwen3_8b_8gpu.env"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    message: str
    fix: str = ""
    refuses: bool = False  # a `fail` here stops the launcher before the first stage (exit 2), not only the health check


@dataclass
class Machine:
    """What this machine offers the run: visible GPUs, whether each does bf16, whether vLLM is installed."""

    gpus: list[GpuInfo] = field(default_factory=list)
    bf16: bool | None = None  # every visible GPU has compute capability >= 8.0; None: no GPU, or not reported
    vllm: bool = False

    @classmethod
    def probe(cls, timeout: float = 5.0) -> Machine:
        visible = set(visible_gpus())
        gpus = [g for g in query_gpus(timeout=timeout) if g.index in visible]
        caps = query_compute_capabilities(timeout) if gpus else {}
        known = [caps[g.index] for g in gpus if g.index in caps]
        bf16 = (min(known) >= 8.0) if gpus and len(known) == len(gpus) else None
        return cls(gpus=gpus, bf16=bf16, vllm=vllm_installed())


@dataclass
class Inputs:
    """What the checks read, gathered once: the settings, where each came from, the machine."""

    cfg: Config
    sources: dict[str, str] = field(default_factory=dict)
    machine: Machine = field(default_factory=Machine)
    network: bool = False  # may ask the Hub about what is not cached (the health check; the launcher never does)
    quick: bool = True  # a cached Hub dataset is not loaded to count its rows
    timeout: float = 3.0
    longest_prompt: tuple[int, str] | None = None  # (tokens, question id), once check_lengths has measured it
    _questions: list[dict] | None = None
    _questions_read: bool = False

    @property
    def questions_source(self) -> str:
        return self.cfg.QUESTIONS_FILE or str(SHIPPED_SEEDS)

    def questions(self) -> list[dict] | None:
        """The round-1 pool (the workspace's, once written; else the questions file), None where unreadable."""
        if not self._questions_read:
            self._questions_read = True
            pool = StateManager(self.cfg.workspace).paths.questions(1)
            try:
                self._questions = read_json(pool) if pool.exists() else load_questions_file(self.questions_source)
            except (QuestionFileError, ValueError):
                self._questions = None
        return self._questions


def preflight(x: Inputs) -> list[Check]:
    """Every check, in order; the launcher refuses to start on any `fail`."""
    out: list[Check] = []
    for check in CHECKS:
        result = check(x)
        out += result if isinstance(result, list) else [result]
    for c in out:
        c.refuses = True
    return out


def _skip_embedded(name: str) -> Check:
    return Check(name, "skip", "the embedded default (SOLVER_MODEL_PATH empty): its settings are the project's own")


# ---------------------------------------------------------------- inputs every run reads
def check_questions(x: Inputs) -> list[Check]:
    """The seed questions (or the round-1 pool a resume continues from) and the held-out set parse."""
    cfg = x.cfg
    pool = StateManager(cfg.workspace).paths.questions(1)
    fix = (
        "fix the file (a JSON list or JSON Lines of objects with `question` and `answer`) "
        "or set QUESTIONS_FILE to another"
    )
    checks = []
    try:
        if pool.exists():
            n = len(read_json(pool))
            msg = f"round-1 pool already in the workspace ({n} questions); {x.questions_source} is not read again"
            checks.append(Check("questions", "ok", msg))
        else:
            n = len(load_questions_file(x.questions_source))
            checks.append(Check("questions", "ok", f"{n} questions in {x.questions_source}"))
    except (QuestionFileError, ValueError) as exc:
        checks.append(Check("questions", "fail", str(exc), fix))
    if cfg.HELDOUT_FILE:
        try:
            n = len(load_questions_file(cfg.HELDOUT_FILE, origin="heldout"))
            checks.append(Check("held-out set", "ok", f"{n} questions in {cfg.HELDOUT_FILE}"))
        except QuestionFileError as exc:
            checks.append(Check("held-out set", "fail", str(exc), fix.replace("QUESTIONS_FILE", "HELDOUT_FILE")))
    return checks


def check_eval_sets(x: Inputs) -> list[Check]:
    """Each EVAL_SETS set: a file or folder is read (a bad row fails here); a Hub dataset must be in the datasets
    cache where HF_HUB_OFFLINE=1 forbids fetching it, else it is read at the run's start (the health check asks
    the Hub whether it exists)."""
    from huggingface_hub import constants

    sm = StateManager(x.cfg.workspace)
    sources = read_json(sm.paths.eval_sources) or {}
    checks = []
    for spec in parse_eval_sets(x.cfg.EVAL_SETS, check_paths=False):
        name, copy = f"eval set {spec.name}", sm.paths.eval_set(spec.name)
        if copy.exists() and sources.get(spec.name) == spec.text:
            checks.append(Check(name, "ok", f"{len(read_jsonl(copy))} questions already read into {copy}"))
            continue
        if spec.kind == "hub":
            cached = hub_dataset_cached(spec)
            if cached is None:
                if x.network or constants.HF_HUB_OFFLINE:
                    checks.append(check_hub_dataset(name, spec, x.timeout))
                else:
                    checks.append(
                        Check(
                            name,
                            "warn",
                            f"{spec.describe()}: not in the datasets cache; read from the Hub at the run's start",
                            _load_hint(spec),
                        )
                    )
                continue
            if x.quick:
                checks.append(Check(name, "ok", f"{spec.describe()}: in the datasets cache ({cached})"))
                continue
        try:
            n = len(load_eval_set(spec))
        except EvalSetError as exc:
            checks.append(Check(name, "fail", str(exc), "fix the source or its EVAL_SETS entry (docs/evaluation.md)"))
            continue
        checks.append(Check(name, "ok", f"{n} questions from {spec.describe()}"))
    return checks


def _load_hint(spec: EvalSetSpec) -> str:
    call = f"datasets.load_dataset({spec.dataset_id!r}, {spec.config!r}, split={spec.split or 'test'!r})"
    return f'python -c "import datasets; {call}" where the Hub is reachable, with the same HF_HOME / HF_DATASETS_CACHE'


def check_hub_dataset(name: str, spec: EvalSetSpec, timeout: float) -> Check:
    """A Hub dataset not in the datasets cache: offline a failure; online the Hub says whether it exists."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    fix = _load_hint(spec)
    if constants.HF_HUB_OFFLINE:
        return Check(
            name,
            "fail",
            f"{spec.describe()}: not in the datasets cache and HF_HUB_OFFLINE=1 forbids downloading it",
            fix,
        )
    try:
        info = HfApi().dataset_info(spec.dataset_id, revision=spec.revision, timeout=timeout)
    except GatedRepoError:
        return Check(
            name,
            "fail",
            f"{spec.dataset_id} is gated on the Hub",
            f"accept its terms at https://huggingface.co/datasets/{spec.dataset_id} and log in (`hf auth login`), "
            f"then {fix}",
        )
    except RepositoryNotFoundError:
        return Check(
            name,
            "fail",
            f"{spec.dataset_id}: no such dataset on the Hub (or a private one without a login)",
            f"check the id at https://huggingface.co/datasets/{spec.dataset_id}, or use a local file or folder",
        )
    except RevisionNotFoundError:
        return Check(
            name, "fail", f"{spec.dataset_id} has no revision {spec.revision!r}", "fix ?revision= in EVAL_SETS"
        )
    except Exception as exc:
        return Check(
            name,
            "warn",
            f"{spec.describe()}: not in the datasets cache, and the Hub did not answer ({type(exc).__name__}: {exc})",
            fix,
        )
    return Check(
        name,
        "warn",
        f"{spec.describe()}: on the Hub (commit {(info.sha or '?')[:12]}), not cached yet: read at the run's start",
        fix,
    )


def check_collection_engines(x: Inputs) -> Check:
    """The engines collection will start: where, how many, and whether the solver fits them."""
    cfg = x.cfg
    backend = resolve_backend(cfg.COLLECTION_BACKEND)
    if backend != "vllm":
        return Check(
            "collection engines",
            "ok",
            f"{backend} in the stage's process (COLLECTION_BACKEND={cfg.COLLECTION_BACKEND})",
        )
    # a Hub id not cached yet is downloaded at the start and checked by the engines as they load
    solver = cached_model(cfg.SOLVER_MODEL_PATH, cfg.SOLVER_MODEL_REVISION or None) if cfg.SOLVER_MODEL_PATH else None
    problems = check_engines(cfg, solver.path if solver else None, x.machine.gpus)
    if problems:
        return Check("collection engines", "fail", "; ".join(p for p, _ in problems), "; ".join(f for _, f in problems))
    try:
        ids = solver_gpus(cfg)
        specs = plan_engines(ids, cfg.TENSOR_PARALLEL_SIZE if ids else 1, cfg.COLLECTION_CPU_ENGINES)
    except ValueError as exc:
        return Check(
            "collection engines", "fail", str(exc), "see TENSOR_PARALLEL_SIZE and PHYSICAL_SOLVER_GPU in .env.example"
        )
    return Check(
        "collection engines",
        "ok",
        f"{len(specs)} vLLM engine(s) via {cfg.COLLECTION_EXECUTOR}: " + "; ".join(s.label for s in specs),
    )


def check_trackers(x: Inputs) -> Check:
    cfg = x.cfg
    if not tracking.targets(cfg):
        return Check("trackers", "skip", "TRL_REPORT_TO=none")
    missing = tracking.missing_packages(cfg)
    if missing:
        return Check(
            "trackers",
            "fail",
            f"TRL_REPORT_TO: {', '.join(missing)} not installed",
            f"pip install {' '.join(missing)}, or leave them out of TRL_REPORT_TO",
        )
    return Check(
        "trackers",
        "ok",
        f"{', '.join(tracking.targets(cfg))}: round figures in {cfg.workspace / 'tracking'} and the trainers' steps, "
        "one run per workspace",
    )


# ---------------------------------------------------------------- a real run that is what its settings say
def _is_shipped_seeds(value: str) -> bool:
    if not value:
        return True
    try:
        return Path(value).expanduser().resolve() == SHIPPED_SEEDS.resolve()
    except OSError:
        return False


def check_seed_questions(x: Inputs) -> Check:
    """A user's model on the shipped arithmetic seeds only when asked for by name: the file and the task."""
    cfg, name = x.cfg, "seed questions"
    if cfg.embedded:
        return _skip_embedded(name)
    if not _is_shipped_seeds(cfg.QUESTIONS_FILE):
        return Check(name, "ok", f"QUESTIONS_FILE={cfg.QUESTIONS_FILE}")
    task = cfg.BUILTIN_TASK
    deliberate = bool(cfg.QUESTIONS_FILE) and "BUILTIN_TASK" in x.sources and task == "arithmetic"
    if deliberate and cfg.TEACHER_BACKEND == "builtin":
        return Check(name, "ok", "the shipped arithmetic seeds, asked for by name (QUESTIONS_FILE, BUILTIN_TASK)")
    what = "empty" if not cfg.QUESTIONS_FILE else f"the shipped {SHIPPED_SEEDS.name}"
    return Check(
        name,
        "fail",
        f"QUESTIONS_FILE is {what}: SOLVER_MODEL_PATH={cfg.SOLVER_MODEL_PATH} would train on the project's shipped "
        f"arithmetic seeds ({SHIPPED_SEEDS}, e.g. '7+1=?'), not on your questions",
        "set QUESTIONS_FILE to your seed questions (JSON Lines with `question` and `answer`; the design starts from "
        "about 100 math questions); to train on the arithmetic seeds on purpose, set "
        f"QUESTIONS_FILE={SHIPPED_SEEDS.relative_to(SHIPPED_SEEDS.parent.parent)} with TEACHER_BACKEND=builtin and "
        "BUILTIN_TASK=arithmetic",
    )


def check_teacher_settings(x: Inputs) -> Check:
    """Endpoint settings and LLM grading that only TEACHER_BACKEND=llm reads: set for another Teacher, never used."""
    cfg, name = x.cfg, "teacher settings"
    if cfg.embedded:
        return _skip_embedded(name)
    if cfg.TEACHER_BACKEND == "llm":
        return Check(name, "ok", "TEACHER_BACKEND=llm: the endpoint grades and writes")
    keys = ("TEACHER_BASE_URL", "TEACHER_MODEL_NAME", "TEACHER_WRITER_BASE_URL", "TEACHER_WRITER_MODEL_NAME")
    named = [k for k in keys if getattr(cfg, k)]
    if named:
        return Check(
            name,
            "fail",
            f"TEACHER_BACKEND={cfg.TEACHER_BACKEND}: {', '.join(named)} set, but only TEACHER_BACKEND=llm calls an "
            f"endpoint: this run would never call {getattr(cfg, named[0])}",
            f"set TEACHER_BACKEND=llm to grade and write with it, or remove {', '.join(named)}",
        )
    if cfg.GRADING_MODE == "llm":
        return Check(
            name,
            "fail",
            f"GRADING_MODE=llm asks the LLM Teacher to grade every attempt, but TEACHER_BACKEND={cfg.TEACHER_BACKEND} "
            "grades by reference",
            "set TEACHER_BACKEND=llm with TEACHER_BASE_URL and TEACHER_MODEL_NAME, or GRADING_MODE=rule",
        )
    return Check(name, "ok", f"TEACHER_BACKEND={cfg.TEACHER_BACKEND}: no endpoint settings")


def teacher_owns(cfg: Config) -> tuple[str, Callable[[dict], bool]]:
    """(task, owns(question)) of the built-in Teacher the settings pick (TEACHER_BACKEND=builtin)."""
    from prosetting.teacher_model import make_teacher

    teacher = make_teacher(cfg)
    return cfg.BUILTIN_TASK, teacher.owns


def check_teacher_task(x: Inputs) -> Check:
    """The Teacher must be able to write from the pool's questions, or every next pool is replays only."""
    cfg, name = x.cfg, "teacher task"
    if cfg.embedded:
        return _skip_embedded(name)
    if cfg.CURRICULUM == "static":
        return Check(name, "ok", "CURRICULUM=static: no question is written")
    if cfg.TEACHER_BACKEND == "llm":
        return Check(name, "ok", "the LLM Teacher writes from any question")
    endpoint = (
        f"TEACHER_BACKEND=llm (TEACHER_BASE_URL={cfg.TEACHER_BASE_URL} is set: it would be used)"
        if cfg.TEACHER_BASE_URL
        else "TEACHER_BACKEND=llm with TEACHER_BASE_URL and TEACHER_MODEL_NAME (your endpoint)"
    )
    if cfg.TEACHER_BACKEND == "rule":
        return Check(
            name,
            "fail",
            f"TEACHER_BACKEND=rule writes no questions, but CURRICULUM={cfg.CURRICULUM} writes every next pool: each "
            "round after the first would replay its questions and add none",
            f"set {endpoint}, or CURRICULUM=static to train on the seed questions alone on purpose",
        )
    questions = x.questions()
    if questions is None:
        return Check(name, "skip", "the questions do not read (see `questions`)")
    task, owns = teacher_owns(cfg)
    foreign = [q for q in questions if not owns(q)]
    if not foreign:
        return Check(name, "ok", f"the built-in {task} Teacher writes from all {len(questions)} questions")
    first = foreign[0]
    return Check(
        name,
        "fail",
        f"TEACHER_BACKEND=builtin: the built-in {task} Teacher cannot write from {len(foreign)} of {len(questions)} "
        f"questions of {x.questions_source} (e.g. {first.get('id', '?')}: {first['question'][:60]!r}); it would "
        "write nothing from them and the pool would shrink to replays",
        f"set {endpoint}, or CURRICULUM=static to train on these questions alone",
    )


def check_evaluation(x: Inputs) -> Check:
    """A real run measures its solver, unless EVAL_K=0 says it should not."""
    cfg, name = x.cfg, "evaluation"
    if cfg.embedded:
        return _skip_embedded(name)
    sets = [s.name for s in parse_eval_sets(cfg.EVAL_SETS, check_paths=False)]
    named = (["heldout"] if cfg.HELDOUT_FILE else []) + sets
    if cfg.EVAL_K == 0:
        if named:
            return Check(
                name,
                "fail",
                f"EVAL_K=0 turns evaluation off, but {', '.join(named)} (EVAL_SETS, HELDOUT_FILE) would then never "
                "be measured",
                "set EVAL_K (32: the paper's Mean@32), or empty EVAL_SETS and HELDOUT_FILE",
            )
        return Check(name, "ok", "EVAL_K=0: evaluation turned off on purpose")
    if not named:
        return Check(
            name,
            "fail",
            "EVAL_SETS and HELDOUT_FILE are empty: the run would train for days and never measure the solver",
            f"set EVAL_SETS (the paper's seven benchmarks are in {PAPER_PRESET}) or HELDOUT_FILE; or EVAL_K=0 to run "
            "without evaluation on purpose",
        )
    return Check(
        name,
        "ok",
        f"{', '.join(named)}: greedy and Mean@{cfg.EVAL_K} at T={cfg.EVAL_TEMPERATURE} (EVAL_K, EVAL_TEMPERATURE)",
    )


class Unmeasurable(Exception):
    """The solver's tokenizer cannot be read here quickly; the message says why."""


def prompt_token_counter(cfg: Config) -> Callable[[list[dict]], int]:
    """Tokens of a chat prompt as the solver sees it (its chat template, the generation prompt), read from the
    folder's tokenizer.json and chat template with `tokenizers` and jinja2 (no transformers import: a second).
    Raises Unmeasurable where the model is not local or its tokenizer has no tokenizer.json."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer

    model = cached_model(cfg.SOLVER_MODEL_PATH, cfg.SOLVER_MODEL_REVISION or None)
    if model is None:
        raise Unmeasurable(
            f"SOLVER_MODEL_PATH={cfg.SOLVER_MODEL_PATH} is not in the local Hugging Face cache (measured once it is: "
            f"hf download {cfg.SOLVER_MODEL_PATH})"
        )
    folder = Path(model.path)
    if not (folder / "tokenizer.json").is_file():
        raise Unmeasurable(f"{folder} has no tokenizer.json")
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        config = {}
    template = config.get("chat_template")
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if not template:
        raise Unmeasurable(f"{folder} has no chat template")
    special = {
        k: (v if isinstance(v, str) else v.get("content"))
        for k, v in config.items()
        if k.endswith("_token") and isinstance(v, (str, dict))
    }

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda v, indent=None, **_: json.dumps(v, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    try:
        compiled = env.from_string(template)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:
        raise Unmeasurable(
            f"{folder}: its tokenizer or chat template does not read ({type(exc).__name__}: {exc})"
        ) from None

    def count(messages: list[dict]) -> int:
        text = compiled.render(messages=messages, add_generation_prompt=True, **special)
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count


def _max_positions(cfg: Config) -> int | None:
    """The solver's context length from its config.json (text_config for multimodal configs); None where unknown."""
    model = cached_model(cfg.SOLVER_MODEL_PATH, cfg.SOLVER_MODEL_REVISION or None)
    try:
        config = json.loads((Path(model.path) / "config.json").read_text(encoding="utf-8")) if model else {}
    except (OSError, json.JSONDecodeError):
        return None
    value = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    return int(value) if isinstance(value, int) and value > 0 else None


def check_lengths(x: Inputs) -> Check:
    """The longest prompt (chat template and SOLVER_SYSTEM_PROMPT included) plus MAX_NEW_TOKENS fits TRL_MAX_LENGTH
    (TRL keeps a too-long pair's start: the solution's end, where the answer is, would go) and VLLM_MAX_MODEL_LEN."""
    from prosetting.core.text import solver_messages

    cfg, name = x.cfg, "lengths"
    if cfg.embedded:
        return _skip_embedded(name)
    fix = (
        f"raise TRL_MAX_LENGTH (a GPU's memory allows it: docs/gpu_8x.md), or lower MAX_NEW_TOKENS={cfg.MAX_NEW_TOKENS}"
    )
    if cfg.MAX_NEW_TOKENS + TURN_END_TOKENS >= cfg.TRL_MAX_LENGTH:
        return Check(
            name,
            "fail",
            f"TRL_MAX_LENGTH={cfg.TRL_MAX_LENGTH} leaves no room for a prompt beside MAX_NEW_TOKENS="
            f"{cfg.MAX_NEW_TOKENS}: TRL would cut the end of every long solution, where the answer is",
            fix,
        )
    questions = x.questions()
    if not questions:
        return Check(name, "skip", "the questions do not read (see `questions`)")
    try:
        count = prompt_token_counter(cfg)
        tokens = [
            (count(solver_messages(q["question"], cfg.SOLVER_SYSTEM_PROMPT)), q.get("id", "?")) for q in questions
        ]
    except Unmeasurable as exc:
        return Check(name, "skip", f"longest prompt not measured: {exc}")
    except Exception as exc:  # a template this renderer does not handle: say so, do not block the run
        return Check(name, "skip", f"longest prompt not measured: {type(exc).__name__}: {exc}")
    longest, qid = max(tokens)
    x.longest_prompt = (longest, qid)
    total = longest + cfg.MAX_NEW_TOKENS + TURN_END_TOKENS
    where = (
        f"the longest prompt of {x.questions_source} ({qid}: {longest} tokens with the chat template and "
        f"SOLVER_SYSTEM_PROMPT) + MAX_NEW_TOKENS={cfg.MAX_NEW_TOKENS} + {TURN_END_TOKENS} for the turn's end = {total}"
    )
    if total > cfg.TRL_MAX_LENGTH:
        return Check(
            name,
            "fail",
            f"TRL_MAX_LENGTH={cfg.TRL_MAX_LENGTH} < {where}: TRL keeps the start of a longer pair and cuts the end of "
            "the solution, where the answer is",
            f"set TRL_MAX_LENGTH to at least {total}, or lower MAX_NEW_TOKENS",
        )
    if cfg.VLLM_MAX_MODEL_LEN and total > cfg.VLLM_MAX_MODEL_LEN:
        return Check(
            name,
            "fail",
            f"VLLM_MAX_MODEL_LEN={cfg.VLLM_MAX_MODEL_LEN} < {where}: the engines could not sample a full solution",
            f"set VLLM_MAX_MODEL_LEN to at least {total} (0: the model's own), or lower MAX_NEW_TOKENS",
        )
    context = _max_positions(cfg)
    if context and total > context:
        return Check(
            name,
            "fail",
            f"SOLVER_MODEL_PATH={cfg.SOLVER_MODEL_PATH} holds {context} tokens (max_position_embeddings) < {where}: "
            "solutions would be cut where the model's context ends",
            f"lower MAX_NEW_TOKENS to at most {context - (total - cfg.MAX_NEW_TOKENS)}",
        )
    return Check(
        name,
        "ok",
        f"{where} <= TRL_MAX_LENGTH={cfg.TRL_MAX_LENGTH} ({cfg.TRL_MAX_LENGTH - total} tokens to spare for the longer "
        "questions the Teacher writes)",
    )


def check_training_precision(x: Inputs) -> Check:
    """Training on GPUs that do bf16 computes in bf16 (the design's precision) over float32 master weights; float32
    compute there is allowed, with a warning (the same weights and optimizer state, about twice the time and the
    activation memory)."""
    cfg, m, name = x.cfg, x.machine, "training precision"
    if cfg.embedded:
        return _skip_embedded(name)
    if cfg.TRL_MIXED_PRECISION != "no":
        return Check(
            name,
            "ok",
            f"TRL_MIXED_PRECISION={cfg.TRL_MIXED_PRECISION}: {cfg.TRL_MIXED_PRECISION} compute over float32 master "
            "weights and optimizer state (LoRA: a frozen base in that precision)",
        )
    if not m.gpus:
        return Check(name, "ok", "no GPU visible here: training runs in float32 on the CPU")
    if m.bf16 is None:
        return Check(name, "skip", "the GPUs did not report their compute capability (nvidia-smi compute_cap)")
    if not m.bf16:
        return Check(name, "ok", "TRL_MIXED_PRECISION=no on GPUs without bf16")
    return Check(
        name,
        "warn",
        f"TRL_MIXED_PRECISION=no: {cfg.TRL_NUM_PROCESSES} training process(es) would compute in float32 on GPUs that "
        f"do bf16 ({m.gpus[0].name}): the same float32 master weights as bf16 compute, about twice the time and the "
        "activation memory",
        "set TRL_MIXED_PRECISION=bf16 (the design's precision)",
    )


def check_collection_backend(x: Inputs) -> Check:
    """COLLECTION_BACKEND=auto on a GPU server collects on vLLM; without it, refuse rather than fall back."""
    cfg, m, name = x.cfg, x.machine, "collection backend"
    if cfg.embedded:
        return _skip_embedded(name)
    if cfg.COLLECTION_BACKEND != "auto":
        return Check(name, "ok", f"COLLECTION_BACKEND={cfg.COLLECTION_BACKEND}")
    if not m.gpus:
        return Check(name, "ok", "no GPU visible here: `auto` samples with transformers on the CPU")
    if not m.vllm:
        return Check(
            name,
            "fail",
            f"COLLECTION_BACKEND=auto: {len(m.gpus)} GPU(s) visible but vLLM is not installed, so collection and "
            "evaluation would fall back to transformers, many times slower",
            "install vLLM (bash scripts/install_vllm.sh), or set COLLECTION_BACKEND=transformers to sample with "
            "transformers on purpose",
        )
    return Check(name, "ok", f"`auto`: vLLM on {len(m.gpus)} GPU(s)")


def check_schedule(x: Inputs) -> Check:
    """Rounds that train, and a Generator asked for that some round writes with."""
    cfg, name = x.cfg, "round schedule"
    if cfg.embedded:
        return _skip_embedded(name)
    g, t = cfg.GENERATOR_TRAIN_START_ROUND, cfg.TOTAL_ROUNDS
    if cfg.QUESTION_WRITER != "teacher" and max(g, 2) >= t:
        return Check(
            name,
            "fail",
            f"QUESTION_WRITER={cfg.QUESTION_WRITER}: the first Generator is trained in round {max(g, 2)} (from round 2 "
            f"on, GENERATOR_TRAIN_START_ROUND={g}) and writes the pool of the round after it; with TOTAL_ROUNDS={t} "
            "no round's pool would be written by it",
            f"set GENERATOR_TRAIN_START_ROUND to at most {t - 1} (and TOTAL_ROUNDS >= 3), or QUESTION_WRITER=teacher",
        )
    if cfg.TRAIN_START_ROUND > t:
        return Check(
            name,
            "warn",
            f"TRAIN_START_ROUND={cfg.TRAIN_START_ROUND} > TOTAL_ROUNDS={t}: no round trains the solver (collection, "
            "grading and writing only)",
            f"set TRAIN_START_ROUND <= {t} to train",
        )
    writes = ""
    if cfg.QUESTION_WRITER != "teacher":
        writes = f"; the Teacher writes the pools of rounds 2-{max(g, 2)}, the Generator from round {max(g, 2) + 1}"
    return Check(name, "ok", f"rounds {cfg.TRAIN_START_ROUND}-{t} train{writes}")


def check_sampling(x: Inputs) -> Check:
    """Several attempts per question need sampling: greedy gives one attempt eight times and no pair."""
    cfg, name = x.cfg, "sampling"
    if cfg.embedded:
        return _skip_embedded(name)
    if cfg.SAMPLING_TEMPERATURE == 0 and cfg.ATTEMPTS_PER_QUESTION > 1:
        return Check(
            name,
            "fail",
            f"SAMPLING_TEMPERATURE=0 samples greedily: the {cfg.ATTEMPTS_PER_QUESTION} attempts at a question would "
            "be one and the same, no question would have a right and a wrong attempt, and no preference pair made",
            "set SAMPLING_TEMPERATURE above 0 (1.0 by default)",
        )
    return Check(name, "ok", f"{cfg.ATTEMPTS_PER_QUESTION} attempts per question at T={cfg.SAMPLING_TEMPERATURE}")


CHECKS: tuple[Callable[[Inputs], Check | list[Check]], ...] = (
    check_questions,
    check_eval_sets,
    check_collection_engines,
    check_trackers,
    check_seed_questions,
    check_teacher_settings,
    check_teacher_task,
    check_evaluation,
    check_lengths,
    check_training_precision,
    check_collection_backend,
    check_schedule,
    check_sampling,
)
