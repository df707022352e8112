"""Helpers for the tests, one concept per module; test modules import only from here.

- :mod:`.infra` -- :class:`~tests.support.infra.Infra`: the broker and Redis a test runs
  against, and where they come from (embedded, external, or testcontainers).
- :mod:`.kafka` -- :class:`~tests.support.kafka.TopicReader`: read what services publish.
- :mod:`.scheduler` -- an in-process scheduler replica and couple payloads for its API.
- :mod:`.content` -- ``ritual.due`` builders (Alex in Berlin, Sam in New York).
- :mod:`.content_worker` -- the content worker in process and a :class:`Bus` around it.
- :mod:`.notifier` -- fast notifier settings, a two-partner couple at the inbox, waiting on
  the inbox. The couple/nudge builders and the in-process notifier are
  :mod:`tandem.notifier_harness`, shared with ``bench/``.
- :mod:`.processes` -- the three services as real processes.

The fixtures are registered in ``tests/conftest.py`` (``infra``, ``module_infra``, ``inbox``)
and ``tests/integration/conftest.py`` (``bus``).
"""
