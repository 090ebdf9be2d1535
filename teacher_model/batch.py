"""TEACHER_BATCH_API=true: a stage's first-round Teacher requests answered through the Files and Batches API.

    answered = prefetch(teacher.transport, requests, paths.data / "round_01_grade_batch.json", 30, ctx.stop_event)

The requests the call cache cannot answer go into one JSONL batch file, uploaded with the official
client (`files.create`, `batches.create`); the batch id is saved in the workspace *before* polling, so a
killed run resumes by polling the same batch, never by submitting it again. Every answer goes into the
call cache under the key an ordinary call would use, so the stage then runs as usual and finds its
answers there; lines the batch failed (and any re-ask after an unusable answer) are ordinary calls.
Between polls it waits on the run's stop event: Ctrl+C (or SIGTERM) stops the stage at once, leaving the
batch id saved for the resume.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path

import openai

from prosetting.core.context import StageInterrupted
from prosetting.core.io import atomic_write_json, read_json
from prosetting.teacher_model.transport import Request, TeacherTransport

log = logging.getLogger(__name__)

DONE = {"completed", "failed", "expired", "cancelled"}


def _line(transport: TeacherTransport, request: Request) -> tuple[str, dict]:
    key, body = transport.request(*request)  # the key (and body, response_format included) of an ordinary call
    return key, {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body}


def _submit(transport: TeacherTransport, requests: list[Request], state_path: Path) -> dict | None:
    """Upload the requests the cache cannot answer as one batch and save its state; None when there is
    nothing to ask, or the endpoint has no Batches API (the requests then become ordinary calls)."""
    lines = {}
    for request in requests:
        key, line = _line(transport, request)
        if transport.cache.get(key) is None:
            lines[key] = line
    if not lines:
        return None
    data = "".join(json.dumps(line) + "\n" for line in lines.values()).encode()
    try:
        upload = transport.client.files.create(file=(state_path.stem + ".jsonl", io.BytesIO(data)), purpose="batch")
        batch = transport.client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    except (openai.NotFoundError, openai.BadRequestError) as exc:
        log.warning(
            "teacher endpoint %s refused the Batches API (HTTP %s); these %d requests become ordinary "
            "calls. Set TEACHER_BATCH_API=false for endpoints without it (vLLM, SGLang)",
            transport.base_url,
            exc.status_code,
            len(lines),
        )
        return None
    state = {"batch_id": batch.id, "input_file_id": upload.id, "requests": len(lines)}
    atomic_write_json(state_path, state)  # before the first poll: a resume polls this batch
    log.info("teacher batch %s submitted: %d requests (state in %s)", batch.id, len(lines), state_path)
    return state


def prefetch(
    transport: TeacherTransport,
    requests: list[Request],
    state_path: Path,
    poll_s: float = 30.0,
    stop: threading.Event | None = None,
) -> dict:
    """Answer `requests` (messages, temperature, seed, response_format) through one batch; returns counts for
    the stage. Raises StageInterrupted as soon as `stop` is set while the batch runs (its id stays saved in
    `state_path`)."""
    stop = stop or threading.Event()
    state = read_json(state_path)
    if state is None:
        state = _submit(transport, requests, state_path)
        if state is None:
            return {"batch_requests": 0}
    else:
        log.info("teacher batch %s: resuming its polling (%d requests)", state["batch_id"], state["requests"])
    while True:
        batch = transport.client.batches.retrieve(state["batch_id"])
        if batch.status in DONE:
            break
        if stop.wait(poll_s):
            raise StageInterrupted(f"stop requested while teacher batch {state['batch_id']} runs")
    records = []
    if batch.output_file_id:
        text = transport.client.files.content(batch.output_file_id).text
        for raw in text.splitlines():
            row = json.loads(raw) if raw.strip() else None
            response = (row or {}).get("response") or {}
            if response.get("status_code") != 200:
                continue
            body = response.get("body") or {}
            choices = body.get("choices") or [{}]
            content = ((choices[0] or {}).get("message") or {}).get("content") or ""
            usage = {k: (body.get("usage") or {}).get(k, 0) or 0 for k in ("prompt_tokens", "completion_tokens")}
            records.append((row["custom_id"], content, usage))
            transport.count(
                batch_calls=1, prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"]
            )
    transport.cache.put_many(records)  # one transaction for the whole batch
    answered = len(records)
    failed = state["requests"] - answered
    if failed:
        log.warning(
            "teacher batch %s (%s): %d of %d requests unanswered; they become ordinary calls",
            state["batch_id"],
            batch.status,
            failed,
            state["requests"],
        )
    state_path.unlink(missing_ok=True)
    return {"batch_requests": state["requests"], "batch_answered": answered, "batch_failed": failed}
