"""Who did it (DESIGN §12): the actor that every command event records.

- a token's caller: ``{"role", "scope", "jti"}``, from the token's claims (``scope`` and ``jti``
  may be null: a role without a scope, a token without an id);
- a device: ``{"device": id}``. Swipe-driven events (``SwipeLog.Recorded``, ``Account.Debited``,
  ``Refunded``, ``Passed``) name their device already and carry no ``actor``: their stored shape
  stays as it was (ingest pays for every byte, and the audit log hashes it); readers derive
  ``{"device": id}`` from them (``actor_of``);
- the command line: ``{"role": "cli"}``.

Command events declared their ``actor`` with ``class_version`` 2 (``Acted``). An event stored
before (version 1, no ``actor``) is upcast with ``actor`` None: "before actors were recorded".
A command is never given None: ``check`` refuses it.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, TypeGuard

TOKEN_KEYS = frozenset(("role", "scope", "jti"))
CLI_ROLE = "cli"
DEVICE_ROLE = "device"  # what ``role_of`` calls a device's actor
BEFORE_ACTORS = "none"  # what ``role_of`` calls an event stored before actors were recorded


class TokenActor(TypedDict):
    role: str
    scope: str | None
    jti: str | None


class DeviceActor(TypedDict):
    device: str


class CliActor(TypedDict):
    role: Literal["cli"]


Actor = TokenActor | DeviceActor | CliActor
CLI: CliActor = {"role": CLI_ROLE}


def token_actor(role: str, scope: str | None, jti: str | None) -> TokenActor:
    return {"role": role, "scope": scope, "jti": jti}


def device_actor(device_id: str) -> DeviceActor:
    return {"device": device_id}


def is_actor(value: object) -> TypeGuard[Actor]:
    """Whether ``value`` has one of the three shapes, exactly."""
    if not isinstance(value, dict):
        return False
    keys = value.keys()
    if keys == {"device"}:
        return isinstance(value["device"], str) and bool(value["device"])
    if keys == {"role"}:
        return value["role"] == CLI_ROLE
    return (keys == TOKEN_KEYS and isinstance(value["role"], str) and value["role"] != CLI_ROLE
            and all(value[k] is None or isinstance(value[k], str) for k in ("scope", "jti")))


def check(actor: Actor) -> Actor:
    """The actor a command is given; anything else is a programmer's error."""
    assert is_actor(actor), f"not an actor: {actor!r}"
    return actor


def role_of(actor: Actor | None) -> str:
    """The role an actor acted in: a token's role, ``cli``, ``device``, or ``none`` (stored before
    actors were recorded)."""
    if actor is None:
        return BEFORE_ACTORS
    if "device" in actor:
        return DEVICE_ROLE
    return actor["role"]  # type: ignore[typeddict-item]


_NO_ACTOR = object()


def actor_of(event: Any) -> Actor | None:
    """The actor of a decoded stored event: its own (command events, ``Access.Read``); a
    swipe-driven event's device (its envelope's, or the ``device`` it names); None for an event
    stored before actors were recorded, or one that names nobody."""
    actor = getattr(event, "actor", _NO_ACTOR)
    if actor is not _NO_ACTOR:
        return actor  # type: ignore[no-any-return]
    envelope = getattr(event, "envelope", None)  # SwipeLog.Recorded
    if isinstance(envelope, dict) and isinstance(envelope.get("device"), str):
        return device_actor(envelope["device"])
    device = getattr(event, "device", None)  # Account.Debited, Refunded, Passed
    return device_actor(device) if isinstance(device, str) else None


def is_command_event(event: Any) -> bool:
    """Whether the event's class records an actor (command events and ``Access.Read``)."""
    return "actor" in getattr(type(event), "__dataclass_fields__", {})


class Acted:
    """Base of the command events that gained ``actor`` (class version 2). Each declares
    ``actor: Actor | None`` among its fields: None only for one stored before actors were
    recorded, which ``upcast_v1_v2`` gives it."""

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["actor"] = None
