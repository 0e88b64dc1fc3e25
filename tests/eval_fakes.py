"""Fakes for evaluation tests: an OpenAI-compatible chat endpoint (stdlib HTTP server in a thread),
a judge that answers every AnomEval prompt, and predictions files.

    with JudgeServer(lambda prompt: "Answer: yes", fail_first=2) as server:
        cfg = JudgeConfig(kind="http", model="fake", base_url=server.url)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self


class JudgeServer:
    """Serves ``POST /v1/chat/completions`` on 127.0.0.1 (a free port) while the context is open.

    Args:
        answer: Maps the last user message to the reply text.
        fail_first: Answer the first this many requests with ``fail_status``.
        fail_status: HTTP status of those failures (500; 429 for rate limiting).
        status: Fixed HTTP status for every request after ``fail_first`` (None = 200 with ``answer``).

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:PORT/v1``.
        requests: JSON bodies received, in order (failed ones included).
        auth: ``Authorization`` header of each request (None when absent).
    """

    def __init__(self, answer: Callable[[str], str], fail_first: int = 0, fail_status: int = 500,
                 status: int | None = None) -> None:
        self.answer = answer
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def _reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(body)
            count = len(self.requests)
        if count <= self.fail_first:
            return self.fail_status, {"error": {"message": f"fake failure {self.fail_status}"}}
        if self.status is not None:
            return self.status, {"error": {"message": f"fake error {self.status}"}}
        prompt = body["messages"][-1]["content"]
        return 200, {"id": f"fake-{count}", "object": "chat.completion", "model": body.get("model"),
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": self.answer(prompt)}}]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.auth.append(self.headers.get("Authorization"))
                self._send(*server._reply(body))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


#: Lines a predictions reader must skip: no answer, and the cut last line of a killed writer.
BROKEN = ['{"id": "v9#0", "task": "description"}', '{"id": "v9#1", "task": "desc']

JUDGE_KEY_ENV = "VAU_TEST_JUDGE_KEY"


def write_predictions(folder: Path, rows: list[dict], broken: bool = True) -> Path:
    """``folder/predictions.jsonl`` with ``rows`` (and the broken lines at the end)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in rows] + (BROKEN if broken else [])
    path = folder / "predictions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def judge_answer(prompt: str) -> str:
    """A judge that answers every AnomEval prompt kind parseably and the same way each time.

    Every item then scores s1 = 100 * 3/4 * 4/5 = 60, s2 = 100, s3 = -0 (never consistent): S = 64 with
    weights 0.4/0.4/0.2 (all in %).
    """
    if "Key Information Count" in prompt:
        return "Key Information Count: 4, Included Key Information Count: 3"
    if "Score: L" in prompt:
        return "Score: 4"
    if "Consistent: yes" in prompt:
        return "Consistent: no"
    if "yes/no questions" in prompt:
        return "1. Is there a person?\n2. Does something break?\n3. Is it abnormal?"
    if "Answer: yes" in prompt:
        return "Answer: yes"
    raise AssertionError(f"unexpected judge prompt: {prompt[:200]!r}")
