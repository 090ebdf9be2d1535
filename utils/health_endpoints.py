"""The health check's endpoints room: the Teacher's endpoints serve the models the settings name
(utils/status_checker.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from prosetting.core.config import Config
from prosetting.utils.preflight import Check


def check_teacher(cfg: Config, timeout: float) -> list[Check]:
    """The grading Teacher's endpoint serves TEACHER_MODEL_NAME; the writing Teacher's too, where it differs."""
    if cfg.TEACHER_BACKEND != "llm":
        return [Check("teacher endpoint", "skip", f"TEACHER_BACKEND={cfg.TEACHER_BACKEND}: no endpoint needed")]
    grading = (cfg.TEACHER_BASE_URL, cfg.TEACHER_MODEL_NAME, cfg.TEACHER_API_KEY)
    checks = [_probe_teacher("teacher endpoint", "TEACHER_", grading, timeout)]
    writing = cfg.writer_endpoint()
    if writing[:2] != grading[:2]:
        checks.append(_probe_teacher("teacher writer endpoint", "TEACHER_WRITER_", writing, timeout))
    return checks


def _probe_teacher(name: str, prefix: str, endpoint: tuple[str, str, str], timeout: float) -> Check:
    """GET <base URL>/models: reachable, the key accepted, the model served. `prefix` names the settings in fixes."""
    base_url, model, key = endpoint
    url = base_url.rstrip("/") + "/models"

    def scrub(text: str) -> str:
        return text.replace(key, "***") if key else text

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key or 'EMPTY'}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            served = [m.get("id") for m in json.loads(resp.read()).get("data", [])]
    except urllib.error.HTTPError as exc:
        fix = {
            401: f"check {prefix}API_KEY",
            403: f"check {prefix}API_KEY",
            404: f"{prefix}BASE_URL usually ends in /v1",
        }.get(exc.code, "check the server's log")
        return Check(
            name,
            "fail",
            f"GET {url} answered HTTP {exc.code}: {scrub(exc.read()[:200].decode(errors='replace'))}",
            fix,
        )
    except (urllib.error.URLError, OSError) as exc:
        reason = scrub(str(getattr(exc, "reason", exc)))
        return Check(
            name,
            "fail",
            f"cannot reach {url}: {reason} (timeout {timeout:g}s)",
            f"start the Teacher server (e.g. `python scripts/serve_teacher.py --model DIR`) or fix {prefix}BASE_URL",
        )
    except (json.JSONDecodeError, AttributeError) as exc:
        return Check(
            name,
            "fail",
            f"GET {url} did not return a model list: {exc}",
            f"{prefix}BASE_URL must be an OpenAI-compatible API root, usually ending in /v1",
        )
    if model not in served:
        return Check(
            name,
            "fail",
            f"{url} serves {served}, not {prefix}MODEL_NAME={model!r}",
            f"set {prefix}MODEL_NAME to one of: {', '.join(map(str, served)) or '(none served)'}",
        )
    return Check(name, "ok", f"{base_url} serves {model}")
