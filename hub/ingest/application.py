"""The writer's application: ``CampusCard``'s use cases, tuned for the one writer thread and
the settings it runs with (``hub.service.app.application_env``: a large aggregate cache that
hands out its very objects, ``DEEPCOPY_FROM_AGGREGATE_CACHE=n``), and the hints the upload
pipeline reads before the writer sees an upload.

Whatever constructs the application that writes constructs this one (``hub.service.app``,
the bench's naive baseline). Readers of the store (the projection runner, ``cardhub audit
verify``) construct the domain's ``CampusCard``: they never save.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.utils import EnvType

from domain import ids
from domain.application import CampusCard, Item, UploadOutcome, Workspace, utc_now
from domain.devices import Device, SwipeLog
from domain.swipes import Referenced
from domain.tokens import Token
from hub.ingest.keystore import AccountKeys
from hub.ingest.recorder import ArrayInsertRecorder

# Events written by one save(). Larger inserts can stall psycopg's pipeline against the
# server (seen here at ~1,000 events: client and server both blocked writing), so a big
# batch is saved in chunks; the requests are still answered only after the last one.
MAX_EVENTS_PER_SAVE = 250


class IngestWorkspace(Workspace):
    """Saves in chunks of ``MAX_EVENTS_PER_SAVE``; on failure evicts what it loaded."""

    app: IngestCampusCard

    def changed(self, events: int = 1) -> None:
        """Counts new events; saves what is pending once a chunk is full."""
        super().changed(events)
        if self.pending >= MAX_EVENTS_PER_SAVE:
            self.save()

    def discard(self) -> None:
        """Drops every aggregate of this workspace from the cache: after a failure they may
        hold changes that were never stored (a failed save evicts too, see ``IngestCampusCard.save``)."""
        self.app.evict(self.loaded)


class IngestCampusCard(CampusCard):
    """``CampusCard`` for the hub's writer thread."""

    name = CampusCard.name  # the same tables (the library would name a subclass after itself)
    workspace_class: ClassVar[type[Workspace]] = IngestWorkspace

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        timezone: ZoneInfo | None = None,
        clock: Callable[[], datetime] = utc_now,
        hub_key: Ed25519PublicKey | None = None,
    ) -> None:
        super().__init__(env, timezone=timezone, clock=clock, hub_key=hub_key)
        if isinstance(self.recorder, ArrayInsertRecorder):
            self.keys = self.recorder.keys  # written with the events of the command that made them
        # device id -> public key, for callers that verify signatures before the writer does.
        self.device_keys: dict[str, Ed25519PublicKey] = {}
        # device id -> the next seq after the last batch: a hint for callers, so that a resend
        # (seq below it) is compared with the stored envelope before any signature is checked.
        self.next_seqs: dict[str, int] = {}

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Saves; on failure drops the aggregates from the cache, which may hand out the very
        objects commands change (DEEPCOPY_FROM_AGGREGATE_CACHE=n), so that the next command
        reloads them from the store, and the command's key changes, never to be written.
        The library's ``Application.save``, with ``_Collected`` for its ProcessingEvent."""
        try:
            processing_event = _Collected()
            processing_event.collect_events(*objs, **kwargs)
            recordings = self._record(processing_event)
            self._take_snapshots(processing_event)
            self._notify(recordings)
            self.notify(processing_event.events)  # the library's own save calls it too (deprecated)
            return recordings
        except BaseException:
            self.evict(o.id for o in objs if isinstance(o, Aggregate))
            if isinstance(self.keys, AccountKeys):
                self.keys.discard()  # a key change left by a failure before the insert took it
            raise
        finally:
            # Tokens are written by other processes too (``cardhub token revoke``): never cached.
            self.evict(o.id for o in objs if isinstance(o, Token))

    def get_token(self, jti: str) -> Token:
        """Always from the store, never the cache, which another process's revocation bypasses."""
        token_id = ids.token_id(jti)
        self.evict([token_id])
        try:
            return super().get_token(jti)
        finally:
            self.evict([token_id])

    def _take_snapshots(self, processing_event: ProcessingEvent) -> None:
        """Snapshots the aggregates that crossed their interval, from the objects just saved
        and in one insert. (The library re-reads each aggregate from the store instead: many
        devices crossing 500 swipes together stalled the writer for over a second.)"""
        if self.snapshots is None:
            return
        due: dict[UUID, Aggregate] = {}
        for event in processing_event.events:
            aggregate = processing_event.aggregates.get(event.originator_id)
            interval = self.snapshotting_intervals.get(type(aggregate)) if aggregate is not None else None
            if interval and event.originator_version % interval == 0:
                due[event.originator_id] = aggregate
        if due:
            self.snapshots.put([Snapshot.take(aggregate) for aggregate in due.values()])

    def evict(self, aggregate_ids: Iterable[UUID]) -> None:
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id in list(aggregate_ids):
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def record_swipes(self, uploads: Sequence[tuple[str, Sequence[Item]]]) -> list[UploadOutcome]:
        try:
            return super().record_swipes(uploads)
        except BaseException:
            for device_id, _ in uploads:  # the hint may run ahead of what was stored
                self.next_seqs.pop(device_id, None)
            raise

    def _record_upload(
        self,
        workspace: Workspace,
        recorded: dict[tuple[str, int], Referenced],
        device_id: str,
        items: Sequence[Item],
    ) -> UploadOutcome:
        outcome = super()._record_upload(workspace, recorded, device_id, items)
        device = workspace.loaded.get(ids.device_id(device_id))
        if isinstance(device, Device):
            self._device_key(device)  # lets the hub verify this device's next uploads early
        log = workspace.loaded.get(ids.swipe_log_id(device_id))
        if isinstance(log, SwipeLog):
            self.next_seqs[device_id] = log.next_seq
        return outcome

    def _device_key(self, device: Device) -> Ed25519PublicKey:
        key = self.device_keys.get(device.device_id)
        if key is None:
            key = self.device_keys[device.device_id] = super()._device_key(device)
        return key


class _Collected(ProcessingEvent):
    """The library's ProcessingEvent, telling an aggregate by its class: the library's own
    ``collect_events`` asks two runtime-checkable Protocols of every object, and those
    ``isinstance`` checks were 5 % of the hub's CPU at 1,000 online swipes/s."""

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        for obj in objs:
            if isinstance(obj, Aggregate):
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            else:
                super().collect_events(obj)
        self.saved_kwargs.update(kwargs)
