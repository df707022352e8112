"""Kill a notifier process (SIGKILL) in the middle of a burst, start another, and count what
the partners' phones got.

The guarantee under test is the one ``services/notifier/delivery.py`` documents: no nudge
is lost, and duplicates are confined to sends that were in flight at the moment of the
kill -- the provider accepted the message but the process died before the Redis ``sent``
mark (one round trip later). Couples are delivered concurrently, so as many sends as may
be in flight to one provider host at once (``limits.PER_HOST``; the inbox is one host),
and as many again that had just finished, can be in that window together: we assert no
loss, at most that many duplicates (``CRASH_DUPLICATES``), and report how many there were.

The kill is triggered by an arrival at the sink, i.e. right inside that window, while
slow answers keep every send slot busy: the worst case on purpose, so the test usually
shows about ``PER_HOST`` duplicates.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from shared.kafka import ensure_topics
from tandem.inbox import Fault, Inbox
from tandem.notifier_harness import Couple, Partner, make_nudge, publish_nudges, store_couple
from tests.support.notifier import CRASH_DUPLICATES

ROOT = Path(__file__).resolve().parents[2]
COUPLES = 6
PER_COUPLE = 5


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "services.notifier"], cwd=ROOT, env=env, stdout=f, stderr=f
        )


async def test_sigkill_mid_burst_loses_nothing(infra, inbox: Inbox, tmp_path: Path) -> None:
    overrides: dict[str, object] = {
        "delivery_connect_timeout": 1.0,
        "delivery_read_timeout": 2.0,
        "delivery_backoff_seconds": 0.2,
        "delivery_backoff_max_seconds": 1.0,
        "log_format": "console",
    }
    settings = infra.settings(**overrides)
    env = infra.env(**overrides)
    await ensure_topics(settings)
    couples = [
        Couple(
            id=f"cpl_k{i}",
            partners=[
                Partner(f"sam{i}", [("c_push", "push", inbox.json_url(f"sam{i}"))]),
                Partner(f"alex{i}", [("c_push2", "push", inbox.ntfy_url(f"alex{i}"))]),
            ],
        )
        for i in range(COUPLES)
    ]
    warmup = Couple(
        id="cpl_warm",
        partners=[Partner("warm", [("c_w", "push", inbox.json_url("warm"))])],
    )
    for c in [*couples, warmup]:
        await store_couple(settings, c)
    # A slow provider, so the burst is still being delivered when the kill lands.
    for i in range(COUPLES):
        inbox.fault(f"sam{i}", Fault(delay=0.05))
        inbox.fault(f"alex{i}", Fault(delay=0.05))

    log = tmp_path / "notifier.log"
    first = _start(env, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        await publish_nudges(settings, make_nudge(warmup))
        await asyncio.to_thread(inbox.wait_for, lambda r: len(r) >= 1, 45)  # first is live

        nudges = [make_nudge(c) for _ in range(PER_COUPLE) for c in couples]
        await publish_nudges(settings, *nudges)
        await asyncio.to_thread(inbox.wait_for, lambda r: len(r) >= 1 + 16, 45)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        at_kill = len(inbox.received) - 1

        second = _start(env, log)
        expected = {
            (n.occurrence_id, addr)
            for n in nudges
            for addr in (f"sam{n.couple_id[5:]}", f"alex{n.couple_id[5:]}")
        }

        def all_arrived(received) -> bool:
            got = {(r.body.split("(")[-1].rstrip(")"), r.address) for r in received}
            return expected <= got

        # Generous: the group waits out the dead member's session before rebalancing.
        await asyncio.to_thread(inbox.wait_for, all_arrived, 60)
        await asyncio.sleep(1.0)  # let any straggler duplicate show up before counting
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    counts = Counter(
        (r.body.split("(")[-1].rstrip(")"), r.address)
        for r in inbox.received
        if r.address != "warm"
    )
    assert set(counts) == expected, "every partner got every nudge"
    duplicates = sum(n - 1 for n in counts.values())
    print(f"delivered before kill: {at_kill}/60; duplicates after SIGKILL: {duplicates}")
    assert duplicates <= CRASH_DUPLICATES, log.read_text()[-5000:]
    assert second is not None and second.returncode == 0, "clean exit on SIGTERM"
