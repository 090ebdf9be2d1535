"""A local server speaking the parts of the Hugging Face Hub's HTTP protocol that model resolution uses, for tests
that need the Hub online (HF_ENDPOINT=server.url): repository info, the tree listing and file downloads.

    with HubServer({"org/tiny": folder}) as hub:     # serves folder's files as org/tiny at one commit
        env["HF_ENDPOINT"] = hub.url

- GET  /api/models/ORG/NAME[/revision/REV]          {"id", "sha", "siblings": [{"rfilename", "size"}]}
- GET  /api/models/ORG/NAME/tree/REV[?recursive=1]  [{"type": "file", "path", "size", "oid", "lfs"?}]
- HEAD/GET /ORG/NAME/resolve/REV/PATH               the file, with X-Repo-Commit, ETag/X-Linked-Etag, X-Linked-Size
Unknown repositories answer 404 with `X-Error-Code: RepoNotFound`, unknown revisions `RevisionNotFound`, as the
Hub does; huggingface_hub turns those into RepositoryNotFoundError and RevisionNotFoundError.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".parquet")


class _Repo:
    def __init__(self, folder: Path):
        self.files = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
        }
        digest = hashlib.sha1()
        for name, data in self.files.items():
            digest.update(name.encode() + data)
        self.commit = digest.hexdigest()

    def entry(self, name: str) -> dict:
        data = self.files[name]
        oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        out = {"type": "file", "path": name, "size": len(data), "oid": oid}
        if name.endswith(LFS_SUFFIXES):
            out["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return out


class HubServer:
    def __init__(self, repos: dict[str, Path]):
        self.repos = {repo_id: _Repo(Path(folder)) for repo_id, folder in repos.items()}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                server._answer(self, head=True)

            def do_GET(self):
                server._answer(self, head=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, h, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h, code: str, head: bool) -> None:
        self._send(
            h,
            404,
            json.dumps({"error": code}).encode(),
            {"X-Error-Code": code, "Content-Type": "application/json"},
            head,
        )

    def _answer(self, h, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(f"{h.command} {path}")
        api = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(/.*)?)?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        repo_id = api.group(2) if api else resolve.group(1) if resolve else None
        repo = self.repos.get(repo_id) if not (api and api.group(1) == "datasets") else None
        if repo is None:
            return self._error(h, "RepoNotFound", head)
        revision = (api.group(4) if api else resolve.group(2)) or "main"
        if revision not in ("main", repo.commit):
            return self._error(h, "RevisionNotFound", head)
        if api and api.group(3) == "tree":
            body = json.dumps([repo.entry(n) for n in repo.files]).encode()
            return self._send(h, 200, body, {"Content-Type": "application/json"}, head)
        if api:
            siblings = [{"rfilename": n, "size": len(d), "blobId": repo.entry(n)["oid"]} for n, d in repo.files.items()]
            body = json.dumps(
                {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False, "siblings": siblings}
            ).encode()
            return self._send(h, 200, body, {"Content-Type": "application/json"}, head)
        name = resolve.group(3)
        if name not in repo.files:
            return self._error(h, "EntryNotFound", head)
        entry = repo.entry(name)
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        self._send(
            h,
            200,
            repo.files[name],
            {
                "X-Repo-Commit": repo.commit,
                "ETag": f'"{etag}"',
                "X-Linked-Etag": f'"{etag}"',
                "X-Linked-Size": str(entry["size"]),
                "Content-Type": "application/octet-stream",
            },
            head,
        )
