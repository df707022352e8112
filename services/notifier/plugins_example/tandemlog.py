"""An example custom channel: ``tandemlog://nudges/sam.jsonl`` appends each nudge as one JSON
line to a file under one configured directory. Copy a file like this into
``TANDEM_PLUGINS_DIR`` and its schema becomes a channel URL like any other Apprise URL.

The whole contract is Apprise's ``@notify`` decorator: the function gets the message and the
parsed URL (``meta``) and returns True on success, False on failure.

Confinement: a channel URL is written by whoever may configure a channel, so the plugin
must not become a way to write anywhere the notifier can. The URL's path is relative to
``TANDEMLOG_DIR`` (unset: the plugin writes nothing), and the file is opened one component
at a time from that directory (``openat`` with ``O_NOFOLLOW``): ``..`` and ``.`` components,
symlinks (to a file or a directory) and anything that is not a plain directory on the way
are refused, so nothing outside the directory can be reached, not even by a symlink swapped
in while the plugin runs. A URL spelled like an absolute path (``tandemlog:///etc/x``) names
``$TANDEMLOG_DIR/etc/x``.
"""

import json
import logging
import os
import time

from apprise.decorators import notify

BASE_DIR_ENV = "TANDEMLOG_DIR"
log = logging.getLogger("tandemlog")


def relative_parts(meta):
    """The path components the URL names below the base directory; ValueError if any of
    them could leave it or is not a plain name."""
    # tandemlog://nudges/sam.jsonl parses as host "nudges" + fullpath "/sam.jsonl"
    # (and tandemlog:///nudges/sam.jsonl the same way).
    text = (meta.get("host") or "") + (meta.get("fullpath") or "")
    parts = text.split("/")
    if not parts or any(p in ("", ".", "..") or "\0" in p or "\\" in p for p in parts):
        raise ValueError(f"not a plain relative path: {text!r}")
    return parts


def open_confined(base, parts):
    """A file descriptor for appending to ``base/<parts...>``, every step inside ``base``
    and no symlink followed; OSError otherwise."""
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
    nofollow = os.O_NOFOLLOW
    directory = os.open(base, flags)
    try:
        for part in parts[:-1]:
            inner = os.open(part, flags | nofollow, dir_fd=directory)
            os.close(directory)
            directory = inner
        return os.open(
            parts[-1],
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | nofollow | getattr(os, "O_CLOEXEC", 0),
            0o600,
            dir_fd=directory,
        )
    finally:
        os.close(directory)


@notify(on="tandemlog", name="Tandem local log")
def tandemlog(body, title, notify_type, meta, *args, **kwargs):
    base = os.environ.get(BASE_DIR_ENV)
    if not base:
        log.warning("tandemlog: %s is not set; refusing to write", BASE_DIR_ENV)
        return False
    try:
        parts = relative_parts(meta)
        fd = open_confined(base, parts)
    except (OSError, ValueError) as exc:
        log.warning("tandemlog: refusing %r: %s", meta.get("url"), exc)
        return False
    line = json.dumps({"title": title, "body": body, "type": str(notify_type), "at": time.time()})
    try:
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        return False
    return True
