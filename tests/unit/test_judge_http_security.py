"""The HTTP judge keeps its API key to the configured origin and warns about plain http to remote hosts."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from vau.config.eval import JudgeConfig
from vau.eval.judge import HTTPJudge, JudgeError, _origin

KEY_ENV = "VAU_TEST_JUDGE_KEY"
COMPLETION = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Answer: yes"}}]}

#: Maps (server, method, path) to (status, extra headers, JSON body).
Route = Callable[["Server", str, str], tuple[int, dict[str, str], dict[str, Any]]]


class Server:
    """A 127.0.0.1 HTTP server (free port) in a thread that records every request it gets."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.origin = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.seen.append((self.command, self.path, self.headers.get("Authorization")))
                status, headers, payload = server.route(server, self.command, self.path)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        return Handler

    def close(self) -> None:
        """Stops serving and frees the port."""
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[[Route], Server]]:
    """Starts servers on demand; all are shut down at teardown."""
    servers: list[Server] = []

    def start(route: Route) -> Server:
        servers.append(Server(route))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _judge(base_url: str) -> HTTPJudge:
    judge = HTTPJudge(JudgeConfig(kind="http", model="fake", base_url=base_url, api_key_env=KEY_ENV,
                                  retries=3, backoff_s=0.01, timeout_s=5.0))
    judge.sleep = lambda s: pytest.fail("a redirect refusal must not be retried")
    return judge


def _answer(server: Server, method: str, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    return 200, {}, COMPLETION


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_cross_origin_redirect_is_refused_without_sending_the_key(serve, monkeypatch, code):
    monkeypatch.setenv(KEY_ENV, "sk-secret")
    b = serve(_answer)
    a = serve(lambda s, m, p: (code, {"Location": f"{b.origin}/v1/chat/completions"}, {}))
    with pytest.raises(JudgeError) as err:
        _judge(f"{a.origin}/v1").complete("q")
    assert str(err.value) == (f"judge.base_url redirected from {a.origin} to {b.origin}: "
                              "refusing to send the API key to another origin")
    assert a.seen == [("POST", "/v1/chat/completions", "Bearer sk-secret")]  # asked once: no retry
    assert b.seen == []


def test_redirect_to_another_scheme_on_the_same_host_and_port_is_refused(serve, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-secret")
    a = serve(lambda s, m, p: (302, {"Location": s.origin.replace("http:", "https:") + p}, {}))
    with pytest.raises(JudgeError, match="refusing to send the API key to another origin"):
        _judge(f"{a.origin}/v1").complete("q")
    assert len(a.seen) == 1


def test_origin_tells_schemes_and_ports_apart():
    assert _origin("https://api.example.com/v1") == _origin("HTTPS://API.example.com:443/v2") \
        == "https://api.example.com:443"
    assert _origin("https://h/v1") != _origin("http://h/v1")  # a downgrade is another origin
    assert _origin("http://h/v1") != _origin("http://h:8080/v1")
    assert _origin("http://[::1]:9/v1") == "http://[::1]:9"


def test_same_origin_redirect_is_followed_with_the_key(serve, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-secret")

    def route(server: Server, method: str, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        if path == "/v1/chat/completions":
            return 302, {"Location": "/v2/chat/completions"}, {}  # relative: resolved against A
        return 200, {}, COMPLETION

    a = serve(route)
    assert _judge(f"{a.origin}/v1").complete("q") == "Answer: yes"
    # urllib turns a 302 after POST into a GET (as browsers do); the key stays on the one origin.
    assert a.seen == [("POST", "/v1/chat/completions", "Bearer sk-secret"),
                      ("GET", "/v2/chat/completions", "Bearer sk-secret")]


@pytest.mark.parametrize("url, warns", [
    ("http://example.com/v1", True),
    ("HTTP://10.0.0.5:8000/v1", True),
    ("https://example.com/v1", False),
    ("http://127.0.0.1:8000/v1", False),
    ("http://127.3.2.1/v1", False),
    ("http://localhost:8000/v1", False),
    ("http://[::1]:8000/v1", False),
])
def test_plain_http_to_a_remote_host_warns_once(caplog, url, warns):
    with caplog.at_level(logging.WARNING, logger="vau.eval.judge"):
        HTTPJudge(JudgeConfig(kind="http", model="fake", base_url=url, api_key_env=KEY_ENV))
    lines = [r.getMessage() for r in caplog.records if r.name == "vau.eval.judge"]
    if warns:
        assert len(lines) == 1 and "\n" not in lines[0]
        assert f"judge.base_url={url} is plain http" in lines[0] and "unencrypted" in lines[0]
    else:
        assert lines == []
