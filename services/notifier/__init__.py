"""The notifier: turns ``nudge.ready`` into notifications on both partners' phones.

Modules, each one concept:

- :mod:`.quiet_hours` (pure) -- when may a partner be buzzed, and the hold policy.
- :mod:`.backoff` (pure) -- how long to wait before the next attempt.
- :mod:`.channels` -- the Apprise adapter: one send to one channel URL, classified.
- :mod:`.store` -- Redis: the idempotency ledger and the delay queue (retries, holds).
- :mod:`.delivery` -- the use case: deliver one nudge to some partners, with fallback.
- :mod:`.worker` -- wiring: the Kafka handler and the delay-queue drain task.
- :mod:`.metrics` -- Prometheus metrics.
"""
