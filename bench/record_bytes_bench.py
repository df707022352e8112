"""Redis bytes per couple and CPU per record read, the stored layout of c44b517 beside today's.

    .venv/bin/python bench/record_bytes_bench.py [--couples 2000] [--rounds 5]

Starts one embedded Redis and stores ``--couples`` couples (two channels, one evening
check-in each) twice, under two key prefixes: once through :class:`SchedulerStore` (today's
compact layout) and once as c44b517 wrote them (plain JSON records, the channels' JSON
encrypted as it is, the token's full digest in the index and a ``t:<digest>`` lookup key;
the schedule keys are the same in both). Reports the
``MEMORY USAGE`` summed over each layout's keys per couple, and the CPU (``process_time``)
per couple of the firing path's batch reads (``get_couples`` + ``get_rituals``, which read
either layout) and of the notifier's ``channel_url``, the layouts alternating per round.
The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from services.scheduler.rituals import Channel, Couple, Partner, Ritual, ScheduleSpec
from services.scheduler.store import NewCouple, SchedulerStore, new_couple_token, token_hash
from shared.ids import new_id
from shared.redis import Keys, StrRedis
from shared.secrets import SecretBox
from shared.vault import Vault
from tandem.embedded import start_redis

# Both as long as the default prefix `tandem`, which every key carries.
PREFIXES = {"c44b517": "legacy", "compact": "tandem"}
URLS = ("json://hooks.example.net/hook?token=", "mailto://smtp.example.net?to=alex@example.net")


def _new_couple(now: datetime) -> NewCouple:
    cid = new_id("cpl")
    chans = [Channel(id=new_id("chn"), kind="push", redacted="json://hooks.example.net/***")]
    mail = "mailto://smtp.example.net/a***@example.net?cto=15.0&overflow=upstream&optional=no"
    chans.append(Channel(id=new_id("chn"), kind="email", redacted=mail))
    sam = Partner(id=new_id("prt"), name="Sam", timezone="Europe/Berlin", channels=chans[:1])
    alex = Partner(id=new_id("prt"), name="Alex", timezone="America/New_York", channels=chans[1:])
    couple = Couple(id=cid, name="Sam & Alex", partners=[sam, alex], created_at=now)
    schedule = ScheduleSpec(
        rrule="FREQ=DAILY;BYHOUR=21;BYMINUTE=0",
        timezone="Europe/Berlin",
        start=datetime(2026, 1, 1),
    )
    ritual = Ritual(
        id=new_id("rit"),
        couple_id=cid,
        kind="evening_checkin",
        title="Evening check-in",
        schedule=schedule,
        created_at=now,
    )
    urls = {chans[0].id: URLS[0] + new_id("s"), chans[1].id: URLS[1]}
    return NewCouple(couple, new_couple_token(cid), urls, [(ritual, {ritual.id: 1.9e9})])


async def _as_c44b517(store: SchedulerStore, couples: list[NewCouple]) -> None:
    """Overwrite the records with what c44b517 stored for them."""
    async with store.redis.pipeline(transaction=False) as pipe:
        for new in couples:
            pipe.set(
                store._couple(new.couple.id), new.couple.model_dump_json(exclude_defaults=True)
            )
            for ritual, _ in new.rituals:
                pipe.set(store._ritual(ritual.id), ritual.model_dump_json(exclude_defaults=True))
            token = store.vault.box.encrypt(
                json.dumps(new.channel_urls, separators=(",", ":")).encode()
            )
            pipe.set(store.vault._channels(new.couple.id), token)
            digest = token_hash(new.token)
            pipe.hset(store._couple_index(new.couple.id), "t", digest)
            pipe.set(store._token(digest), new.couple.id)
        await pipe.execute()


async def _bytes(redis: StrRedis, prefix: str) -> int:
    total = 0
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        total += await redis.memory_usage(key, samples=0) or 0
    return total


async def _read_cpu(store: SchedulerStore, couples: list[NewCouple]) -> tuple[float, float]:
    """CPU seconds per couple: the firing path's reads, and the notifier's URL look-ups."""
    ids = [n.couple.id for n in couples]
    rids = [r.id for n in couples for r, _ in n.rituals]
    start = time.process_time()
    for i in range(0, len(ids), 500):
        await store.get_couples(ids[i : i + 500])
        await store.get_rituals(rids[i : i + 500])
    firing = (time.process_time() - start) / len(ids)
    start = time.process_time()
    for n in couples:
        await store.vault.channel_url(n.couple.id, n.couple.partners[0].channels[0].id)
    return firing, (time.process_time() - start) / len(ids)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server = start_redis()
    try:
        redis: StrRedis = StrRedis(port=server.port, decode_responses=True)
        box = SecretBox(SecretBox.generate_key())
        now = datetime.now(UTC)
        stores, sets = {}, {}
        for layout in ("c44b517", "compact"):
            keys = Keys(PREFIXES[layout])
            store = SchedulerStore(redis, keys, Vault(redis, keys, box), buckets=16)
            sets[layout] = [_new_couple(now) for _ in range(args.couples)]
            for i in range(0, args.couples, 500):
                await store.create_couples(sets[layout][i : i + 500])
            if layout == "c44b517":
                await _as_c44b517(store, sets[layout])
            stores[layout] = store
        per_couple = {k: await _bytes(redis, PREFIXES[k]) / args.couples for k in stores}
        cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in stores}
        for r in range(args.rounds):
            order = list(stores) if r % 2 == 0 else list(reversed(stores))
            for layout in order:
                cpu[layout].append(await _read_cpu(stores[layout], sets[layout]))
        await redis.aclose()
    finally:
        server.stop()
    summary: dict[str, Any] = {"couples": args.couples}
    for layout in stores:
        firing = statistics.median(f for f, _ in cpu[layout]) * 1e6
        url = statistics.median(u for _, u in cpu[layout]) * 1e6
        summary[f"{layout}_bytes_per_couple"] = round(per_couple[layout])
        summary[f"{layout}_firing_read_cpu_us_per_couple"] = round(firing, 1)
        summary[f"{layout}_channel_url_cpu_us"] = round(url, 1)
        print(f"{layout:8} {per_couple[layout]:7.0f} B/couple  firing reads {firing:6.1f} µs CPU")
        print(f"{'':8} {'':17} channel_url   {url:6.1f} µs CPU")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--couples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
