"""The example plugin writes only below TANDEMLOG_DIR: no ``..``, no absolute path outside,
no symlink (loaded through Apprise, as the notifier loads it)."""

from __future__ import annotations

import json
from pathlib import Path

import apprise
import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "services" / "notifier" / "plugins_example"


def send(url: str) -> bool:
    sender = apprise.Apprise(asset=apprise.AppriseAsset(plugin_paths=[str(PLUGINS)]))
    assert sender.add(url), url
    return bool(sender.notify("hello", title="t"))


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    inside = tmp_path / "logs"
    (inside / "nudges").mkdir(parents=True)
    monkeypatch.setenv("TANDEMLOG_DIR", str(inside))
    return inside


def test_it_appends_below_its_directory(base: Path) -> None:
    assert send("tandemlog://sam.jsonl") and send("tandemlog://nudges/alex.jsonl")
    assert send("tandemlog://sam.jsonl")
    lines = (base / "sam.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["body"] == "hello"
    assert (base / "nudges" / "alex.jsonl").exists()


def test_without_a_directory_it_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TANDEMLOG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert not send("tandemlog://sam.jsonl")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "path",
    [
        "../escaped.jsonl",
        "nudges/../../escaped.jsonl",
        "nudges/./../../escaped.jsonl",
        "..",
    ],
)
def test_no_path_climbs_out(base: Path, path: str) -> None:
    assert not send(f"tandemlog://{path}")
    assert not (base.parent / "escaped.jsonl").exists()


def test_an_absolute_path_stays_inside(base: Path) -> None:
    outside = base.parent / "elsewhere"
    outside.mkdir()
    # tandemlog:///<tmp>/elsewhere/x.jsonl names $TANDEMLOG_DIR/<tmp>/elsewhere/x.jsonl,
    # which does not exist: refused, and the real path is untouched.
    assert not send(f"tandemlog://{outside / 'x.jsonl'}")
    assert not (outside / "x.jsonl").exists()


def test_symlinks_are_not_followed(base: Path) -> None:
    outside = base.parent / "elsewhere"
    outside.mkdir()
    target = outside / "target.jsonl"
    target.write_text("")
    (base / "link.jsonl").symlink_to(target)  # a file that is a symlink
    (base / "linkdir").symlink_to(outside, target_is_directory=True)  # a directory that is one
    assert not send("tandemlog://link.jsonl")
    assert not send("tandemlog://linkdir/new.jsonl")
    assert target.read_text() == "" and not (outside / "new.jsonl").exists()
