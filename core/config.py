"""The run's configuration: one dataclass, one order of precedence, each value checked against its declaration.

Precedence, lowest to highest: field defaults < `.env` file < process environment < command line
(`--set KEY=VALUE` and the named flags of `scripts/run_training.py`).

    cfg, sources = load_config(env_file=".env", overrides={"TOTAL_ROUNDS": "3"})
    sources.where("SEED")         # 'presets/x.env:12', 'environment', 'command line', 'embedded profile'

Every key given is used or refused: a settings file's key that is neither a setting nor another tool's
(OTHER_TOOL_PREFIXES) stops the run with its file, line and the nearest setting; the design documents' names are
read as ours (DESIGN_ALIASES) or refused with what replaced them (RETIRED, DESIGN_FIXED). Sources also holds the
values of the settings file that the environment overrode, which the dry run and the run's log warn about.

The checks across the keys of one stage's group are that stage's, next to its code (Stage.checks, run by
processors/stages.check_settings); an entry point runs both before anything starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from prosetting.core.models import MODEL_KEYS, check_model_setting

log = logging.getLogger(__name__)

SECRET_KEYS = frozenset({"TEACHER_API_KEY", "TEACHER_WRITER_API_KEY"})
REDACTED = "***redacted***"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the key, its source and what was expected."""


def _f(
    default: Any,
    help: str,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    meta = {"help": help, "choices": choices, "min": minimum, "max": maximum}
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Every setting of a ProSetting run. Field names are the environment/.env keys."""

    # --- Run and workspace ---
    WORKSPACE_DIR: str = _f(
        "./workspace", "Folder holding every file of the run (state, data, datasets, checkpoints, logs)."
    )
    TOTAL_ROUNDS: int = _f(5, "Number of co-evolution rounds.", minimum=1)
    TRAIN_START_ROUND: int = _f(
        3, "First round that trains the solver; earlier rounds only accumulate preference pairs.", minimum=1
    )
    SEED: int = _f(42, "Seed for sampling, pair selection, splits, question writing and training.", minimum=0)
    LOG_LEVEL: str = _f("INFO", "Console log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    # --- Models and data ---
    SOLVER_MODEL_PATH: str = _f(
        "",
        "Initial solver: a Hugging Face model folder or a Hub id (e.g. Qwen/Qwen3-8B, fetched once through the Hub "
        "cache); empty builds and warm-starts the embedded tiny solver.",
    )
    SOLVER_MODEL_REVISION: str = _f(
        "",
        "Branch, tag or commit of a Hub id in SOLVER_MODEL_PATH; empty is main. The resolved commit is recorded and "
        "kept on resume.",
    )
    QUESTIONS_FILE: str = _f(
        "",
        "Seed questions, JSON list or JSON Lines with `question` and `answer`; empty uses the shipped arithmetic "
        "seeds.",
    )
    HELDOUT_FILE: str = _f(
        "",
        "Held-out evaluation set (JSON Lines, `question` and `answer`), never trained on; empty uses the embedded one "
        "when the solver is embedded.",
    )

    # --- Collection ---
    ATTEMPTS_PER_QUESTION: int = _f(8, "Sampled solutions per question in collection.", minimum=1)
    COLLECTION_BACKEND: str = _f(
        "auto",
        "Engine that samples solutions and runs held-out evaluation: `vllm`, `transformers`, or `auto` (vLLM when it "
        "is installed and a GPU is visible, else transformers).",
        choices=("auto", "transformers", "vllm"),
    )
    COLLECTION_BATCH_SIZE: int = _f(
        16, "Questions per collection batch; a batch is the unit that a resume never redoes.", minimum=1
    )
    SAMPLING_TEMPERATURE: float = _f(1.0, "Sampling temperature for collection.", minimum=0.0)
    SAMPLING_TOP_P: float = _f(1.0, "Nucleus sampling top-p for collection.", minimum=0.0, maximum=1.0)
    MAX_NEW_TOKENS: int = _f(
        4096,
        "Longest solution sampled, in collection and evaluation; longer ones are marked truncated. 4096 is the paper "
        "recipe's (presets/paper_*.env): room for a full competition solution from a base model.",
        minimum=1,
    )
    SOLVER_SYSTEM_PROMPT: str = _f(
        "Please reason step by step, and put your final answer within \\boxed{}.",
        "System message given to the solver (a chat template may ignore it).",
    )
    ANSWER_EXTRACTION: str = _f(
        "boxed",
        "How the solver's final answer is read from a solution, in collection and evaluation: `boxed` (the last "
        "\\boxed{}, nothing else: the paper's, which checks the final \\boxed{} against the reference) or `auto` (the "
        "last \\boxed{}, else the number after 'the answer is', else the last number of an untruncated solution: what "
        "a pretrained chat model writes).",
        choices=("boxed", "auto"),
    )
    SAMPLING_STOP: str = _f(
        "",
        "Stop strings for collection, separated by `||` (e.g. `</answer>||Question:`); the stop string is not kept in "
        "the attempt.",
    )
    COLLECTION_BATCH_TIMEOUT: float = _f(
        1800.0,
        "Seconds one batch may take on an engine before the engine counts as hung, is killed and the batch goes to a "
        "fresh one.",
        minimum=1.0,
    )
    COLLECTION_ENGINE_START_TIMEOUT: float = _f(
        1800.0, "Seconds an engine may take to load the model before it counts as failed.", minimum=1.0
    )
    COLLECTION_MAX_BATCH_RETRIES: int = _f(
        2,
        "Fresh workers one failed batch gets before the stage fails (the round loop then retries the stage).",
        minimum=0,
    )

    # --- Collection engines ---
    COLLECTION_EXECUTOR: str = _f(
        "local",
        "Where vLLM engines run: `local` (one worker process per engine on this machine) or `ray` (one Ray actor per "
        "engine, across a cluster).",
        choices=("local", "ray"),
    )
    RAY_ADDRESS: str = _f(
        "",
        "Ray cluster to join with COLLECTION_EXECUTOR=ray (e.g. `auto` or `ray://head:10001`); empty starts a local "
        "Ray instance and stops it after the stage.",
    )
    PHYSICAL_SOLVER_GPU: str = _f(
        "", "Comma-separated GPU ids for collection engines; empty uses every visible GPU, or the CPU."
    )
    TENSOR_PARALLEL_SIZE: int = _f(
        1,
        "GPUs per vLLM engine: PHYSICAL_SOLVER_GPU is cut into groups of this size, one independent engine per group.",
        minimum=1,
    )
    COLLECTION_CPU_ENGINES: int = _f(
        1,
        "vLLM engines on a machine without GPUs, each bound to its own share of the cores (the CPU stand-in for one "
        "engine per GPU).",
        minimum=1,
    )
    VLLM_GPU_MEMORY_UTILIZATION: float = _f(
        0.85,
        "Fraction of each GPU's memory a vLLM engine may take (weights, activations, KV cache); capped at 0.3 on the "
        "CPU.",
        minimum=0.05,
        maximum=1.0,
    )
    VLLM_MAX_MODEL_LEN: int = _f(
        0,
        "Longest prompt+solution a vLLM engine accepts; 0 uses the model's max_position_embeddings. Lower it to fit a "
        "larger KV cache.",
        minimum=0,
    )
    VLLM_MAX_NUM_SEQS: int = _f(0, "Most sequences a vLLM engine runs at once; 0 keeps vLLM's default.", minimum=0)
    VLLM_ENFORCE_EAGER: bool = _f(
        False, "Disable CUDA graphs in vLLM (faster start, slower generation; try it when an engine fails to start)."
    )
    VLLM_DTYPE: str = _f(
        "auto",
        "Weights dtype of vLLM engines: auto (the model's; float32 on the CPU), bfloat16, float16 or float32.",
        choices=("auto", "bfloat16", "float16", "float32"),
    )
    VLLM_CPU_KVCACHE_SPACE: float = _f(
        1.0, "GiB of KV cache per vLLM engine on the CPU build (VLLM_CPU_KVCACHE_SPACE).", minimum=0.1
    )

    # --- Teacher ---
    TEACHER_BACKEND: str = _f(
        "builtin",
        "Who grades and writes questions: `builtin` (the BUILTIN_TASK family), `rule` (math-verify grading only) or "
        "`llm` (OpenAI-compatible endpoint).",
        choices=("builtin", "rule", "llm"),
    )
    BUILTIN_TASK: str = _f(
        "arithmetic",
        "Task of the built-in Teacher: `arithmetic` (column arithmetic, data/) or `word_problems` (English word "
        "problems, data/word_problems/: set QUESTIONS_FILE and HELDOUT_FILE to its seeds.jsonl and heldout.jsonl).",
        choices=("arithmetic", "word_problems"),
    )
    TEACHER_BASE_URL: str = _f("", "Base URL of the Teacher's OpenAI-compatible API, e.g. http://host:8000/v1.")
    TEACHER_API_KEY: str = _f("", "API key of the Teacher endpoint (secret: never logged or saved).")
    TEACHER_MODEL_NAME: str = _f("", "Model name served by the Teacher endpoint.")
    TEACHER_WRITER_BASE_URL: str = _f(
        "", "Base URL of the Teacher that writes and re-checks questions (Teacher2); empty uses TEACHER_BASE_URL."
    )
    TEACHER_WRITER_MODEL_NAME: str = _f(
        "", "Model name of the question-writing Teacher; empty uses TEACHER_MODEL_NAME."
    )
    TEACHER_WRITER_API_KEY: str = _f(
        "",
        "API key of the question-writing Teacher (secret); empty uses TEACHER_API_KEY when the writer's base URL is "
        "the grading one, no key otherwise.",
    )
    TEACHER_WRITING_TEMPERATURE: float = _f(
        0.7, "Sampling temperature of question writing (grading and re-checks use 0).", minimum=0.0, maximum=2.0
    )
    TEACHER_CONCURRENT_WORKERS: int = _f(32, "Concurrent Teacher calls in grading and enhancement.", minimum=1)
    TEACHER_TIMEOUT: float = _f(120.0, "Seconds before one Teacher request is abandoned and retried.", minimum=1.0)
    TEACHER_MAX_RETRIES: int = _f(3, "Retries of one Teacher request, with exponential backoff.", minimum=0)
    TEACHER_MAX_TOKENS: int = _f(
        0, "Most tokens in one Teacher answer (max_tokens); 0 leaves it to the endpoint.", minimum=0
    )
    TEACHER_STRUCTURED_OUTPUT: bool = _f(
        True,
        "Send each Teacher request's reply schema as response_format (structured output); an endpoint that refuses "
        "it gets plain requests after one warning.",
    )
    TEACHER_BATCH_API: bool = _f(
        False,
        "Send each Teacher stage's first requests through the endpoint's Files and Batches API (often half the "
        "price), then finish with ordinary calls.",
    )
    TEACHER_BATCH_POLL_SECONDS: float = _f(30.0, "Seconds between polls of a submitted Teacher batch.", minimum=0.01)
    TEACHER_CACHE_DIR: str = _f(
        "",
        "Folder of the persistent Teacher call cache (teacher_calls.sqlite3, an SQLite database); empty uses "
        "<workspace>/cache. Share one across runs to never pay for a call twice.",
    )
    TEACHER_MAX_RPM: int = _f(
        0, "Most Teacher requests per minute, shared by grading and writing; 0 means no limit.", minimum=0
    )
    TEACHER_MAX_TPM: int = _f(
        0, "Most Teacher tokens per minute (prompt estimate plus 512 for the answer); 0 means no limit.", minimum=0
    )
    TEACHER_MAX_FAILURE_FRACTION: float = _f(
        0.1,
        "A Teacher stage (grading, writing, re-checks) fails only when more than this fraction of its questions got "
        "no usable answer from the endpoint; the rest are retried on resume.",
        minimum=0.0,
        maximum=1.0,
    )
    TEACHER_MAX_UNUSABLE_FRACTION: float = _f(
        0.5,
        "A Teacher stage stops before its next request, and fails, once more than this fraction of its replies were "
        "not in the JSON shape asked for (counted from 10 unusable replies on); 1 turns the check off.",
        minimum=0.0,
        maximum=1.0,
    )
    TEACHER_PRICE_PER_MTOK_IN: float = _f(
        0.0,
        "Price per million prompt tokens of the Teacher endpoint, for the cost in reports; 0 leaves cost out.",
        minimum=0.0,
    )
    TEACHER_PRICE_PER_MTOK_OUT: float = _f(
        0.0, "Price per million completion tokens of the Teacher endpoint, for the cost in reports.", minimum=0.0
    )

    # --- Grading ---
    GRADING_MODE: str = _f(
        "hybrid",
        "How attempts are graded: `rule` (math-verify only), `hybrid` (math-verify where it matches the reference, "
        "the LLM Teacher for the rest) or `llm` (the LLM Teacher for every attempt).",
        choices=("rule", "hybrid", "llm"),
    )
    TEACHER_GRADING_UNIT: str = _f(
        "question",
        "LLM grading requests: `question` (one per question, all its undecided attempts) or `attempt` (one per "
        "attempt).",
        choices=("question", "attempt"),
    )

    # --- DPO export ---
    MAX_PAIRS_PER_QUESTION: int = _f(
        0,
        "Cap on (chosen, rejected) pairs per question, sampled deterministically; 0, the default, keeps every correct "
        "x incorrect pair (the design's Cartesian product).",
        minimum=0,
    )
    DPO_TRUNCATE_REJECTED: bool = _f(
        False,
        "Cut each rejected attempt after its first step (steps end at ';' or a newline) that differs from the chosen "
        "one, so the preference term pushes down the error and not the correct work that follows it.",
    )
    VALIDATION_FRACTION: float = _f(
        0.1, "Fraction of questions (not pairs) put in validation.parquet.", minimum=0.0, maximum=0.5
    )

    # --- Training the Solver ---
    TRL_NUM_PROCESSES: int = _f(1, "Processes `accelerate launch` starts (one per GPU on a server).", minimum=1)
    TRL_MIXED_PRECISION: str = _f(
        "no", "accelerate mixed precision; bf16 on GPUs that support it.", choices=("no", "fp16", "bf16")
    )
    TRL_ACCELERATE_CONFIG: str = _f(
        "", "Path to an accelerate config file (e.g. FSDP); empty builds the launch from the TRL_* keys."
    )
    TRL_LEARNING_RATE: float = _f(
        5e-7,
        "DPO learning rate. 5e-7 is the paper recipe's for full-weight DPO of an 8B model (the alignment handbook's "
        "Zephyr-7B rate; the design gives none); LoRA takes a higher one (presets/paper_qwen3_8b_1gpu_lora.env: 5e-6).",
        minimum=0.0,
    )
    TRL_BETA: float = _f(0.1, "DPO beta (strength of the KL constraint to the reference model).", minimum=0.0)
    TRL_LOSS_TYPE: str = _f(
        "sigmoid",
        "Comma-separated TRL loss_type terms: `sigmoid` is plain DPO (the paper's Solver objective), `sigmoid,sft` "
        "adds NLL on the chosen side.",
    )
    TRL_LOSS_WEIGHTS: str = _f("", "Comma-separated weights, one per loss term; empty weighs each term 1.")
    TRL_WARMUP_RATIO: float = _f(
        0.1,
        "Fraction of each training launch spent warming the learning rate up from 0 (the optimizer starts fresh every "
        "round); 0.1 is the paper recipe's (the alignment handbook's DPO warm-up).",
        minimum=0.0,
        maximum=0.9,
    )
    TRL_NUM_EPOCHS: float = _f(
        1.0, "Epochs over the accumulated pairs per trained round (unless TRL_MAX_STEPS is set).", minimum=0.0
    )
    TRL_MAX_STEPS: int = _f(
        0,
        "Optimizer steps per trained round, whatever the number of pairs (TRL max_steps: fewer pairs are seen more "
        "often, more are subsampled); 0 lets TRL_NUM_EPOCHS decide.",
        minimum=0,
    )
    TRL_BATCH_SIZE: int = _f(16, "Per-device train batch size.", minimum=1)
    TRL_GRAD_ACCUM: int = _f(1, "Gradient accumulation steps.", minimum=1)
    TRL_MAX_LENGTH: int = _f(
        5120,
        "Longest prompt+completion in tokens; longer pairs are truncated by TRL. 5120 is the paper recipe's: "
        "MAX_NEW_TOKENS' 4096 plus 1024 tokens of prompt.",
        minimum=8,
    )
    TRL_SAVE_STEPS: int = _f(0, "Save a resumable TRL checkpoint every N steps (0: only the final model).", minimum=0)
    TRL_ACCUMULATE_ROUNDS: bool = _f(
        True, "Train on the pairs of every round so far (true) or only the current round (false)."
    )
    TRL_DISTRIBUTED: str = _f(
        "auto",
        "Launch preset written as training_runs/rX/accelerate_config.yaml: `auto` (fsdp on several GPUs, single on "
        "one, ddp for several CPU processes), `single`, `ddp`, `fsdp` (FSDP2) or `deepspeed` (ZeRO-3; needs `pip "
        "install deepspeed`).",
        choices=("auto", "single", "ddp", "fsdp", "deepspeed"),
    )
    PHYSICAL_DPO_GPU: str = _f("", "Comma-separated GPU ids training uses; empty uses every visible GPU (or the CPU).")
    TRL_GRADIENT_CHECKPOINTING: bool = _f(
        False,
        "Recompute activations in the backward pass (FSDP activation checkpointing under fsdp): less memory, about a "
        "third more compute.",
    )
    TRL_REF_MODEL: str = _f(
        "previous",
        "DPO reference: `previous` (the round's starting solver), `initial` (the first solver) or `none` (only with "
        "reference-free losses, TRL_LOSS_TYPE=sft: no reference model is kept).",
        choices=("previous", "initial", "none"),
    )
    TRL_PRECOMPUTE_REF_LOG_PROBS: bool = _f(
        False,
        "Compute the reference log-probs once before training and drop the reference model (saves its memory; not "
        "with fsdp, trl issue 6470).",
    )
    TRL_REPORT_TO: str = _f(
        "none",
        "Comma list of trackers TRL reports to: none, tensorboard, wandb, trackio (logs under training_runs/rX/; "
        "tracker keys from the environment only).",
    )
    TRL_LORA_R: int = _f(
        0,
        "LoRA rank (peft); 0 trains every weight. The adapter is merged into the model before it leaves the stage.",
        minimum=0,
    )
    TRL_LORA_ALPHA: int = _f(16, "LoRA alpha (scale alpha/r).", minimum=1)
    TRL_LORA_TARGET_MODULES: str = _f("all-linear", "Comma list of module names LoRA adapts, or `all-linear`.")

    # --- Multi-machine training ---
    NUM_MACHINES: int = _f(
        1,
        "Machines training runs on; above 1 the stage starts the others' launches (srun in a Slurm allocation, else "
        "ssh to TRAIN_HOSTS).",
        minimum=1,
    )
    MACHINE_RANK: int = _f(0, "This machine's rank among NUM_MACHINES (0 is the one running the loop).", minimum=0)
    MAIN_PROCESS_IP: str = _f(
        "", "Address of machine rank 0, reachable from every machine (required when NUM_MACHINES > 1)."
    )
    MAIN_PROCESS_PORT: int = _f(
        0, "Rendezvous port on MAIN_PROCESS_IP; 0 picks a free one (single machine only).", minimum=0, maximum=65535
    )
    TRAIN_HOSTS: str = _f(
        "",
        "Comma list of the other machines' hosts for ssh (ranks 1..NUM_MACHINES-1, in order); empty inside Slurm uses "
        "srun.",
    )

    # --- Next round's pool ---
    CURRICULUM: str = _f(
        "teacher",
        "Where each next pool comes from: `teacher` (questions written from this round's results, plus replays: the "
        "method), `static` (the seed pool again every round, nothing written: the ablation that shows what the "
        "Teacher adds) or `nonadaptive` (the Teacher writes from parents and policies drawn at random, never looking "
        "at the Solver's results, and the pool keeps a random subset: the control that shows what adapting adds).",
        choices=("teacher", "static", "nonadaptive"),
    )
    NONADAPTIVE_PLAN: str = _f(
        "",
        'With CURRICULUM=nonadaptive, a JSON file of how many questions to write per round and policy ({"rounds": '
        '{"1": {"stepping_stone": 30, ...}}}, e.g. what the full loop wrote: benchmarks/ablations.py makes it); empty '
        "writes NEW_QUESTIONS_PER_PARENT per pool question, each with a random policy.",
    )
    REPLAY_FAILED: bool = _f(
        True,
        "Put every question the solver has not mastered back into the next pool (Socratic-Zero's replay of failures).",
    )
    REPLAY_RATIO: float = _f(
        0.2, "Fraction of mastered questions replayed into the next pool.", minimum=0.0, maximum=1.0
    )
    NEW_QUESTIONS_PER_PARENT: int = _f(
        1,
        "Questions the Teacher writes per question and writing policy (stepping stone for too-difficult, error "
        "sibling for learning, harder variant for mastered and nearly mastered).",
        minimum=0,
    )
    WRITE_POLICIES: str = _f(
        "stepping_stone,error_sibling,harder_variant",
        "Writing policies in use, comma-separated: `stepping_stone` (too-difficult questions), `error_sibling` "
        "(learning zone), `harder_variant` (mastered and nearly mastered); a question whose policy is left out gets "
        "nothing written and is replayed as it is.",
    )
    HARDER_VARIANT: str = _f(
        "raise_one",
        "How the built-in Teacher makes a harder variant: `raise_one` (one more digit, operand or carries, onto a "
        "rung of the ladder: 2-digit sums with carries lead to 3-operand and 3-digit sums) or `next_rung` (the next "
        "rung of the ladder).",
        choices=("raise_one", "next_rung"),
    )
    NEAR_MASTERY: float = _f(
        0.75,
        "A learning-zone question solved at least this often also gets a harder variant besides its error sibling; 1 "
        "leaves harder variants to mastered questions only.",
        minimum=0.0,
        maximum=1.0,
    )
    MAX_POOL_SIZE: int = _f(
        0,
        "Upper bound on the next round's pool; 0 means no bound. Set without MAX_POOL_SIZE_BY_ROUND, it caps every "
        "round (that key's default schedule is then not applied). What is kept over it: POOL_CAP.",
        minimum=0,
    )
    MAX_POOL_SIZE_BY_ROUND: str = _f(
        "2:200,3:250",
        "Pool caps per round, `ROUND:SIZE` entries separated by commas: the pool of round R is capped by the entry of "
        "the largest listed round <= R (0: no bound); rounds before the first entry use MAX_POOL_SIZE. The default is "
        "the design's growth (001's Data Flow: ~200 questions in round 2, ~250 in round 3 and after); it applies only "
        "when MAX_POOL_SIZE is not set either, and empty leaves MAX_POOL_SIZE alone.",
    )
    POOL_CAP: str = _f(
        "stratified",
        "How a pool over MAX_POOL_SIZE is cut: `stratified` (difficulty levels, or seed lineages where levels are "
        "unknown, share the cap in proportion to how far the Solver is from mastering each, 1 - its success rate this "
        "round; within one, unmastered questions first, then new, then mastered replays) or `new_first` (new "
        "questions first, replays cut from the end).",
        choices=("stratified", "new_first"),
    )

    # --- Generator ---
    QUESTION_WRITER: str = _f(
        "teacher",
        "Who writes the next round's questions: the Teacher, the newest trained Generator, or both (mixed).",
        choices=("teacher", "generator", "mixed"),
    )
    GENERATOR_SHARE: float = _f(
        0.5,
        "With QUESTION_WRITER=mixed, the fraction of parent questions the Generator writes from.",
        minimum=0.0,
        maximum=1.0,
    )
    GENERATOR_MODEL_PATH: str = _f(
        "",
        "Base model of the Generator, a folder or a Hub id; empty starts it from the initial solver (for the embedded "
        "default, the warm-started tiny solver).",
    )
    GENERATOR_MODEL_REVISION: str = _f("", "Branch, tag or commit of a Hub id in GENERATOR_MODEL_PATH; empty is main.")
    GENERATOR_TRAIN_START_ROUND: int = _f(
        2, "First round whose end trains the Generator (on the utility-weighted records exported so far).", minimum=1
    )
    GENERATOR_UTILITY_MU: float = _f(
        0.5,
        "Success rate at which a Teacher-written question is most useful to the Generator (utility peak).",
        minimum=0.0,
        maximum=1.0,
    )
    GENERATOR_UTILITY_SIGMA: float = _f(
        0.2,
        "Width of the utility U = exp(-(s - mu)^2 / (2 sigma^2)) weighting Generator training records.",
        minimum=1e-6,
    )
    GENERATOR_LEARNING_RATE: float = _f(1e-5, "Learning rate of the Generator's weighted SFT.", minimum=0.0)
    GENERATOR_NUM_EPOCHS: float = _f(
        2.0,
        "Epochs over each round's new weighted records (each trained Generator continues from the previous one).",
        minimum=0.0,
    )
    GENERATOR_TEMPERATURE: float = _f(
        0.7, "Sampling temperature of the Generator when it writes questions.", minimum=0.0
    )
    GENERATOR_TOP_P: float = _f(
        1.0, "Nucleus sampling top-p of the Generator when it writes questions.", minimum=0.0, maximum=1.0
    )
    GENERATOR_MAX_NEW_TOKENS: int = _f(
        1024,
        "Longest text the Generator writes for one question (question, worked solution and answer); a longer one is "
        "cut and usually fails the question check. 1024 is the paper recipe's: room for a competition question.",
        minimum=1,
    )

    # --- Evaluation ---
    EVAL_SETS: str = _f(
        "",
        "Named evaluation sets, measured at the start and after every trained round beside the held-out set: "
        "`NAME=SOURCE` entries separated by commas, a SOURCE being a file, a local dataset folder or "
        "hub:ID[:CONFIG[:SPLIT]] (docs/evaluation.md).",
    )
    EVAL_K: int = _f(
        32,
        "Samples per question for Mean@k on every evaluation set (greedy accuracy is measured too); 0 skips "
        "evaluation. Was HELDOUT_K.",
        minimum=0,
    )
    EVAL_TEMPERATURE: float = _f(0.7, "Sampling temperature for Mean@k.", minimum=0.0)

    # --- Embedded solver warm start ---
    WARMSTART_STEPS: int = _f(
        600, "Most SFT steps of the embedded solver's warm start (built once per workspace).", minimum=0
    )
    WARMSTART_TARGET_ACCURACY: float = _f(
        0.35,
        "The warm start stops at the first check (every 25 steps) where greedy accuracy on fresh validation problems "
        "reaches this; 0 runs all WARMSTART_STEPS.",
        minimum=0.0,
        maximum=1.0,
    )

    # --- Unattended operation ---
    AUTO_RETRY_ENABLED: bool = _f(True, "Retry a failed stage automatically.")
    AUTO_RETRY_MAX: int = _f(2, "Retries of one failed stage before giving up on it.", minimum=0)
    AUTO_RETRY_INTERVAL: float = _f(30.0, "Seconds between retries of a failed stage.", minimum=0.0)
    AUTO_CONTINUE_ON_FAILURE: bool = _f(
        False, "After the retries, move on to the next round (true) or stop the run (false)."
    )

    # ------------------------------------------------------------------
    def validate(self) -> None:
        """Each value against its declared choices and range, and the run-wide settings (models, question
        files); raises ConfigError naming the key. The checks across the keys of one stage's group live next to
        that stage's code (Stage.checks, run by processors/stages.check_settings)."""
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise ConfigError(f"{f.name}: expected one of {', '.join(meta['choices'])}, got {value!r}")
            if meta.get("min") is not None and value < meta["min"]:
                raise ConfigError(f"{f.name}: expected a value >= {meta['min']}, got {value!r}")
            if meta.get("max") is not None and value > meta["max"]:
                raise ConfigError(f"{f.name}: expected a value <= {meta['max']}, got {value!r}")
        for key, revision_key in MODEL_KEYS:
            problem = check_model_setting(key, getattr(self, key), getattr(self, revision_key))
            if problem:
                raise ConfigError(problem)
        for key in ("QUESTIONS_FILE", "HELDOUT_FILE"):
            path = getattr(self, key)
            if path and not Path(path).is_file():
                raise ConfigError(f"{key}: file not found: {path}")

    def pool_caps(self) -> dict[int, int]:
        """MAX_POOL_SIZE_BY_ROUND as {round: cap}; raises ConfigError naming the bad entry."""
        caps: dict[int, int] = {}
        for entry in (e.strip() for e in self.MAX_POOL_SIZE_BY_ROUND.split(",") if e.strip()):
            r, sep, size = (x.strip() for x in entry.partition(":"))
            if not (sep and r.isdigit() and size.isdigit() and int(r) >= 1) or int(r) in caps:
                raise ConfigError(
                    f"MAX_POOL_SIZE_BY_ROUND: expected ROUND:SIZE entries, each round once and >= 1, separated by "
                    f"commas (e.g. 2:200,3:250), got {entry!r} in {self.MAX_POOL_SIZE_BY_ROUND!r}"
                )
            caps[int(r)] = int(size)
        return caps

    def pool_cap(self, round_: int) -> int:
        """The cap on round `round_`'s pool (0: no bound): MAX_POOL_SIZE_BY_ROUND's entry of the largest listed
        round <= round_, else MAX_POOL_SIZE."""
        listed = [r for r in self.pool_caps() if r <= round_]
        return self.pool_caps()[max(listed)] if listed else self.MAX_POOL_SIZE

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return tuple(t for t in self.SAMPLING_STOP.split("||") if t)

    @property
    def write_policies(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.WRITE_POLICIES.split(",") if t.strip())

    @property
    def loss_types(self) -> list[str]:
        return [t.strip() for t in self.TRL_LOSS_TYPE.split(",") if t.strip()]

    @property
    def loss_weights(self) -> list[float]:
        try:
            return [float(w) for w in self.TRL_LOSS_WEIGHTS.split(",") if w.strip()]
        except ValueError as exc:
            raise ConfigError(
                f"TRL_LOSS_WEIGHTS: expected comma-separated numbers, got {self.TRL_LOSS_WEIGHTS!r}"
            ) from exc

    @property
    def workspace(self) -> Path:
        return Path(self.WORKSPACE_DIR).expanduser().resolve()

    def writer_endpoint(self) -> tuple[str, str, str]:
        """(base URL, model, API key) of the Teacher that writes and re-checks questions: each TEACHER_WRITER_*
        falls back to the grading Teacher's; the grading key only goes to the grading endpoint's URL."""
        url = self.TEACHER_WRITER_BASE_URL or self.TEACHER_BASE_URL
        same_url = url.rstrip("/") == self.TEACHER_BASE_URL.rstrip("/")
        key = self.TEACHER_WRITER_API_KEY or (self.TEACHER_API_KEY if same_url else "")
        return url, self.TEACHER_WRITER_MODEL_NAME or self.TEACHER_MODEL_NAME, key

    @property
    def embedded(self) -> bool:
        """True when the run uses the embedded tiny solver (no SOLVER_MODEL_PATH given)."""
        return not self.SOLVER_MODEL_PATH

    @property
    def uses_generator(self) -> bool:
        """True when some round trains the Generator, for the rounds after it to write with: QUESTION_WRITER asks
        for it, questions are written (CURRICULUM is not static) and its first training round, round
        GENERATOR_TRAIN_START_ROUND but at least 2 (round 1 has no graded written questions), is within
        TOTAL_ROUNDS."""
        return (
            self.QUESTION_WRITER != "teacher"
            and self.CURRICULUM != "static"
            and max(self.GENERATOR_TRAIN_START_ROUND, 2) <= self.TOTAL_ROUNDS
        )

    def models_in_use(self) -> list[tuple[str, str]]:
        """The (model key, revision key) pairs of MODEL_KEYS the run loads: each one set, the Generator's only when
        some round uses it (uses_generator), so a run downloads nothing for a role no round plays."""
        return [
            (key, revision_key)
            for key, revision_key in MODEL_KEYS
            if getattr(self, key) and (key != "GENERATOR_MODEL_PATH" or self.uses_generator)
        ]

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if redact:
            for key in SECRET_KEYS:
                if out.get(key):
                    out[key] = REDACTED
        return out


def default_of(key: str) -> Any:
    """Config's default for `key` (the one place defaults live), e.g. where a saved configuration lacks it."""
    return Config.__dataclass_fields__[key].default


def describe_fields() -> list[tuple[str, Any, str]]:
    """(key, default, help) for every setting, in declaration order."""
    return [(f.name, f.default, f.metadata["help"]) for f in fields(Config)]


# The groups of Config, in its field order: each starts at its first key and runs to the next group's. The one
# source of the grouping in --help, .env.example and docs/configuration.md (the class's `# --- title ---` lines
# repeat the titles for its reader; a test keeps them equal).
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("WORKSPACE_DIR", "Run and workspace", "Where the run lives, how many rounds, which rounds train, the seed."),
    (
        "SOLVER_MODEL_PATH",
        "Models and data",
        "The initial solver and the question files; empty uses the embedded default.",
    ),
    ("ATTEMPTS_PER_QUESTION", "Collection", "Stage `collect`: the solver's sampled attempts at every pool question."),
    (
        "COLLECTION_EXECUTOR",
        "Collection engines",
        "Where collection and evaluation run: vLLM engines, their GPUs and memory, a Ray cluster.",
    ),
    (
        "TEACHER_BACKEND",
        "Teacher",
        "The Teacher that grades and writes questions: its endpoint, limits, retries, cache, batches and price.",
    ),
    ("GRADING_MODE", "Grading", "Stage `grade`: how each attempt is judged right or wrong."),
    ("MAX_PAIRS_PER_QUESTION", "DPO export", "Stage `export`: (chosen, rejected) pairs from the graded attempts."),
    ("TRL_NUM_PROCESSES", "Training the Solver", "Stage `train`: TRL DPO through `accelerate launch`."),
    ("NUM_MACHINES", "Multi-machine training", "Stage `train` on several machines (Slurm or ssh)."),
    (
        "CURRICULUM",
        "Next round's pool",
        "Stage `enhance`: the next round's questions, written, replayed and capped.",
    ),
    (
        "QUESTION_WRITER",
        "Generator",
        "The Generator: trained on the Teacher's questions weighted by their utility, it can write in its place.",
    ),
    ("EVAL_SETS", "Evaluation", "Held-out and named evaluation sets, at the start and after every trained round."),
    (
        "WARMSTART_STEPS",
        "Embedded solver warm start",
        "The embedded tiny solver's SFT warm start (SOLVER_MODEL_PATH empty).",
    ),
    ("AUTO_RETRY_ENABLED", "Unattended operation", "What the round loop does when a stage fails."),
)


def describe_groups() -> list[tuple[str, str, list[tuple[str, Any, str]]]]:
    """(title, what it covers, [(key, default, help), ...]) for every group of GROUPS, in field order."""
    starts = {first: (title, about) for first, title, about in GROUPS}
    out: list[tuple[str, str, list[tuple[str, Any, str]]]] = []
    for key, default, help_text in describe_fields():
        if key in starts:
            out.append((*starts[key], []))
        out[-1][2].append((key, default, help_text))
    return out


def group_keys(title: str) -> list[str]:
    """The keys of the Config group titled `title` (GROUPS), in field order."""
    for group, _, keys in describe_groups():
        if group == title:
            return [key for key, _, _ in keys]
    raise ValueError(f"no Config group titled {title!r}; the groups are {', '.join(t for _, t, _ in GROUPS)}")


# The embedded default's own defaults, sized so that the whole run (build, warm start, five rounds) takes
# minutes on 2 CPU cores. They apply only when SOLVER_MODEL_PATH is empty, and only to keys set nowhere
# else: any value from .env, the environment or the command line wins. The training values come from the
# calibration in benchmarks/calibrate_embedded.py (docs/embedded_default.md): every round trains on
# its own fresh pairs, the learning rate warms up because the optimizer starts fresh each round, and the loss
# is the NLL term alone on the chosen side of the learning-zone pairs: the DPO term pulled the tiny solver
# down at weight 1 and made the gain seed-dependent at weight 0.1. Every trained round takes TRL_MAX_STEPS steps
# whatever its pair count, so curricula are compared (benchmarks/ablations.py) at equal training. The
# character-level Generator has never seen English text: its prompt costs it 7 nats a character at first, and it
# needs about a hundred steps at a high learning rate on round 1's fifty-odd records before most of what it
# writes parses (docs/generator.md). The rest keep the toy's sizes where Config's defaults are the paper's recipe
# for a real model: short arithmetic solutions and questions, 8 pairs per question, one pool cap for every round.
# Each entry differs from Config's default (a test keeps it so), and tests/test_settings_sources.py pins the
# embedded run's whole resolved configuration.
EMBEDDED_PROFILE: dict[str, Any] = {
    "MAX_NEW_TOKENS": 64,
    "COLLECTION_BATCH_SIZE": 64,
    "MAX_PAIRS_PER_QUESTION": 8,
    "MAX_POOL_SIZE": 200,
    "MAX_POOL_SIZE_BY_ROUND": "",
    "TRAIN_START_ROUND": 1,
    "TRL_ACCUMULATE_ROUNDS": False,
    "TRL_BATCH_SIZE": 32,
    "TRL_LEARNING_RATE": 5e-4,
    "TRL_WARMUP_RATIO": 0.2,
    "TRL_LOSS_TYPE": "sft",
    "TRL_MAX_LENGTH": 1024,
    "EVAL_K": 4,
    "TRL_MAX_STEPS": 20,
    "GENERATOR_LEARNING_RATE": 3e-3,
    "GENERATOR_NUM_EPOCHS": 60.0,
    "GENERATOR_MAX_NEW_TOKENS": 160,
}

# Keys that were renamed: the old name is still read (the new one wins when both are set).
RENAMED = {"HELDOUT_K": "EVAL_K"}

# The design documents' names (000 and 001: the .env lines and the "Default Configuration" dict, upper-cased) that
# mean one of ours: read as it, with a log line (ours wins when both are set).
DESIGN_ALIASES = {"MAX_ROUNDS": "TOTAL_ROUNDS"}

# The design documents' names for what this build does otherwise: refused, saying what replaced them and why.
RETIRED = {
    "PHYSICAL_GRPO_GPU": "this build has no GRPO trainer: the solver trains by DPO (TRL), on the GPUs of "
    "PHYSICAL_DPO_GPU (empty: every visible one); set PHYSICAL_DPO_GPU instead",
    "SAVE_ROUNDS": "the design itself marks it deprecated (001): every trained round's solver is saved "
    "(checkpoints/merged_solver_rX/) and every stage is checkpointed as it finishes, so there are no rounds to "
    "choose; for checkpoints every N steps inside a training launch set TRL_SAVE_STEPS; remove SAVE_ROUNDS",
    "CHECKPOINT_INTERVAL": "every stage is checkpointed as it finishes (round_XX_progress.json) and every trained "
    "round's solver is saved, so a killed run resumes where it stopped; for checkpoints every N steps inside a "
    "training launch set TRL_SAVE_STEPS; remove CHECKPOINT_INTERVAL",
}

# Design names with the one value this build has: that value is accepted (nothing to do), any other refused.
DESIGN_FIXED = {
    "TRAINING_FRAMEWORK": (
        "TRL_DPO",
        "this build trains the solver with TRL DPO only (the design's recommended framework); VERL PPO is not in it",
    )
}

# A settings file (.env) may also hold other tools' keys: a key passes when it starts with one of these prefixes or
# is one of OTHER_TOOL_KEYS, unless it is one typo from one of ours (VLLM_ and RAY_ are prefixes we share:
# VLLM_MAX_MODEL_LENGTH is refused as a misspelt VLLM_MAX_MODEL_LEN, VLLM_USE_V1 passes). Every other key is refused.
OTHER_TOOL_PREFIXES = (
    "HF_",
    "HUGGING_FACE_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "VLLM_",
    "CUDA_",
    "NCCL_",
    "NVIDIA_",
    "TORCH_",
    "TORCHINDUCTOR_",
    "PYTORCH_",
    "OMP_",
    "MKL_",
    "KMP_",
    "ACCELERATE_",
    "DEEPSPEED_",
    "TOKENIZERS_",
    "WANDB_",
    "MLFLOW_",
    "TRACKIO_",
    "TENSORBOARD_",
    "RAY_",
    "OPENAI_",
    "SLURM_",
    "PROSETTING_",
    "PYTHON",
    "XDG_",
    "LC_",
)
OTHER_TOOL_KEYS = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "TZ",
        "TMPDIR",
        "LD_LIBRARY_PATH",
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "LOCAL_RANK",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
    }
)
_TYPO_RATIO = 0.85  # difflib's ratio from which another tool's key counts as a misspelling of ours

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


def _convert(key: str, raw: Any, kind: type, source: str) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        expected = {bool: "true or false", int: "an integer", float: "a number"}[kind]
        raise ConfigError(f"{key}: expected {expected}, got {raw!r} (from {source})") from None
    return text


def setting_names() -> set[str]:
    """Every name a setting may be given by: Config's keys, the renamed ones and the design documents' names."""
    return {f.name for f in fields(Config)} | set(RENAMED) | set(DESIGN_ALIASES) | set(RETIRED) | set(DESIGN_FIXED)


def suggestion(key: str) -> str:
    """'; did you mean KEY?' for the setting nearest to `key` (difflib), or ''."""
    names = setting_names()
    if key.upper() in names and key != key.upper():
        return f"; did you mean {key.upper()}? (settings are upper case)"
    close = difflib.get_close_matches(key.upper(), sorted(names), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def is_other_tools_key(key: str) -> bool:
    """A key a settings file may hold for another tool (OTHER_TOOL_PREFIXES, OTHER_TOOL_KEYS), and not a near miss
    of one of ours."""
    if not (key in OTHER_TOOL_KEYS or key.startswith(OTHER_TOOL_PREFIXES)):
        return False
    return not difflib.get_close_matches(key, [f.name for f in fields(Config)], n=1, cutoff=_TYPO_RATIO)


def parse_set_args(items: list[str]) -> dict[str, str]:
    """`--set KEY=VALUE` arguments as {KEY: VALUE} (a later one wins); the one parser every command line
    uses. An argument without `=` or naming no setting raises ConfigError naming that argument."""
    names = setting_names()
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        if key not in names:
            raise ConfigError(
                f"--set {item!r}: {key} is not a setting{suggestion(key)} (.env.example lists the settings)"
            )
        out[key] = value
    return out


@dataclass(frozen=True)
class Shadowed:
    """A value of the settings file that the environment replaced (the WARNING the dry run and the run print)."""

    key: str
    file_value: Any
    where: str  # file:line
    env_value: Any


_NOT_FILES = ("environment", "command line", "embedded profile")  # the layers of Sources that are not a file


class Sources(dict):
    """Where each value not left to its default came from, {KEY: layer}: the settings file's path, "environment",
    "command line" or "embedded profile" (a plain dict to every reader), plus what a reader shows: the settings
    file's line of each key (where()), the other name a value was given by, and the file's values the environment
    replaced (shadowed)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str, int] = {}
        self.given_as: dict[str, str] = {}
        self.shadowed: list[Shadowed] = []

    def where(self, key: str) -> str:
        """`presets/x.env:12`, `environment`, `command line`, `embedded profile`, ... (with `as MAX_ROUNDS`)."""
        line = self.lines.get(key) if self[key] not in _NOT_FILES else None
        text = f"{self[key]}:{line}" if line else self[key]
        return text + (f", as {self.given_as[key]}" if key in self.given_as else "")


def read_settings_file(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    """A settings file's {KEY: value} and {KEY: line}. A line that is not KEY=VALUE, a key without `=`, or a key
    that is neither a setting nor another tool's (is_other_tools_key) raises ConfigError naming the file and line
    of each."""
    text = path.read_text(encoding="utf-8")
    values = {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}
    lines: dict[str, int] = {}
    problems: list[str] = []
    names = setting_names()
    for binding in parse_stream(io.StringIO(text)):
        raw = binding.original.string
        line = binding.original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")  # blank lines before it
        if binding.error:
            problems.append(f"{path}:{line}: cannot read {raw.strip()!r}: expected KEY=VALUE")
        elif binding.key is None:
            continue  # a comment or a blank line
        elif binding.key not in names and not is_other_tools_key(binding.key):
            problems.append(f"{path}:{line}: {binding.key} is not a setting{suggestion(binding.key)}")
        elif binding.value is None and binding.key in names:
            problems.append(
                f"{path}:{line}: {binding.key} has no `=`: write {binding.key}=VALUE ({binding.key}= for empty)"
            )
        else:
            lines[binding.key] = line
    if problems:
        raise ConfigError(
            "\n".join(problems)
            + "\n(.env.example lists the settings; other tools' keys pass by prefix, HF_, CUDA_, VLLM_, WANDB_ and "
            "the rest of OTHER_TOOL_PREFIXES in docs/configuration.md)"
        )
    return {k: v for k, v in values.items() if k in names}, lines


def _design_name(key: str, raw: str, source: str) -> None:
    """Refuse a retired design name, or a design setting at a value this build does not have."""
    if key in RETIRED:
        raise ConfigError(f"{key} (from {source}) is the design documents' setting, not this build's: {RETIRED[key]}")
    only, why = DESIGN_FIXED[key]
    if str(raw).strip().upper() != only:
        raise ConfigError(f"{key}={raw} (from {source}): {why}; remove {key} (or set it to {only})")
    log.info("%s=%s (from %s): the one this build has; nothing to set", key, raw, source)


def load_config(
    env_file: str | os.PathLike | None = ".env",
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[Config, Sources]:
    """Build and validate the configuration; returns it and where each non-default value came from (Sources).

    Every key given is used or refused: a settings file's unknown key stops here with its file and line; the
    environment is read for our names only (the shell holds everything); --set takes names only."""
    kinds = {
        f.name: {"int": int, "float": float, "bool": bool}.get(
            f.type if isinstance(f.type, str) else f.type.__name__, str
        )
        for f in fields(Config)
    }
    values: dict[str, Any] = {}
    sources = Sources()
    from_file: dict[str, tuple[Any, str]] = {}  # key: (value, file:line), for the environment-over-file warning

    layers: list[tuple[str, dict[str, Any], dict[str, int]]] = []
    if env_file:
        path = Path(env_file)
        if path.exists() and not path.is_dir():
            layers.append((f"{path}", *read_settings_file(path)))
        elif str(env_file) != ".env":
            raise ConfigError(f"--env-file: file not found: {env_file}")
    env = os.environ if environ is None else environ
    names = setting_names()
    layers.append(("environment", {k: v for k, v in env.items() if k in names}, {}))
    layers.append(("command line", dict(overrides or {}), {}))

    for source, layer, lines in layers:
        given_as: dict[str, str] = {}
        for old in [k for k in layer if k in RENAMED or k in DESIGN_ALIASES]:
            new = RENAMED.get(old) or DESIGN_ALIASES[old]
            where = f"{source}:{lines[old]}" if old in lines else source
            raw = layer.pop(old)
            if new in layer:
                log.warning("%s (from %s) ignored: %s is set there too and wins", old, where, new)
                continue
            layer[new], given_as[new] = raw, old
            if old in lines:
                lines[new] = lines[old]
            if old in RENAMED:
                log.warning("%s (from %s) is now called %s; read as %s=%s", old, where, new, new, raw)
            else:
                log.info("%s (from %s) is the design's name for %s; read as %s=%s", old, where, new, new, raw)
        for key, raw in layer.items():
            where = f"{source}:{lines[key]}" if lines.get(key) else source
            if key in RETIRED or key in DESIGN_FIXED:
                _design_name(key, raw, where)
                continue
            if key not in kinds:
                raise ConfigError(f"{key}: unknown setting (from {source}){suggestion(key)}; see .env.example")
            value = _convert(key, raw, kinds[key], where)
            if source == "environment" and key in from_file and from_file[key][0] != value:
                sources.shadowed.append(Shadowed(key, from_file[key][0], from_file[key][1], value))
            if lines:
                from_file[key] = (value, where)
                sources.lines[key] = lines[key]
            values[key] = value
            sources[key] = source
            if key in given_as:
                sources.given_as[key] = given_as[key]
            else:
                sources.given_as.pop(key, None)
    sources.shadowed = [s for s in sources.shadowed if sources.get(s.key) == "environment"]  # --set wins over both

    if "MAX_POOL_SIZE" in values and "MAX_POOL_SIZE_BY_ROUND" not in values:
        values["MAX_POOL_SIZE_BY_ROUND"] = ""  # a cap given alone caps every round: the default schedule steps aside
        sources["MAX_POOL_SIZE_BY_ROUND"] = "MAX_POOL_SIZE given alone"
    if not values.get("SOLVER_MODEL_PATH"):
        for key, value in EMBEDDED_PROFILE.items():
            if key not in values:
                values[key] = value
                sources[key] = "embedded profile"

    cfg = Config(**values)
    cfg.validate()
    return cfg, sources


def diff_configs(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Keys whose value differs between a saved configuration and the current one (secrets excluded)."""
    keys = {f.name for f in fields(Config)}  # training_config.json also records what the run resolved
    return [
        (k, old.get(k), new.get(k))
        for k in sorted((set(old) | set(new)) & keys)
        if k not in SECRET_KEYS and old.get(k) != new.get(k)
    ]
