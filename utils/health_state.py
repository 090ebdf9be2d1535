"""The health check's saved-state room: where the next run starts, what of it is kept, the lock, and the settings
changed since the last run (utils/status_checker.py)."""

from __future__ import annotations

from prosetting.core.config import Config, diff_configs
from prosetting.core.io import read_json
from prosetting.core.state_manager import StateManager
from prosetting.processors.progress import STATUS_NEXT, read_progress
from prosetting.utils.preflight import Check


def check_state(cfg: Config) -> list[Check]:
    sm = StateManager(cfg.workspace)
    if not sm.paths.state.exists():
        return [Check("training state", "ok", "new workspace: the run starts at round 1, collect")] + [check_lock(sm)]
    try:
        progress = read_progress(sm, cfg.TOTAL_ROUNDS)
        saved = read_json(sm.paths.config)
    except (ValueError, KeyError) as exc:
        return [
            Check(
                "training state",
                "fail",
                f"{exc}",
                "restore the file from a backup, or move the workspace aside "
                "and start again (--from-round/--from-stage redo from a point)",
            ),
            check_lock(sm),
        ]
    state = progress.state
    done = sorted(state.get("completed_rounds", []))
    point = progress.resume
    if point is None:
        checks = [
            Check(
                "training state",
                "warn",
                f"all {cfg.TOTAL_ROUNDS} rounds are done ({done}): a run does nothing",
                "raise TOTAL_ROUNDS to go on, or redo with --from-round R --from-stage STAGE",
            )
        ]
    else:
        r, stage, how = point.round, point.stage.name, STATUS_NEXT[point.status]
        saved_files = [p for p in point.stage.outputs(sm.paths, r) if p.exists()]
        kept = f"; {len(saved_files)} of its files already saved are kept" if saved_files else ""
        checks = [
            Check(
                "training state",
                "ok",
                f"status {state.get('status')}, rounds done {done}; the next run starts at "
                f"round {r}, stage {stage} ({how}{kept})",
            )
        ]
    checks.append(check_lock(sm))
    changed = (
        [(k, a, b) for k, a, b in diff_configs(saved or {}, cfg.to_dict()) if k != "WORKSPACE_DIR"] if saved else []
    )
    if changed:
        text = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changed[:6]) + (" ..." if len(changed) > 6 else "")
        checks.append(
            Check(
                "saved configuration",
                "warn",
                f"{len(changed)} setting(s) changed since the last run: {text}; the run uses the new values",
                "if that is not intended, restore them in .env",
            )
        )
    return checks


def check_lock(sm: StateManager) -> Check:
    if not sm.paths.lock.exists():
        return Check("workspace lock", "ok", "no lock: no run holds the workspace")
    info = sm.read_lock()
    if not sm.lock_is_stale(info):
        return Check(
            "workspace lock",
            "fail",
            f"a live run holds the workspace: process {info.get('pid')} on "
            f"{info.get('host')}, started {info.get('started')}",
            f"wait for it to finish, stop it (kill {info.get('pid')} on {info.get('host')}), or use another "
            "WORKSPACE_DIR",
        )
    who = f"process {info.get('pid')} on {info.get('host')}, gone" if info else "unreadable lock file"
    return Check(
        "workspace lock",
        "warn",
        f"stale lock ({who}): the next run takes it over",
        f"nothing to do; or delete {sm.paths.lock}",
    )
