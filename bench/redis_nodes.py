"""Per-master Redis figures for the herd bench: keys, memory, commands and claims.

A single Redis is one node; for a Redis Cluster (``redis+cluster://``) every node its URL
lists, which for the bench's local cluster (no replicas) are all its masters. Each node is
read directly with a plain client, so ``INFO`` and ``DBSIZE`` answer for that node alone,
and a schedule bucket's keys are read on the node that owns their slot.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis import Redis
from redis.crc import key_slot

from shared.redis import ClusterUrl

POLL_SECONDS = 0.05


def node_addresses(url: str) -> list[tuple[str, int]]:
    """host, port of every node ``url`` names (one for a single Redis)."""
    cluster = ClusterUrl.parse(url)
    if cluster is not None:
        return list(cluster.nodes)
    parts = urlsplit(url)
    return [(parts.hostname or "127.0.0.1", parts.port or 6379)]


@dataclass
class Snapshot:
    """One node's counters at one moment."""

    at: float
    keys: int
    used_memory: int
    clients_memory: int  # of it, the connections' buffers (many client pools on a cluster)
    cpu_s: float  # the server's user + system CPU seconds
    calls: dict[str, int]  # command -> calls since start
    usec: dict[str, int]  # command -> microseconds spent in it since start


class Nodes:
    """The masters of the store at ``url`` (the bench's own, so no credentials), and where
    each of the scheduler's ``buckets`` buckets (key prefix ``prefix``) lives."""

    def __init__(self, url: str, prefix: str, buckets: int) -> None:
        self.clients = [
            Redis(host=host, port=port, decode_responses=True) for host, port in node_addresses(url)
        ]
        self.cluster = ClusterUrl.parse(url) is not None
        self.names = (
            [f"redis-master-{i + 1}" for i in range(len(self.clients))]
            if self.cluster
            else ["redis"]
        )
        self.prefix = prefix
        self.polled = [0] * len(self.clients)  # zcount + zcard calls of due(), per node
        self.owner = {b: self._owner(self._queue(b)) for b in range(buckets)}

    def _queue(self, bucket: int) -> str:
        return f"{self.prefix}:s:{{s{bucket}}}:q"

    def _owner(self, key: str) -> int:
        """Index of the node serving ``key``'s slot (per ``CLUSTER SLOTS``)."""
        if not self.cluster:
            return 0
        slot = key_slot(key.encode())
        ports = [c.connection_pool.connection_kwargs["port"] for c in self.clients]
        for start, end, primary, *_ in self.clients[0].execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return ports.index(int(primary[1]))
        raise LookupError(f"no node serves slot {slot}")

    def pids(self) -> dict[str, int]:
        """Each node's process id, by name."""
        return {
            name: int(client.info("server")["process_id"])
            for name, client in zip(self.names, self.clients, strict=True)
        }

    def snapshot(self) -> list[Snapshot]:
        """Every node's keys, memory, CPU and command counters now."""
        out = []
        for client in self.clients:
            info = client.info("all")
            stats = {
                k.removeprefix("cmdstat_"): v for k, v in info.items() if k.startswith("cmdstat_")
            }
            out.append(
                Snapshot(
                    at=time.time(),
                    keys=int(client.dbsize()),
                    used_memory=int(info["used_memory"]),
                    clients_memory=int(info["mem_clients_normal"]),
                    cpu_s=float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
                    calls={k: int(v["calls"]) for k, v in stats.items()},
                    usec={k: int(v["usec"]) for k, v in stats.items()},
                )
            )
        return out

    def due(self, until: float) -> list[int]:
        """Per node: schedule tracks due by ``until`` (epoch seconds) still waiting in a
        bucket's queue, plus tracks claimed but not yet committed (under a lease)."""
        counts = [0] * len(self.clients)
        for index, client in enumerate(self.clients):
            pipe = client.pipeline(transaction=False)
            mine = [b for b, owner in self.owner.items() if owner == index]
            for b in mine:
                pipe.zcount(self._queue(b), "-inf", until)
                pipe.zcard(f"{self.prefix}:s:{{s{b}}}:l")
            self.polled[index] += len(mine)
            counts[index] = sum(int(n) for n in pipe.execute())
        return counts

    def close(self) -> None:
        for client in self.clients:
            client.close()


class ClaimWatch:
    """Polls :meth:`Nodes.due` every :data:`POLL_SECONDS` on its own thread (and its own
    connections): how each master's share of a herd was claimed and committed over time."""

    def __init__(self, url: str, prefix: str, buckets: int, until: float) -> None:
        self._nodes = Nodes(url, prefix, buckets)
        self._until = until
        self.samples: list[tuple[float, list[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claim-watch", daemon=True)

    @property
    def polled(self) -> list[int]:
        """Commands this watch sent to each node (to leave out of its figures)."""
        return self._nodes.polled

    def start(self) -> ClaimWatch:
        self.samples.append((time.time(), self._nodes.due(self._until)))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._nodes.close()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            counts = self._nodes.due(self._until)
            self.samples.append((time.time(), counts))
            if not any(counts):
                return

    def per_node(self, instant: float) -> list[dict[str, Any]]:
        """Per node: tracks of the herd on it, when the first was claimed and when the last
        was committed (seconds after ``instant``, to within one poll), and claims per second
        between the two."""
        out = []
        for index, initial in enumerate(self.samples[0][1]):
            first = next((t for t, c in self.samples if c[index] < initial), None)
            done = next((t for t, c in self.samples if c[index] == 0), None)
            span = (done - first + POLL_SECONDS) if first is not None and done is not None else None
            out.append(
                {
                    "tracks": initial,
                    "first_claim_s": _r3(first - instant) if first is not None else None,
                    "all_committed_s": _r3(done - instant) if done is not None else None,
                    "claims_per_s": round(initial / span) if span else None,
                }
            )
        return out


def _r3(x: float) -> float:
    return round(x, 3)


def _rates(before: Snapshot, after: Snapshot, polled: int, top: int = 6) -> dict[str, Any]:
    """Commands per second between two snapshots, less ``polled`` ZCOUNT and ZCARD calls
    each (the bench's own :class:`ClaimWatch`)."""
    seconds = max(after.at - before.at, 1e-9)
    calls = {k: n - before.calls.get(k, 0) for k, n in after.calls.items()}
    for own in ("zcount", "zcard"):
        if own in calls:
            calls[own] -= polled
    calls = {k: n for k, n in calls.items() if n > 0}
    busiest = sorted(calls, key=lambda k: -calls[k])[:top]
    usec = {k: after.usec[k] - before.usec.get(k, 0) for k in calls}
    return {
        "window_s": _r3(seconds),
        "commands_per_s": round(sum(calls.values()) / seconds),
        "by_command_per_s": {k: round(calls[k] / seconds) for k in busiest},
        "usec_per_call": {k: round(usec[k] / calls[k], 1) for k in busiest},
        "cpu_s": _r3(after.cpu_s - before.cpu_s),
    }


def store_figures(
    names: list[str],
    empty: list[Snapshot],
    seeded: list[Snapshot],
    before: list[Snapshot],
    after: list[Snapshot],
    couples: int,
    polled: list[int],
) -> dict[str, Any]:
    """Per master and in total: keys and memory with no couples (``empty``), with the
    herd's ``couples`` created (``seeded``) and after the herd (``after``); command rates
    and Redis CPU over the herd (``before`` to ``after``); and per couple, keys and bytes
    of the seeded store and after the herd's history (used memory, and less the
    connections' buffers, which grow with the client pools: one per node on a cluster)."""
    mib = 2**20
    masters = {
        name: {
            "keys": [e.keys, s.keys, a.keys],
            "clients_mib": [round(x.clients_memory / mib, 1) for x in (e, s, a)],
            "used_memory_mib": [round(x.used_memory / mib, 1) for x in (e, s, a)],
            "herd": _rates(b, a, p),
        }
        for name, e, s, b, a, p in zip(names, empty, seeded, before, after, polled, strict=True)
    }

    def total(snaps: list[Snapshot], field: str) -> int:
        return sum(int(getattr(s, field)) for s in snaps)

    def data(snaps: list[Snapshot]) -> int:
        return total(snaps, "used_memory") - total(snaps, "clients_memory")

    return {
        "masters": masters,
        "keys_per_couple": _r3((total(seeded, "keys") - total(empty, "keys")) / couples),
        "bytes_per_couple": round(
            (total(seeded, "used_memory") - total(empty, "used_memory")) / couples
        ),
        "data_bytes_per_couple": round((data(seeded) - data(empty)) / couples),
        "data_bytes_per_couple_after_herd": round((data(after) - data(empty)) / couples),
        "keys_per_couple_after_herd": _r3((total(after, "keys") - total(empty, "keys")) / couples),
        "bytes_per_couple_after_herd": round(
            (total(after, "used_memory") - total(empty, "used_memory")) / couples
        ),
        "redis_cpu_s_herd": _r3(sum(a.cpu_s - b.cpu_s for b, a in zip(before, after, strict=True))),
    }
