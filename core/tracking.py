"""The round loop's own figures, live, in the tracker the training steps go to (TRL_REPORT_TO): one run per workspace.

    tracker = RoundTracker.from_config(cfg)        # None when TRL_REPORT_TO is none
    tracker.log(3, {"eval/gsm8k/greedy": 0.41, "pool/questions": 180, ...})

- tensorboard: `<workspace>/tracking/tensorboard`, global step = round (0 = the start). The training launches
  write their steps to training_runs/rX/tensorboard, so `tensorboard --logdir <workspace>` shows both.
- wandb: one run per workspace, its id kept in tracking/run.json. Each round opens it with resume="allow", logs
  and finishes it; the training launches join the same run through WANDB_RUN_ID and WANDB_RESUME=allow, which
  the `wandb.init` of transformers' WandbCallback reads. Project: WANDB_PROJECT, else `prosetting`.
- trackio: one run per workspace, identified by project and name (trackio has no run id): each round calls
  `trackio.init(project, name, resume="allow")`; the launches get the same project and run name in their
  training arguments, which transformers' TrackioCallback passes to `trackio.init(..., resume="allow")`.
  Project: TRACKIO_PROJECT, else `prosetting`.
Round figures are under `round/` in wandb and trackio (stepped by `round/step`), beside the trainer's `train/`.
Each (tracker, round) is logged once: tracking/run.json lists what was written, so a resumed run appends the
rounds it adds, and a tracker switched on mid-run receives the earlier rounds when the next one ends.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import uuid

from prosetting.core.io import atomic_write_json, read_json
from prosetting.core.records import RoundRow

log = logging.getLogger(__name__)

TRACKERS = ("tensorboard", "wandb", "trackio")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


class TrackingError(RuntimeError):
    """A tracker that cannot run (its package is missing); the message has the fix."""


def targets(cfg) -> list[str]:
    return [t.strip() for t in cfg.TRL_REPORT_TO.split(",") if t.strip() in TRACKERS]


def missing_packages(cfg) -> list[str]:
    """TRL_REPORT_TO trackers whose package is not installed."""
    return [t for t in targets(cfg) if importlib.util.find_spec(PACKAGES[t]) is None]


def run_identity(cfg) -> dict:
    """The workspace's tracking run: name, projects and wandb run id, created once and kept in tracking/run.json."""
    path = cfg.workspace / "tracking" / "run.json"
    state = read_json(path) or {}
    if not state.get("name"):
        state.update(name=cfg.workspace.name, wandb_id=uuid.uuid4().hex[:16], logged={})
        atomic_write_json(path, state)
    return state


def spec_names(cfg, default_name: str) -> dict:
    """run_name and project for a training launch: the workspace's run where a run-level tracker is on."""
    chosen = targets(cfg)
    if "wandb" not in chosen and "trackio" not in chosen:
        return {"run_name": default_name}
    name = (read_json(cfg.workspace / "tracking" / "run.json") or {}).get(
        "name"
    ) or cfg.workspace.name  # writes nothing
    return {"run_name": name, "project": os.environ.get("TRACKIO_PROJECT", "prosetting")}


def launch_env(cfg) -> dict[str, str]:
    """Environment for a training launch, so its steps go to the workspace's wandb run."""
    if "wandb" not in targets(cfg):
        return {}
    identity = run_identity(cfg)
    return {
        "WANDB_RUN_ID": identity["wandb_id"],
        "WANDB_RESUME": "allow",
        "WANDB_PROJECT": os.environ.get("WANDB_PROJECT", "prosetting"),
        "WANDB_DIR": str(cfg.workspace / "tracking"),
    }


def forget_rounds(workspace, first: int) -> None:
    """A redo from round `first` (--from-round) replaces those rounds: the trackers get them again when they end,
    and tensorboard hides the older events from that step on (the next writer opens with purge_step)."""
    path = workspace / "tracking" / "run.json"
    state = read_json(path)
    if state and state.get("logged"):
        state["logged"] = {t: [s for s in steps if s < first] for t, steps in state["logged"].items()}
        state["tensorboard_purge_step"] = min(first, state.get("tensorboard_purge_step", first))
        atomic_write_json(path, state)


class RoundTracker:
    def __init__(self, cfg, chosen: list[str]):
        self.cfg, self.targets = cfg, chosen
        self.root = cfg.workspace / "tracking"
        self.identity = run_identity(cfg)
        self._tensorboard = None

    @classmethod
    def from_config(cls, cfg) -> RoundTracker | None:
        chosen = targets(cfg)
        if not chosen:
            return None
        missing = missing_packages(cfg)
        if missing:
            raise TrackingError(
                f"TRL_REPORT_TO={cfg.TRL_REPORT_TO}: {', '.join(missing)} not installed; "
                f"pip install {' '.join(PACKAGES[m] for m in missing)} (requirements-trackers.txt), "
                "or leave them out of TRL_REPORT_TO"
            )
        return cls(cfg, chosen)

    def logged(self, target: str) -> list[int]:
        return (read_json(self.root / "run.json") or {}).get("logged", {}).get(target, [])

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Write one round's figures to every tracker that does not have that round yet."""
        scalars = {k: float(v) for k, v in scalars.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not scalars:
            return
        for target in self.targets:
            if step in self.logged(target):
                continue
            try:
                getattr(self, f"_log_{target}")(step, scalars)
            except Exception as exc:  # a tracker that fails (network, quota) must not stop the run
                log.warning("tracking: %s could not log round %d: %s: %s", target, step, type(exc).__name__, exc)
                continue
            state = read_json(self.root / "run.json") or dict(self.identity)
            state.setdefault("logged", {}).setdefault(target, []).append(step)
            atomic_write_json(self.root / "run.json", state)

    def _log_tensorboard(self, step: int, scalars: dict[str, float]) -> None:
        if self._tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            state = read_json(self.root / "run.json") or {}
            purge = state.pop("tensorboard_purge_step", None)  # a redo: events from this step on are replaced
            self._tensorboard = SummaryWriter(log_dir=str(self.root / "tensorboard"), purge_step=purge)
            if purge is not None:
                atomic_write_json(self.root / "run.json", state)
        for tag, value in scalars.items():
            self._tensorboard.add_scalar(tag, value, global_step=step)
        self._tensorboard.flush()

    def _log_wandb(self, step: int, scalars: dict[str, float]) -> None:
        import wandb

        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "prosetting"),
            id=self.identity["wandb_id"],
            name=self.identity["name"],
            resume="allow",
            dir=str(self.root),
        )
        try:
            run.define_metric("round/step")
            run.define_metric("round/*", step_metric="round/step")
            run.log({"round/step": step, **{f"round/{k}": v for k, v in scalars.items()}})
        finally:
            run.finish()

    def _log_trackio(self, step: int, scalars: dict[str, float]) -> None:
        import trackio

        trackio.init(
            project=os.environ.get("TRACKIO_PROJECT", "prosetting"), name=self.identity["name"], resume="allow"
        )
        try:
            trackio.log({"round/step": step, **{f"round/{k}": v for k, v in scalars.items()}})
        finally:
            trackio.finish()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def round_scalars(row: RoundRow | None, table_row: dict | None) -> dict[str, float]:
    """A round's figures as flat scalars: each evaluation set and the average, the pool and its zones, pairs,
    training, the Teacher's calls, tokens and cost, and each writer's acceptance."""
    out: dict[str, float] = {}
    if table_row:
        for name, cell in table_row["sets"].items():
            out[f"eval/{name}/greedy"], out[f"eval/{name}/mean_at_k"] = cell["greedy"], cell["mean_at_k"]
        if table_row.get("average"):
            out["eval/average/greedy"] = table_row["average"]["greedy"]
            out["eval/average/mean_at_k"] = table_row["average"]["mean_at_k"]
    if not row:
        return out
    pool = row.get("pool") or {}
    for key in ("questions", "num_attempts", "solver_accuracy", "mean_level"):
        out[f"pool/{key}"] = pool.get(key)
    for zone, n in (pool.get("zones") or {}).items():
        out[f"pool/zone_{zone}"] = n
    out["pool/next_pool"], out["pool/new_questions"] = row.get("next_pool"), row.get("new_questions")
    out["pairs"] = row.get("pairs")
    for key, value in (row.get("train") or {}).items():
        out[f"train_round/{key}"] = value
    for key in ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost", "unusable_replies", "ungraded"):
        out[f"teacher/{key}"] = (row.get("teacher") or {}).get(key)
    for writer, figures in (row.get("writers") or {}).items():
        for key in ("written", "rejected", "acceptance_rate", "mean_utility"):
            out[f"writers/{writer}/{key}"] = figures.get(key)
    return {k: v for k, v in out.items() if v is not None}
