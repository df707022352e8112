"""The README's `curl` examples work exactly as written, against the dev stack.

Every ```sh block of the README but the first (``make run`` / ``make test``) is run in
order in one bash, as a reader would paste them, with ``API`` and ``TANDEM_ADMIN_TOKEN``
from a running ``tandem dev`` stack. ``curl`` is made to fail on an HTTP error, so an
example that answers 4xx or 5xx fails the test, and so does a step whose output the next
one needs (``set -euo pipefail``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tandem.dev import DevStack
from tandem.embedded import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
# What the reader's shell adds, not the README: stop at the first failing step.
HARNESS = 'set -euo pipefail\ncurl() { command curl --fail-with-body --max-time 30 "$@"; }\n'


def readme_examples() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks and "make run" in blocks[0]
    return blocks[1:]


def test_every_curl_example_in_the_readme_works_as_written(tmp_path: Path) -> None:
    examples = readme_examples()
    assert sum(block.count("curl ") for block in examples) >= 10
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env["TANDEM_API_PORT"] = str(free_port())
    with DevStack(environ=env, run_dir=tmp_path) as stack:
        script = HARNESS + "\n".join(
            f"{block}\necho '--- example {n} ok'" for n, block in enumerate(examples, 1)
        )
        shell_env = {**env, "API": stack.api_url, "TANDEM_ADMIN_TOKEN": stack.admin_token}
        done = subprocess.run(
            ["bash", "-c", script], env=shell_env, capture_output=True, text=True, timeout=180
        )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    for n in range(1, len(examples) + 1):
        assert f"--- example {n} ok" in done.stdout
    # The snooze (the last example) answered for Sam, and was taken.
    answered = json.loads(done.stdout.rsplit("--- example", 2)[-2].splitlines()[-1])
    assert answered["action"] == "snooze" and answered["refire"]
