"""A scripted OpenAI-compatible Teacher server on 127.0.0.1, for tests that need to control its answers.

It speaks the real protocol (`GET /v1/models`, `POST /v1/chat/completions`, OpenAI error bodies), so the
real `openai` client talks to it unchanged:

    with TeacherServer(responder=lambda req: '{"correct": true, "reason": "ok"}') as server:
        server.fail_next(500, 429)          # the next two requests fail, then the responder answers
        server.fail_next(DROP, MALFORMED)   # a dropped connection, then a 200 whose body is not JSON
        server.pause(); server.resume()     # hold every answer (to kill a client between answers)
        server.held                         # chat requests waiting at the pause now (their clients blocked)
        server.batch_failures = {2}         # /v1/files, /v1/batches: line 2 of the next batch fails
        server.batch_seconds = None         # batches stay in_progress until server.complete_batches()
        server.refuse_structured = True     # a request with response_format gets OpenAI's 400 for it
        server.max_context = 2048           # a request of more characters gets vLLM's context-length 400
        client = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        ...
        server.requests                     # every request seen: method, path, headers (lower-case), json,
                                            # and once answered: status, answered (time)
        server.response_formats             # the response_format of each chat request (None: plain)

    with refusing_url() as url: ...         # a base URL where nothing listens (its port held, not reusable)

    python tests/teacher_server.py --port 8000 --model teacher   # by hand, for utils/status_checker.py
"""

from __future__ import annotations

import email
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict], str]
DROP = -1  # close the connection without an answer
MALFORMED = -2  # answer 200 with a body that is not JSON

# OpenAI's answer to a json_schema response_format on a model without structured output.
# vLLM 0.32's answer to a prompt longer than --max-model-len.
PROMPT_TOO_LONG = (
    "This model's maximum context length is {limit} tokens. However, your prompt contains at least {size} input "
    "tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt."
)
STRUCTURED_REFUSAL = (
    "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model. Learn more about "
    "supported models at the Structured Outputs guide: https://platform.openai.com/docs/guides/structured-outputs"
)

ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


def default_responder(request: dict) -> str:
    return '{"correct": false, "reason": "scripted default"}'


def _sum_question(text: str, shift: int) -> tuple[str, int] | None:
    nums = [int(n) for n in re.findall(r"\d+", text)]
    if len(nums) < 2:
        return None
    a, b = nums[0] + shift, nums[1] + 2 * shift
    return f"{a}+{b}=?", a + b


def socratic_responder(request: dict) -> str:
    """A deterministic stand-in for a Teacher LLM on the arithmetic seeds: grades by comparing each attempt's
    extracted answer with the reference, writes a shifted sum, passes re-checks of questions with a reference.
    Every prompt of teacher_model/prompts.py gets an answer in the shape it asks for."""
    prompt = request["messages"][-1]["content"]
    first = request["messages"][1]["content"] if len(request["messages"]) > 1 else prompt
    reference = (re.search(r"Reference answer:\s*(.+)", first) or [None, ""])[1].strip()
    if "attempt(s):" in first:  # one request per question
        extracted = re.findall(r"Extracted final answer: (.*)", first)
        return json.dumps(
            {
                "verdicts": [
                    {
                        "attempt": i,
                        "correct": a.strip() == reference,
                        "error": "" if a.strip() == reference else f"{a.strip()} is not {reference}",
                    }
                    for i, a in enumerate(extracted, 1)
                ]
            }
        )
    if "Student's extracted final answer:" in first:
        answer = re.search(r"Student's extracted final answer: (.*)", first)[1].strip()
        return json.dumps(
            {"correct": answer == reference, "reason": "compared", "error": "" if answer == reference else "wrong sum"}
        )
    if "check the problem itself" in first:
        return json.dumps({"valid": bool(reference), "reason": "well posed" if reference else "no reference answer"})
    problem = (re.search(r"Problem:\s*(.+)", first) or [None, ""])[1]
    shift = 1 + int(hashlib.sha256(json.dumps(request.get("seed")).encode()).hexdigest(), 16) % 7
    made = _sum_question(problem, shift) or (f"{shift}+{shift + 10}=?", 2 * shift + 10)
    written = [{"question": made[0], "answer": str(made[1]), "solution": f"\\boxed{{{made[1]}}}"}]
    # with structured output the reply takes the schema's shape, an object (a strict schema's root is one)
    return json.dumps({"questions": written} if request.get("response_format") else written)


class TeacherServer:
    """One served model, a responder for chat content, queued failures, a delay, and a request log."""

    def __init__(
        self,
        responder: Responder = default_responder,
        model: str = "teacher-test",
        api_key: str | None = None,
        delay_s: float = 0.0,
    ):
        self.responder = responder
        self.model = model
        self.api_key = api_key  # when set, requests without `Authorization: Bearer <api_key>` get 401
        self.delay_s = delay_s
        self.retry_after = "0"  # the Retry-After header of scripted 429s
        self.open = threading.Event()  # cleared by pause(): answers wait until resume()
        self.open.set()
        self.requests: list[dict] = []
        self.files: dict[str, bytes] = {}  # /v1/files: id -> content
        self.batches: dict[str, dict] = {}  # /v1/batches: id -> batch object
        self.batch_seconds: float | None = 0.3  # how long a batch stays in_progress; None: until complete_batches()
        self.batch_failures: set[int] = set()  # line numbers (0-based) of a batch answered with an error
        self.refuse_structured = False  # True: a chat request with response_format gets OpenAI's 400 for it
        self.max_context = 0  # > 0: a chat request whose messages hold more characters gets vLLM's 400 for it
        self._failures: list[tuple[int, float]] = []  # (status, delay): status 0 means "delay, then answer"
        self._lock = threading.Lock()
        self._counter = 0
        self._held = 0  # chat requests waiting at the pause
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting ------------------------------------------------------------------------------
    def fail_next(self, *statuses: int) -> None:
        """The next requests answer these HTTP statuses (500, 429, ...), one each, in order."""
        with self._lock:
            self._failures += [(s, 0.0) for s in statuses]

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """The next `count` requests wait `seconds` before answering (to trip a client timeout)."""
        with self._lock:
            self._failures += [(0, seconds)] * count

    def pause(self) -> None:
        with self._lock:
            self.open.clear()

    def resume(self) -> None:
        with self._lock:
            self.open.set()

    @property
    def held(self) -> int:
        """How many chat requests wait at the pause now: each one's client is blocked on it, and gets no answer
        before resume(). A request that passed before the pause is not counted: it is answered."""
        with self._lock:
            return self._held

    def _wait_if_paused(self) -> None:
        with self._lock:  # the same lock as pause(): a request is either answered or counted as held
            held = not self.open.is_set()
            self._held += held
        if held:
            self.open.wait()
            with self._lock:
                self._held -= 1

    # --- the Files and Batches API -----------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}-{self._counter:06d}"

    def add_file(self, content: bytes) -> dict:
        file_id = self._new_id("file")
        self.files[file_id] = content
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl",
            "purpose": "batch",
            "status": "processed",
        }

    def create_batch(self, body: dict) -> dict:
        batch_id = self._new_id("batch")
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "errors": None,
            "input_file_id": body.get("input_file_id"),
            "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        self.batches[batch_id] = batch
        if self.batch_seconds is not None:
            threading.Timer(self.batch_seconds, self._run_batch, args=(batch_id,)).start()
        return batch

    def complete_batches(self) -> None:
        """Finish every batch still in progress now (those created while batch_seconds was None)."""
        for batch_id, batch in list(self.batches.items()):
            if batch["status"] == "in_progress":
                self._run_batch(batch_id)

    def _run_batch(self, batch_id: str) -> None:
        batch = self.batches[batch_id]
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].decode().splitlines() if x.strip()]
        out, errors = [], []
        for i, line in enumerate(lines):
            if i in self.batch_failures:
                errors.append(
                    {
                        "id": f"req-{i}",
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": {"code": "server_error", "message": "scripted batch failure"},
                    }
                )
            else:
                out.append(
                    {
                        "id": f"req-{i}",
                        "custom_id": line["custom_id"],
                        "error": None,
                        "response": {"status_code": 200, "body": self._completion(line["body"])},
                    }
                )
        dump = lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()  # noqa: E731
        batch.update(
            status="completed",
            completed_at=int(time.time()),
            output_file_id=self.add_file(dump(out))["id"] if out else None,
            error_file_id=self.add_file(dump(errors))["id"] if errors else None,
            request_counts={"total": len(lines), "completed": len(out), "failed": len(errors)},
        )

    @property
    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    @property
    def response_formats(self) -> list[dict | None]:
        """The response_format each chat request carried, in order (None: a plain request)."""
        return [(r["json"] or {}).get("response_format") for r in self.chat_requests]

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, port: int = 0) -> TeacherServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="teacher-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> TeacherServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what a request gets --------------------------------------------------------------------
    def _next_failure(self) -> tuple[int, float] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _completion(self, body: dict) -> dict:
        with self._lock:
            self._counter += 1
            n = self._counter
        content = self.responder(body)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion_tokens = len(content.split())
        return {
            "id": f"chatcmpl-test{n:06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def error_body(status: int, message: str, type_: str | None = None, param: str | None = None) -> dict:
    return {
        "error": {
            "message": message,
            "type": type_ or ERROR_TYPES.get(status, "APIError"),
            "param": param,
            "code": status,
        }
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: TeacherServer
    timeout = 30  # an idle keep-alive connection closes, so its thread ends

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read server.requests instead
        pass

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (a timeout test): nothing to answer
        rec = getattr(self, "_rec", None)
        if rec is not None:
            rec.update(status=status, answered=time.time())

    def _record(self, body: Any) -> None:
        state = self.server_state
        self._rec = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "json": body,
            "time": time.time(),
        }
        with state._lock:
            state.requests.append(self._rec)

    def _authorised(self) -> bool:
        key = self.server_state.api_key
        given = self.headers.get("Authorization", "")
        if key is None or given == f"Bearer {key}":
            return True
        # Like the real API, the error repeats the key it was given: clients must not log it.
        shown = given.removeprefix("Bearer ")
        self._send(401, error_body(401, f"Incorrect API key provided: {shown}."))
        return False

    def do_GET(self) -> None:
        self._record(None)
        if not self._authorised():
            return
        state, path = self.server_state, self.path.rstrip("/")
        if path in ("/v1/models", "/models"):
            model = {"id": self.server_state.model, "object": "model", "created": 0, "owned_by": "prosetting-tests"}
            self._send(200, {"object": "list", "data": [model]})
        elif path.startswith("/v1/batches/") and path.split("/")[-1] in state.batches:
            self._send(200, state.batches[path.split("/")[-1]])
        elif path.startswith("/v1/files/") and path.endswith("/content") and path.split("/")[-2] in state.files:
            self._send(200, state.files[path.split("/")[-2]])
        else:
            self._send(404, error_body(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") == "/v1/files":  # multipart upload of a batch input file
            self._record({"upload": len(raw)})
            if state.files is None:  # scripted: an endpoint without the Files API
                self._send(404, error_body(404, f"no route {self.path}"))
            elif self._authorised():
                message = email.message_from_bytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw
                )
                parts = [
                    p for p in message.get_payload() if p.get_param("name", header="content-disposition") == "file"
                ]
                self._send(200, state.add_file(parts[0].get_payload(decode=True)))
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._record(None)
            self._send(400, error_body(400, "request body is not JSON"))
            return
        self._record(body)
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/v1/batches":
            self._send(200, state.create_batch(body))
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, error_body(404, f"no route {self.path}"))
            return
        failure = state._next_failure()
        delay = state.delay_s + (failure[1] if failure else 0.0)
        if delay:
            time.sleep(delay)
        state._wait_if_paused()
        if failure and failure[0] == DROP:
            self.close_connection = True
            self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees the connection drop
            return
        if failure and failure[0] == MALFORMED:
            self._send(200, b'{"id": "chatcmpl-broken", "choices": [{"mess')
            return
        if failure and failure[0]:
            status = failure[0]
            headers = {"Retry-After": state.retry_after} if status == 429 else None
            self._send(status, error_body(status, f"scripted failure {status}"), headers)
            return
        if body.get("model") != state.model:
            self._send(404, error_body(404, f"The model `{body.get('model')}` does not exist."))
            return
        if state.refuse_structured and "response_format" in body:
            self._send(400, error_body(400, STRUCTURED_REFUSAL, "invalid_request_error", "response_format"))
            return
        size = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
        if state.max_context and size > state.max_context:  # one character stands for one token here
            self._send(
                400, error_body(400, PROMPT_TOO_LONG.format(limit=state.max_context, size=size), param="input_tokens")
            )
            return
        try:
            self._send(200, state._completion(body))
        except Exception as exc:  # a responder bug must show up as a server error, not a hung client
            self._send(500, error_body(500, f"responder failed: {type(exc).__name__}: {exc}"))


@contextmanager
def refusing_url() -> Iterator[str]:
    """A base URL on 127.0.0.1 where nothing listens while the block runs: its port is bound but not listening, so
    a connection is refused at once, and no other process can take the port meanwhile (a port freed by a stopped
    server could be)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Serve a scripted Teacher on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default="teacher-test")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer (a fixed latency)")
    parser.add_argument("--socratic", action="store_true", help="answer every Teacher prompt (socratic_responder)")
    args = parser.parse_args()
    responder = socratic_responder if args.socratic else default_responder
    server = TeacherServer(responder=responder, model=args.model, delay_s=args.delay).start(args.port)
    print(f"serving {args.model} at {server.base_url} (Ctrl+C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
