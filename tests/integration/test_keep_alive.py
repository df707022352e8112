"""The API keeps an idle keep-alive connection open longer than clients keep theirs: with
uvicorn's 5 s default, a client reusing a connection at about 5 s (httpx's own expiry)
could send a request the server was already closing, and lose it without an answer."""

from __future__ import annotations

import socket
import time

from shared.service import KEEP_ALIVE_SECONDS
from tandem.embedded import free_port, wait_for_port
from tests.support.processes import running_services

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
# httpx keeps an idle connection 5 s; past it the client, not the server, closes.
CLIENT_IDLE_SECONDS = 5.0


def _answer(conn: socket.socket) -> bytes:
    """One whole response to /healthz (a short JSON body, sent at once)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(4096)
    return head


def test_an_idle_connection_still_answers_after_a_clients_keep_alive(module_infra) -> None:
    assert KEEP_ALIVE_SECONDS > CLIENT_IDLE_SECONDS
    port = free_port()
    with running_services({"scheduler": module_infra.env(api_port=port)}) as procs:
        wait_for_port(port, timeout=60, proc=procs["scheduler"])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(REQUEST)
            assert _answer(conn).startswith(b"HTTP/1.1 200")
            time.sleep(CLIENT_IDLE_SECONDS + 0.5)
            conn.sendall(REQUEST)  # the same connection, idle longer than uvicorn's default
            assert _answer(conn).startswith(b"HTTP/1.1 200")
