"""Who did what (DESIGN §12): ``cardhub audit verify`` counts the command events by their actor's
role and checks that every one stored since actors were recorded names a well-formed actor.

A command event stored before (class version 1) has none: it was upcast with ``actor`` None and
counts under ``none``. Once the log holds a command event with an actor, a later one without is a
mismatch (an older hub wrote after a newer one, or the row was forged), and so is one whose
stored state declares the version with actors (``class_version`` 2) but holds a null actor."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import Notification

from domain.actors import Acted, actor_of, is_actor, is_command_event, role_of
from hub.audit.report import Check


@dataclass
class Actors:
    check: Check
    roles: Counter[str] = field(default_factory=Counter)
    first: int | None = None  # the notification of the first command event with an actor

    def add(self, notification: Notification, event: Any) -> None:
        if not is_command_event(event):
            return
        actor = actor_of(event)
        self.check.count += 1
        self.roles[role_of(actor)] += 1
        if actor is None:
            self._without(notification, event)
        elif not is_actor(actor):
            self.check.fail(f"notification {notification.id}: {notification.topic} names no actor of a known"
                            f" shape: {json.dumps(actor, ensure_ascii=False)[:120]}")
        elif self.first is None:
            self.first = notification.id

    def _without(self, notification: Notification, event: Any) -> None:
        if self.first is not None:
            self.check.fail(f"notification {notification.id}: {notification.topic} without an actor, stored after"
                            f" actors were recorded (from notification {self.first})")
        elif not isinstance(event, Acted) or json.loads(notification.state).get("class_version", 1) > 1:
            self.check.fail(f"notification {notification.id}: {notification.topic} is stored with a null actor")

    def finish(self) -> None:
        roles = sorted(self.roles.items(), key=lambda item: (-item[1], item[0]))
        self.check.detail = "  ".join(f"{role} {n:,}" for role, n in roles)
        if self.roles.get("none"):
            self.check.detail += "  (none: stored before actors were recorded)"
