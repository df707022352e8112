"""An example custom channel: ``tandemlog:///path/to/file.jsonl`` appends each nudge as one
JSON line to a local file. Copy a file like this into ``TANDEM_PLUGINS_DIR`` and its schema
becomes a channel URL like any other Apprise URL.

The whole contract is Apprise's ``@notify`` decorator: the function gets the message and the
parsed URL (``meta``) and returns True on success, False on failure.
"""

import json
import time

from apprise.decorators import notify


@notify(on="tandemlog", name="Tandem local log")
def tandemlog(body, title, notify_type, meta, *args, **kwargs):
    # tandemlog:///var/log/x.jsonl parses as host "var" + fullpath "/log/x.jsonl": the
    # path is always absolute, so put the host back in front.
    host, rest = meta.get("host") or "", meta.get("fullpath") or ""
    if not host:
        return False
    path = "/" + host + rest
    line = json.dumps({"title": title, "body": body, "type": str(notify_type), "at": time.time()})
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        return False
    return True
