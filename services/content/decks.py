"""Decks: the words Tandem says, as data.

A deck is one YAML file: an id, a title, the ritual kinds it suits, and its prompts (each
with a stable id, the text, and optionally a level, tags and a short "simplified" variant
for transition mode). Decks live in one known folder shipped with the service
(``services/content/decks/``) plus, optionally, the folder named by ``TANDEM_DECKS_DIR``,
where an integrator drops a file with no code change; a deck there with the id of a shipped
deck replaces it.

Promises:

* Every deck is validated when the service starts (:func:`load_catalog`); a broken deck
  stops start-up with a :class:`DeckError` naming the file, the line and the reason, never
  a surprise at 21:00 on a Tuesday.
* Prompt ids are unique within a deck and never reused for different words: the history of
  what a couple has already seen is kept by id.
* Every ritual kind that speaks from a deck (:data:`DECK_KINDS`) has a default deck
  (:func:`default_deck`), and it exists in the catalog. The weekly summary has none: its
  words are the couple's week, composed by ``compose.summary_nudge``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from shared.events import RITUAL_KINDS, RitualKind

SHIPPED_DIR = Path(__file__).with_name("decks")

# The deck a ritual uses when its RitualDue names none.
DEFAULT_DECKS: Mapping[str, str] = {
    "morning_kiss": "six-second-kiss",
    "evening_checkin": "evening-highs-and-lows",
    "hug": "twenty-second-hug",
    "date_night": "date-night-ideas",
    "phone_stack": "phones-down",
    "weekly_questions": "weekly-questions",
    "relationship_checkin": "relationship-checkin",
    "custom": "everyday-connection",
}

# Kinds whose nudges are not drawn from a deck (see ``compose.py``).
DECKLESS_KINDS: frozenset[str] = frozenset({"weekly_summary"})
DECK_KINDS: tuple[str, ...] = tuple(k for k in RITUAL_KINDS if k not in DECKLESS_KINDS)

_ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


def default_deck(kind: str) -> str:
    """The id of the deck a ritual of ``kind`` uses when it names none."""
    try:
        return DEFAULT_DECKS[kind]
    except KeyError:
        if kind in DECKLESS_KINDS:
            raise ValueError(f"{kind!r} nudges are not drawn from a deck") from None
        raise ValueError(f"unknown ritual kind {kind!r}") from None


def _rule(loc: Sequence[str | int], message: str) -> PydanticCustomError:
    # A cross-field rule broken somewhere inside the deck: the location rides in ``ctx`` so
    # the loader can point at the offending line rather than at the top of the file.
    return PydanticCustomError("deck_rule", "{message}", {"message": message, "loc": list(loc)})


class DeckPrompt(BaseModel):
    """One prompt: a question, a nudge line or an idea."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID)
    text: str = Field(min_length=1, max_length=300)
    level: int | None = Field(default=None, ge=1, le=3)
    tags: tuple[str, ...] = ()
    # The short form transition mode uses ("a two-minute check-in tonight").
    simplified: str | None = Field(default=None, min_length=1, max_length=160)


class Deck(BaseModel):
    """One deck file, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=60)
    # A line about the ritual itself, for channels with room (e-mail).
    about: str | None = Field(default=None, max_length=400)
    kinds: tuple[RitualKind, ...] = Field(min_length=1)
    progressive: bool = False
    # "question": both partners answer it; "nudge": a line that prompts the ritual itself;
    # "idea": a suggestion for whoever plans (date night).
    style: Literal["question", "nudge", "idea"] = "question"
    prompts: tuple[DeckPrompt, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _rules(self) -> Deck:
        seen: set[str] = set()
        for i, prompt in enumerate(self.prompts):
            if prompt.id in seen:
                raise _rule(("prompts", i, "id"), f"duplicate prompt id {prompt.id!r}")
            seen.add(prompt.id)
            if self.progressive and prompt.level is None:
                raise _rule(
                    ("prompts", i),
                    f"prompt {prompt.id!r} has no level; every prompt of a progressive deck "
                    "needs one (1-3)",
                )
        return self

    def prompt(self, prompt_id: str) -> DeckPrompt | None:
        return next((p for p in self.prompts if p.id == prompt_id), None)

    def suits(self, kind: str) -> bool:
        return kind in self.kinds


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.reason}"


class DeckError(ValueError):
    """One or more decks are broken; ``problems`` says where and why."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("invalid deck(s):\n" + "\n".join(f"  {p}" for p in self.problems))


def _node_at(root: yaml.Node, loc: Sequence[str | int]) -> yaml.Node:
    """The deepest YAML node on the path ``loc`` (a pydantic error location)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:  # a missing field: point at the mapping that lacks it
                return node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _error_loc(error: Mapping[str, Any]) -> Sequence[str | int]:
    ctx = error.get("ctx") or {}
    return tuple(ctx.get("loc") or error["loc"])


def _describe(error: Mapping[str, Any]) -> str:
    loc = _error_loc(error)
    where = ".".join(str(p) for p in loc)
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def parse_deck(text: str, path: Path) -> Deck:
    """Validate the YAML ``text`` of the deck file at ``path`` (used only in messages)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise DeckError([Problem(path, line, f"not valid YAML: {exc.problem}")]) from exc
    if root is None or not isinstance(data, dict):
        raise DeckError([Problem(path, 1, "a deck file must be a mapping (id, title, ...)")])
    try:
        return Deck.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = []
        for error in errors:
            if error["type"] == "too_short" and any(
                e is not error and tuple(e["loc"][: len(error["loc"])]) == tuple(error["loc"])
                for e in errors
            ):
                continue  # pydantic drops a broken item, then finds the list too short: noise
            node = _node_at(root, _error_loc(error))
            problems.append(Problem(path, node.start_mark.line + 1, _describe(error)))
        raise DeckError(problems) from exc


def load_deck(path: Path) -> Deck:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeckError([Problem(path, None, f"cannot read: {exc}")]) from exc
    return parse_deck(text, path)


@dataclass(frozen=True)
class Catalog:
    """Every deck the service knows, by id, with the file each came from."""

    decks: Mapping[str, Deck]
    sources: Mapping[str, Path] = field(default_factory=dict)

    def get(self, deck_id: str) -> Deck | None:
        return self.decks.get(deck_id)

    def __len__(self) -> int:
        return len(self.decks)


def _deck_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def _load_folder(folder: Path, problems: list[Problem]) -> dict[str, tuple[Deck, Path]]:
    found: dict[str, tuple[Deck, Path]] = {}
    for path in _deck_files(folder):
        try:
            deck = load_deck(path)
        except DeckError as exc:
            problems.extend(exc.problems)
            continue
        if deck.id in found:
            problems.append(
                Problem(path, 1, f"deck id {deck.id!r} is also used by {found[deck.id][1]}")
            )
            continue
        found[deck.id] = (deck, path)
    return found


def load_catalog(extra_dir: Path | None = None, *, shipped_dir: Path = SHIPPED_DIR) -> Catalog:
    """Load and validate the shipped decks and those in ``extra_dir`` (which win by id).

    Raises :class:`DeckError` listing every problem found, so one start-up shows them all.
    """
    problems: list[Problem] = []
    decks = _load_folder(shipped_dir, problems)
    if extra_dir is not None:
        if not extra_dir.is_dir():
            problems.append(Problem(extra_dir, None, "TANDEM_DECKS_DIR is not a folder"))
        else:
            decks.update(_load_folder(extra_dir, problems))
    for kind in DECK_KINDS:
        deck_id = DEFAULT_DECKS[kind]
        if deck_id not in decks and not problems:
            problems.append(
                Problem(shipped_dir, None, f"default deck {deck_id!r} for {kind!r} is missing")
            )
    if problems:
        raise DeckError(problems)
    return Catalog(
        decks={i: d for i, (d, _) in decks.items()},
        sources={i: p for i, (_, p) in decks.items()},
    )
