"""A local HTTP server that serves model files the way the real hosts do, for the fetch tests.

- download.pytorch.org: ``GET /models/<file>`` with a Content-Length.
- huggingface.co: ``GET /api/models/<repo>/revision/<rev>`` (the repository's commit and file
  list), ``HEAD``/``GET /<repo>/resolve/<rev>/<file>`` answering with ``X-Repo-Commit`` and an
  ``ETag`` (git blob hash) for small files, and for large (LFS) files a 302 to a CDN (a second
  port, so another origin) with
  ``X-Linked-Etag`` (the SHA-256) and ``X-Linked-Size``; the CDN honours ``Range`` requests.

Faults can be injected: ``cut_next[path] = n`` makes the next n downloads of a path stop half
way (the connection drops after the headers promised the whole file); ``fail_next[path] = n``
answers the next n requests for a path with 503 (a hub having a bad moment).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".h5", ".msgpack")


class HubMirror:
    def __init__(self):
        self.torch_files: dict[str, bytes] = {}  # file name -> bytes, under /models/
        self.repos: dict[str, dict[str, bytes]] = {}  # repo id -> file name -> bytes
        self.cut_next: dict[str, int] = {}
        self.fail_next: dict[str, int] = {}  # path -> how many more requests answer 503
        self.requests: list[tuple[str, str]] = []  # (method, path) as received
        self.resumed: list[str] = []  # paths asked for from an offset (a Range request)
        # The hub and its CDN are different origins, as huggingface.co and its LFS storage are:
        # the hub's client reads a file's metadata from the redirect instead of following it.
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), self._handler()) for _ in "ab"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def __enter__(self):
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        for server in self._servers:
            server.shutdown()
            server.server_close()

    @staticmethod
    def commit(repo: dict[str, bytes]) -> str:
        digest = hashlib.sha1()
        for name in sorted(repo):
            digest.update(name.encode() + hashlib.sha1(repo[name]).digest())
        return digest.hexdigest()

    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_HEAD(self):
                self._answer(head=True)

            def do_GET(self):
                self._answer(head=False)

            def _answer(self, head: bool):
                path = unquote(urlsplit(self.path).path)
                mirror.requests.append((self.command, path))
                if mirror.fail_next.get(path, 0) > 0:
                    mirror.fail_next[path] -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if path.startswith("/models/") and path[8:] in mirror.torch_files:
                    return self._send(mirror.torch_files[path[8:]], path, head)
                if path.startswith("/api/models/"):
                    return self._repo_info(path[len("/api/models/"):])
                if path.startswith("/cdn/"):
                    return self._cdn(path[5:], head)
                if "/resolve/" in path:
                    return self._resolve(path, head)
                self._missing()

            def _missing(self):
                body = b'{"error": "Entry not found"}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _repo_info(self, rest: str):
                if "/tree/" in rest:
                    return self._tree(rest.partition("/tree/")[0])
                repo_id, _, _revision = rest.partition("/revision/")
                files = mirror.repos.get(repo_id)
                if files is None:
                    return self._missing()
                self._json({
                    "_id": repo_id, "id": repo_id, "modelId": repo_id,
                    "sha": mirror.commit(files), "private": False, "disabled": False,
                    "siblings": [{"rfilename": name} for name in sorted(files)],
                })

            def _tree(self, repo_id: str):
                """The recursive file listing: git blob ids, sizes, and LFS pointers."""
                files = mirror.repos.get(repo_id)
                if files is None:
                    return self._missing()
                entries = []
                for name in sorted(files):
                    data = files[name]
                    entry = {"type": "file", "path": name, "size": len(data),
                             "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                    if name.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(),
                                        "size": len(data), "pointerSize": 134}
                    entries.append(entry)
                self._json(entries)

            def _json(self, value):
                body = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _resolve(self, path: str, head: bool):
                repo_id, _, rest = path[1:].partition("/resolve/")
                _revision, _, name = rest.partition("/")
                files = mirror.repos.get(repo_id)
                if files is None or name not in files:
                    return self._missing()
                data, commit = files[name], mirror.commit(files)
                if name.endswith(LFS_SUFFIXES):
                    sha256 = hashlib.sha256(data).hexdigest()
                    self.send_response(302)
                    self.send_header("Location", f"{mirror.cdn_url}/cdn/{sha256}")
                    self.send_header("X-Repo-Commit", commit)
                    self.send_header("X-Linked-Etag", f'"{sha256}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                return self._send(data, path, head, {"X-Repo-Commit": commit,
                                                     "ETag": f'"{blob}"'})

            def _cdn(self, sha256: str, head: bool):
                for files in mirror.repos.values():
                    for data in files.values():
                        if hashlib.sha256(data).hexdigest() == sha256:
                            return self._send(data, f"/cdn/{sha256}", head)
                return self._missing()

            def _send(self, data: bytes, key: str, head: bool, headers: dict | None = None):
                start = 0
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes=") and not head:
                    start = int(ranged[6:].split("-")[0] or 0)
                    mirror.resumed.append(key)
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if head:
                    return
                body = data[start:]
                if mirror.cut_next.get(key, 0) > 0:
                    mirror.cut_next[key] -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler
