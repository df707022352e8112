"""Keep-alive for Apprise's HTTP plugins: one pooled ``requests.Session`` per sending thread.

Apprise (2.x) plugins send with the module-level ``requests.post(...)`` /
``requests.request(...)``; each such call builds a throwaway ``Session``, so every
notification opens (and closes) its own TCP (+TLS) connection. Apprise offers no hook to
hand a plugin a session. So, scoped like the egress guard (:mod:`shared.egress`), with a
:class:`contextvars.ContextVar`: :func:`install` wraps ``requests.api.request`` (which
``requests.post``/``get``/... call) and ``requests.request`` once per process; the wrapper
uses the calling thread's pooled session when :func:`pooled` is active in the current
context -- set only around :meth:`Channels.send`'s Apprise call and copied into the worker
thread that runs it -- and behaves exactly as before everywhere else.

Why this is safe:

- **One session per thread** (``threading.local``): a ``Session`` is never shared between
  threads, so its (small) mutable state needs no locking. Each worker thread keeps at most
  :data:`PER_HOST` idle connections per provider host; they close when the server drops
  them (urllib3 notices a dropped idle connection before reusing it).
- **No cookies carried between sends**: the sessions refuse every cookie, so nothing one
  partner's provider set can ride along with another partner's request -- the same as a
  fresh session per request.
- **Egress** (:mod:`shared.egress`): a pooled connection was opened inside a guarded send,
  where the audit hook checked its resolved address against this process's (fixed) policy;
  reusing it talks to that same checked address. New connections are checked as before.
- Everything else (TLS verification, redirects, timeouts) is what ``requests.request``
  does: the wrapper calls ``Session.request`` with the plugin's own arguments, as
  ``requests.api.request`` itself does. The environment is read the same way too, with
  one economy: when it holds no proxy variable and there is no netrc file, the sessions
  skip reading it on every request (``trust_env = False``; about a third of a local
  send's CPU time is ``requests`` scanning ``os.environ`` for proxies), and apply a
  ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` themselves exactly as ``requests`` would (to a
  request verifying with the default CA set). The check is made when a
  thread's session is created, so a proxy set in the environment of a running notifier
  is seen by threads started after it (set it before starting, as any setting).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

import requests
import requests.api
from requests.adapters import HTTPAdapter

# Idle connections a worker thread keeps per provider host (urllib3 pool size).
PER_HOST = 2

_ACTIVE: ContextVar[bool] = ContextVar("tandem_keepalive", default=False)
_local = threading.local()
_lock = threading.Lock()
_original: Any = None


def _session() -> requests.Session:
    """This thread's pooled session (made on first use)."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = _environment_matters()
        _local.bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=PER_HOST)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _local.session = session
    return session


def _environment_matters() -> bool:
    """True if the environment holds a proxy setting or a netrc file, which ``requests``
    reads per request (a CA bundle is applied by :func:`_request` instead)."""
    names = {name.lower() for name in os.environ}
    if "netrc" in names or any(name.endswith("_proxy") for name in names):
        return True
    home = Path.home()
    return (home / ".netrc").exists() or (home / "_netrc").exists()


def _request(method: str, url: str | bytes, **kwargs: Any) -> requests.Response:
    if not _ACTIVE.get():
        return _original(method, url, **kwargs)
    session = _session()
    bundle = _local.bundle
    if bundle and not session.trust_env and kwargs.get("verify", True) in (True, None):
        kwargs["verify"] = bundle  # what Session.merge_environment_settings would do
    return session.request(method=method, url=url, **kwargs)


def install() -> None:
    """Route ``requests``' module-level calls through :func:`_request` (idempotent)."""
    global _original
    with _lock:
        if _original is not None:
            return
        _original = requests.api.request
        # what requests.post/get/put/... call, and what a plugin's requests.request() is
        requests.api.request = requests.request = _request  # type: ignore[assignment]


@contextmanager
def pooled() -> Iterator[None]:
    """Within this context (and Apprise worker threads it is copied into), plugins'
    ``requests`` calls reuse the thread's kept-alive connections."""
    install()
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
