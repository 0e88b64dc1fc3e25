"""LLM judges for AnomEval: a local HF causal LM or an OpenAI-compatible HTTP endpoint, with a disk cache.

Every judge maps one user message to the answer text. :class:`CachedJudge` keys answers by the
judge's ``identity`` (kind, model, decoding settings; never a key) and the prompt, so a re-run
of ``vau eval`` costs no judge calls and gives the same scores.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vau.config.eval import JudgeConfig
from vau.io import atomic_write_text
from vau.metrics.anomeval import Judge
from vau.registry import Registry
from vau.errors import ConfigError, NotFoundError, VauError

log = logging.getLogger(__name__)


class JudgeError(VauError, RuntimeError):
    """A judge call that cannot succeed (bad request, missing key, retries exhausted, odd response)."""


def _one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


class HFJudge:
    """A local causal LM (``from_pretrained`` of a folder, safetensors or GGUF), loaded on first use.

    Args:
        cfg: The judge settings (``kind=hf``).

    Raises:
        ValueError: ``cfg.model`` is null.
        FileNotFoundError: ``cfg.model`` is not a folder.
    """

    def __init__(self, cfg: JudgeConfig) -> None:
        if not cfg.model:
            raise ConfigError("judge.model is null: set it to a local HF model folder (judge.kind=hf)")
        if not Path(cfg.model).is_dir():
            raise NotFoundError(f"judge.model={cfg.model}: not a directory (expected a local HF model folder)")
        self.cfg = cfg
        # The device is left out: it does not change what a greedy judge means to say.
        self.identity = (f"hf model={cfg.model} gguf_file={cfg.gguf_file} dtype={cfg.dtype} "
                         f"max_new_tokens={cfg.max_new_tokens} temperature={cfg.temperature}")
        self._model: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        from transformers import AutoTokenizer

        from vau.models.llm import load_pretrained_lm

        cfg = self.cfg
        self._tok = AutoTokenizer.from_pretrained(cfg.model, gguf_file=cfg.gguf_file,
                                                  trust_remote_code=cfg.trust_remote_code, local_files_only=True)
        model = load_pretrained_lm(cfg.model, cfg.dtype, cfg.gguf_file, cfg.trust_remote_code, key="judge.model")
        self._model = model.to(cfg.device).eval()

    def complete(self, prompt: str) -> str:
        """Generates the answer (greedy when temperature is 0) and returns only the new text."""
        import torch

        if self._model is None:
            self._load()
        tok, cfg = self._tok, self.cfg
        if getattr(tok, "chat_template", None):
            inputs = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             tokenize=True, return_dict=True, return_tensors="pt")
        else:
            inputs = tok(prompt, return_tensors="pt")
        inputs = {k: v.to(self._model.device) for k, v in inputs.items()}
        decoding: dict[str, Any] = {"do_sample": False}
        if cfg.temperature > 0:
            decoding = {"do_sample": True, "temperature": cfg.temperature}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = self._model.generate(**inputs, max_new_tokens=cfg.max_new_tokens, pad_token_id=pad, **decoding)
        return tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


class _Transient(Exception):
    """A failure worth retrying (429, 5xx, network, timeout)."""


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, the port made explicit (80/443 when left out)."""
    parts = urllib.parse.urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _is_local(host: str | None) -> bool:
    """Whether ``host`` is this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SameOriginRedirect(urllib.request.HTTPRedirectHandler):
    """Follows redirects within one origin only; urllib would resend ``Authorization`` to any host."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        """The default redirect for a same-origin target; a :class:`JudgeError` for any other."""
        src, dst = _origin(req.full_url), _origin(newurl)
        if src != dst:
            fp.close()  # urllib closes it only when a redirect is followed
            # A permanent config problem, not a transient one: never retried.
            raise JudgeError(f"judge.base_url redirected from {src} to {dst}: "
                             "refusing to send the API key to another origin")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class HTTPJudge:
    """An OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint.

    The API key comes from the environment variable ``cfg.api_key_env`` at call time, so a
    fully cached re-run needs no key. Errors 429/5xx, network errors and timeouts are retried
    ``cfg.retries`` times, waiting ``cfg.backoff_s`` seconds and doubling; other 4xx fail at once.
    Redirects are followed only within the origin (scheme, host, port) of the request, so the
    key never reaches another server; a plain ``http://`` URL to a non-local host logs a warning.

    Args:
        cfg: The judge settings (``kind=http``).

    Raises:
        ValueError: ``cfg.base_url`` or ``cfg.model`` is not set.
    """

    def __init__(self, cfg: JudgeConfig) -> None:
        if not cfg.base_url:
            raise ConfigError("judge.base_url is null: set it to the endpoint, e.g. https://api.openai.com/v1")
        if not cfg.model:
            raise ConfigError("judge.model is null: set it to the model name the endpoint serves")
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.identity = (f"http base_url={cfg.base_url.rstrip('/')} model={cfg.model} "
                         f"max_tokens={cfg.max_new_tokens} temperature={cfg.temperature}")
        self.sleep: Callable[[float], None] = time.sleep
        """Waits between retries (tests replace it)."""
        self._opener = urllib.request.build_opener(_SameOriginRedirect)
        parts = urllib.parse.urlsplit(cfg.base_url)
        if parts.scheme.lower() == "http" and not _is_local(parts.hostname):
            log.warning("judge.base_url=%s is plain http: the API key would travel unencrypted to %s (use https)",
                        cfg.base_url, parts.hostname)

    def _key(self) -> str:
        key = os.environ.get(self.cfg.api_key_env)
        if not key:
            raise JudgeError(f"judge: environment variable {self.cfg.api_key_env} is not set "
                             f"(the API key for {self.cfg.base_url}; judge.api_key_env names it)")
        return key

    def complete(self, prompt: str) -> str:
        """Sends ``prompt`` as one user message; returns ``choices[0].message.content``.

        Raises:
            JudgeError: A 4xx other than 429, an unset key, an unexpected response, or all retries failed.
        """
        cfg = self.cfg
        body = json.dumps({"model": cfg.model, "messages": [{"role": "user", "content": prompt}],
                           "temperature": cfg.temperature, "max_tokens": cfg.max_new_tokens}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._key()}"}
        delay, attempt = cfg.backoff_s, 0
        while True:
            try:
                return self._post(body, headers)
            except _Transient as e:
                if attempt >= cfg.retries:
                    raise JudgeError(f"judge {self.url}: failed {attempt + 1} time(s), last: {e}") from None
            self.sleep(delay)
            delay, attempt = delay * 2, attempt + 1

    def _post(self, body: bytes, headers: dict[str, str]) -> str:
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.cfg.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:  # before URLError: it is a subclass
            excerpt = _one_line(e.read().decode("utf-8", errors="replace"))
            if e.code == 429 or e.code >= 500:
                raise _Transient(f"HTTP {e.code}: {excerpt}") from None
            raise JudgeError(f"judge {self.url}: HTTP {e.code}: {excerpt}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
            raise _Transient(f"{type(e).__name__}: {_one_line(str(e))}") from None
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"judge {self.url}: no choices[0].message.content in the response: "
                             f"{_one_line(raw.decode('utf-8', errors='replace'))}") from None
        # Some endpoints send null content (refusal, length cut); the scorer then records it unparseable.
        return content if isinstance(content, str) else ""


JUDGES: Registry[Callable[[JudgeConfig], Judge]] = Registry("judge backend")
JUDGES.register("hf", HFJudge)
JUDGES.register("http", HTTPJudge)


class CachedJudge:
    """A judge whose answers are kept on disk, one JSON file per (identity, prompt).

    Args:
        judge: The judge asked on a cache miss.
        cache_dir: Folder of the cached answers (created on first write).

    Attributes:
        calls: Calls made to the inner judge.
        hits: Answers served from the cache.
    """

    def __init__(self, judge: Judge, cache_dir: str | os.PathLike) -> None:
        self.judge = judge
        self.cache_dir = Path(cache_dir)
        self.calls = 0
        self.hits = 0

    @property
    def identity(self) -> str:
        """The inner judge's identity."""
        return self.judge.identity

    def path(self, prompt: str) -> Path:
        """Cache file of ``prompt``: ``cache_dir/<h[:2]>/<h>.json``, h = sha256 of identity and prompt."""
        h = hashlib.sha256(json.dumps({"judge": self.identity, "prompt": prompt}).encode()).hexdigest()
        return self.cache_dir / h[:2] / f"{h}.json"

    def _cached(self, path: Path, prompt: str) -> str | None:
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            return None  # a torn or corrupt file is a miss; the fresh answer overwrites it
        if (not isinstance(entry, dict) or entry.get("identity") != self.identity
                or entry.get("prompt") != prompt or not isinstance(entry.get("answer"), str)):
            return None
        return entry["answer"]

    def complete(self, prompt: str) -> str:
        """The cached answer to ``prompt``, else the inner judge's (then stored atomically)."""
        path = self.path(prompt)
        answer = self._cached(path, prompt)
        if answer is not None:
            self.hits += 1
            return answer
        self.calls += 1
        answer = self.judge.complete(prompt)
        atomic_write_text(path, json.dumps({"identity": self.identity, "prompt": prompt, "answer": answer}))
        return answer


def build_judge(cfg: JudgeConfig, cache_dir: str | os.PathLike, key: str = "judge") -> CachedJudge:
    """The judge of ``cfg.kind`` behind a disk cache.

    Args:
        cfg: Judge settings; ``cfg.cache_dir``, when set, wins over ``cache_dir``.
        cache_dir: Default cache folder (``<out>/judge_cache``).
        key: Where ``cfg`` sits in the user's config (``anomeval.judge``), named in errors.

    Raises:
        KeyError: Unknown backend (the message lists the valid ones).
        ValueError, FileNotFoundError: A setting the backend needs is missing or wrong (one line
            naming ``key``).
    """
    try:
        judge = JUDGES.get(cfg.kind)(cfg)
    except (ValueError, FileNotFoundError) as e:
        # The backends name their settings "judge.<field>"; say where that is in this config.
        raise type(e)(str(e).replace("judge.", f"{key}.")) from None
    return CachedJudge(judge, cfg.cache_dir or cache_dir)
