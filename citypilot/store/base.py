"""The store interface every backend implements, and the query objects it takes.

The store keeps current state (newest ``observedAt`` wins), appends every accepted
change to history, and keeps dead letters and accounts. It knows nothing of HTTP,
the bus or the type registry: callers hand it checked data.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from citypilot.model.entity import Attribute, Entity
from citypilot.model.geometry import Bounds
from citypilot.model.observation import Reading
from citypilot.security.audit import AuditEntry, AuditQuery
from citypilot.security.devices import UNBOUND, Device, DeviceBinding
from citypilot.security.scopes import Grant, Visibility
from citypilot.store.census import Census
from citypilot.store.query import QueryNode
from citypilot.store.scope_query import ScopeNode

WriteMode = Literal["append", "noOverwrite", "update"]
Aggregate = Literal["avg", "min", "max", "count", "sum"]
#: The aggregation methods of the NGSI-LD temporal API (``aggrMethods``).
AggrMethod = Literal["totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq"]


class EntityRef(NamedTuple):
    """What ingest needs to know of an existing entity: its type and representative point."""

    type: str
    lon: float | None
    lat: float | None


@dataclass(frozen=True)
class GeoQuery:
    """A geo-query (ETSI GS CIM 009, clause 4.10): the entity's location compared with
    ``geometry`` by ``georel``.

    ``near`` keeps locations within ``max_distance`` and beyond ``min_distance`` metres
    of a point (either bound may be absent, not both); ``within``: the location lies in
    the geometry; ``contains``: it holds the geometry; ``intersects``, ``disjoint``,
    ``overlaps`` and ``equals`` as in the OGC simple features.
    """

    georel: Literal["near", "within", "contains", "intersects", "disjoint", "overlaps", "equals"]
    geometry: dict[str, Any]
    #: A box that contains every possible match (the index pre-filter); None when
    #: matches may lie anywhere (``disjoint``, ``near`` with a minimum distance only).
    bounds: Bounds | None
    max_distance: float | None = None
    min_distance: float | None = None


@dataclass(frozen=True)
class EntityQuery:
    """A query over current state, as the NGSI-LD ``GET /entities`` takes it."""

    types: tuple[str, ...] | None = None
    ids: tuple[str, ...] | None = None
    id_pattern: str | None = None
    q: QueryNode | None = None
    #: ``scopeQ``: which of the entities' own scopes (their ``scope`` member) match
    scope_q: ScopeNode | None = None
    geo: GeoQuery | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False
    #: Only entities these grants cover (None: every entity, for the platform itself).
    scope: Visibility | None = None
    #: Only these attributes of each entity are loaded (None: all of them); ``q``,
    #: ``scopeQ`` and ``geo`` are still checked on the whole entity.
    attrs: tuple[str, ...] | None = None


#: An entity's type, municipality and department (see ``security.scopes``).
EntityScope = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class HistoryQuery:
    """A time-series query over one entity's history (its attributes' default instances),
    optionally bucketed server-side."""

    entity_id: str
    attrs: tuple[str, ...] | None = None
    start: float | None = None
    end: float | None = None
    bucket_s: int | None = None
    agg: Aggregate = "avg"
    limit: int = 10_000


@dataclass(frozen=True)
class TemporalQuery:
    """Attribute instances of some entities in ``[start, end)``, raw or aggregated.

    Raw: per attribute and dataset the first ``limit`` instances, or (``last_n``) the
    last ones. Aggregated (``methods``): per attribute and dataset, per period of
    ``period_s`` seconds counted from ``origin`` (None: one period over the whole
    range), the methods' values. ``datasets``: the ``datasetId``s wanted
    (``DEFAULT_DATASET`` for the default instance); None, every one.
    """

    entity_ids: tuple[str, ...]
    attrs: tuple[str, ...] | None = None
    start: float | None = None
    end: float | None = None
    last_n: int | None = None
    limit: int = 10_000
    methods: tuple[AggrMethod, ...] = ()
    period_s: float | None = None
    origin: float = 0.0
    datasets: tuple[str, ...] | None = None


class TemporalBucket(NamedTuple):
    """One aggregation period of one attribute: its index from the origin, and one value
    per method asked; over the whole range (index 0), the first and last instant seen."""

    index: int
    first: float | None
    last: float | None
    values: tuple[Any, ...]


#: One attribute instance's series: (instant, value) instances, or aggregation periods.
TemporalSeries = list[tuple[float, Any]] | list[TemporalBucket]
#: Per entity id, attribute and dataset (``DEFAULT_DATASET``: the default instance).
TemporalResult = dict[str, dict[str, dict[str, TemporalSeries]]]


class PendingNotification(NamedTuple):
    """A notification in the outbox: kept until its endpoint has it."""

    id: int
    subscription_id: str
    body: str  # the notification, JSON text
    attempts: int


@dataclass(frozen=True)
class PersonalRule:
    """Personal identifiers of one type's attribute are kept until ``before`` (epoch s):
    ``members`` of its object value, or the whole value when empty."""

    type_name: str
    attr: str
    members: tuple[str, ...]
    before: float


class FoundValue(NamedTuple):
    """A stored value holding a data subject's identifier: in ``state`` (``observed_at``
    None), ``history``, or a ``deadLetter`` (``entity_id`` its source, ``attr`` its
    reason, ``observed_at`` when received, ``value`` the raw payload text)."""

    kept_in: str
    entity_id: str
    attr: str
    observed_at: float | None
    value: Any


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed validation, kept with its reason and raw payload."""

    received_at: float
    source: str
    reason: str
    field: str | None
    payload: str
    id: int | None = None


@dataclass
class Account:
    """A person who may log in: name, argon2 hash, role and scoped grants.

    ``role`` is the person's highest role; ``grants`` (see ``security.scopes``)
    say over which municipalities and departments each role applies. An account
    with no grants holds ``role`` over the whole metropole.
    """

    username: str
    password_hash: str
    role: str
    disabled: bool = False
    grants: tuple[Grant, ...] = ()
    #: moves on when tokens issued before must stop working (see ``security.tokens``)
    token_version: int = 0


@dataclass(frozen=True)
class Session:
    """A login's chain of refresh tokens (its *family*): only ``token_id``, the newest
    refresh token's id, may be exchanged; revoked (logout, reuse of an older token)
    it ends every token of the family. Times are epoch seconds."""

    id: str
    username: str
    token_id: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    revoked_reason: str | None = None


#: The columns of the ``sessions`` table, in the order of ``Session``'s fields.
SESSION_COLUMNS = "id, username, token_id, created_at, expires_at, revoked_at, revoked_reason"
#: Compare-and-set statements on one session (``{m}``: the driver's placeholder);
#: parameters (new token, id, old token) and (at, reason, id).
SESSION_ROTATE = (
    "UPDATE sessions SET token_id = {m} WHERE id = {m} AND token_id = {m} AND revoked_at IS NULL"
)
SESSION_REVOKE = (
    "UPDATE sessions SET revoked_at = {m}, revoked_reason = {m}"
    " WHERE id = {m} AND revoked_at IS NULL"
)


@dataclass
class AttributeWrite:
    """The outcome of writing attributes into one entity."""

    updated: list[str] = field(default_factory=list)
    not_updated: dict[str, str] = field(default_factory=dict)  # name -> reason


@dataclass
class LayerColumns:
    """A whole layer, column by column; values stay JSON text so they need no re-encoding."""

    ids: list[str] = field(default_factory=list)
    lon: list[float | None] = field(default_factory=list)
    lat: list[float | None] = field(default_factory=list)
    modified_at: list[float] = field(default_factory=list)
    values: dict[str, list[str | None]] = field(default_factory=dict)

    def place(self, rows: Any, position: dict[Any, int]) -> None:
        """Put (key, name, json_text, observed_at) rows in their columns."""
        for key, name, text, observed_at in rows:
            i = position[key]
            self.values[name][i] = text
            if observed_at is not None and observed_at > self.modified_at[i]:
                self.modified_at[i] = observed_at


class Store(Protocol):
    """Current state, history, dead letters and accounts of one city."""

    async def open(self) -> None:
        """Connect, create or migrate the schema, warm the caches."""

    async def close(self) -> None:
        """Flush and release every connection."""

    # -- current state ---------------------------------------------------
    async def lookup(self, ids: Collection[str]) -> dict[str, EntityRef]:
        """Type and point of each existing entity among ``ids`` (missing ones are left out)."""

    async def get_entity(self, entity_id: str) -> Entity | None:
        """One entity with all its attributes, or None."""

    async def query_entities(self, query: EntityQuery) -> tuple[list[Entity], int | None]:
        """The page of entities matching ``query``, ordered by id, and the total if asked."""

    async def scan_columns(
        self, type_name: str, names: Sequence[str], scope: Visibility | None = None
    ) -> LayerColumns:
        """Every entity of a type (that ``scope`` covers) as columns: ids, points, last
        change, and for each of ``names`` the stored JSON text of its value (None where
        absent). For maps."""

    async def entity_scopes(self, ids: Collection[str] | None = None) -> dict[str, EntityScope]:
        """Type, municipality and department of each existing entity among ``ids`` (None:
        of every entity)."""

    async def create_entities(self, entities: Sequence[Entity], now: float) -> list[str]:
        """Insert new entities (each all or nothing); return the ids refused as existing."""

    async def upsert_entities(self, entities: Sequence[Entity], now: float, replace: bool) -> None:
        """Create each entity, or replace it whole (``replace``) or merge its attributes."""

    async def write_attributes(
        self, entity_id: str, attrs: dict[str, Attribute], now: float, mode: WriteMode
    ) -> AttributeWrite | None:
        """Write attributes into an entity (None if it does not exist).

        ``append`` adds or overwrites, ``noOverwrite`` only adds, ``update`` only
        overwrites existing ones. Written values go to history too.
        """

    async def delete_attribute(self, entity_id: str, name: str, now: float) -> bool | None:
        """Remove one attribute; None if the entity is missing, False if the attribute is."""

    async def delete_history(
        self,
        entity_id: str,
        name: str | None = None,
        observed_at: float | None = None,
        dataset: str | None = None,
    ) -> int:
        """Remove history instances of an entity (deleted or not): all of them, those of
        one attribute, or (with ``observed_at``) the one at that instant; with
        ``dataset``, only those of that dataset (None: of every one); how many went."""

    async def delete_entities(self, ids: Sequence[str]) -> list[str]:
        """Delete entities (their history stays); return the ids that existed."""

    async def apply_readings(self, readings: Sequence[Reading], now: float) -> list[Reading]:
        """Append readings to history and update state where each is the newest.

        Returns the readings that became current state (a late one does not).
        """

    # -- history ---------------------------------------------------------
    async def history(self, query: HistoryQuery) -> dict[str, list[tuple[float, Any]]]:
        """Per attribute, the (instant, value) series of its default instance, or
        (bucket start, aggregate)."""

    async def census(self, scope: Visibility | None = None) -> Census:
        """Entities per type, and their attributes with kinds and counts (for discovery),
        of the entities ``scope`` covers."""

    async def temporal(self, query: TemporalQuery) -> TemporalResult:
        """Per entity, attribute and dataset, instances in ascending time order (at most
        ``query.limit + 1``, so a caller sees when there are more), or the aggregation
        periods in order, computed by the database."""

    # -- subscriptions and their outbox -----------------------------------
    async def put_subscription(self, sub_id: str, doc: dict[str, Any], create: bool) -> bool:
        """Keep a subscription; with ``create``, False (nothing written) if the id is taken."""

    async def get_subscription(self, sub_id: str) -> dict[str, Any] | None:
        """One subscription, or None."""

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription, by id."""

    async def delete_subscription(self, sub_id: str) -> bool:
        """Forget a subscription and its pending notifications; False if it did not exist."""

    async def add_notifications(
        self, items: Sequence[tuple[str, str]], due_at: float
    ) -> list[PendingNotification]:
        """Put (subscription id, notification JSON text) in the outbox, to be taken by
        ``due_notifications`` from ``due_at`` on (the caller sends them itself first);
        return them with the ids they were given."""

    async def due_notifications(
        self, now: float, limit: int, lease_until: float
    ) -> list[PendingNotification]:
        """Claim the oldest notifications due by ``now``: no other caller gets them
        before ``lease_until`` (unless they are settled before)."""

    async def settle_notifications(
        self,
        delivered: Sequence[int],
        retry: Sequence[tuple[int, float]],
        subscriptions: Sequence[dict[str, Any]],
    ) -> None:
        """In one transaction: drop the delivered notifications, put the failed ones off
        (id, next attempt at), and save the subscriptions' new status (existing ones)."""

    # -- dead letters ----------------------------------------------------
    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Keep messages that failed validation."""

    async def list_dead_letters(self, limit: int, offset: int) -> tuple[list[DeadLetter], int]:
        """The newest dead letters first, and how many there are."""

    # -- accounts --------------------------------------------------------
    async def put_account(self, account: Account) -> None:
        """Create or replace a person's account."""

    async def get_account(self, username: str) -> Account | None:
        """A person's account, or None."""

    async def list_accounts(self) -> list[Account]:
        """Every person's account."""

    async def put_device_key(
        self, name: str, key_hash: str, binding: DeviceBinding = UNBOUND
    ) -> None:
        """Register a device gateway, or give it a new hashed key (the old one ends)."""

    async def get_device(self, key_hash: str) -> Device | None:
        """The device gateway holding this hashed key, or None."""

    async def list_devices(self) -> list[Device]:
        """Every device gateway (without keys)."""

    async def delete_device(self, name: str) -> bool:
        """Remove a device gateway and its key; whether it existed."""

    # -- login sessions (refresh token families, see ``security.sessions``) -------
    async def put_session(self, session: Session) -> None:
        """Keep a new session; sessions that expired before ``session.created_at`` go."""

    async def get_session(self, session_id: str) -> Session | None:
        """One session, or None."""

    async def rotate_session(self, session_id: str, old_token: str, new_token: str) -> bool:
        """Move an unrevoked session from refresh token ``old_token`` to ``new_token``,
        in one statement; False when it is revoked or ``old_token`` is not its newest
        (another exchange came first)."""

    async def revoke_session(self, session_id: str, reason: str, at: float) -> bool:
        """Revoke a session not revoked yet; whether this call revoked it."""

    # -- personal data (see ``security.privacy``) ----------------------------
    async def purge_personal(self, rules: Sequence[PersonalRule]) -> int:
        """Remove personal identifiers older than each rule's cutoff from history and
        state; return how many values were changed or removed."""

    async def find_values(self, needles: Sequence[str]) -> list[FoundValue]:
        """Every state value, history value and dead letter whose stored text contains
        one of ``needles``."""

    async def erase_values(self, needles: Sequence[str], replacement: str) -> int:
        """Replace each needle by ``replacement`` in every state value, history value and
        dead letter that holds it; return how many changed."""

    # -- audit log (append-only) -------------------------------------------
    async def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries to the audit log."""

    async def query_audit(self, query: AuditQuery) -> tuple[list[AuditEntry], int]:
        """The entries matching ``query``, newest first, and how many match."""

    async def purge_audit(self, before: float) -> int:
        """Delete the entries older than ``before`` (the stores refuse any younger than
        ``audit.MIN_RETENTION_DAYS``); return how many went."""

    # -- types registered at run time -------------------------------------
    async def put_type(self, name: str, doc: dict[str, Any], record: dict[str, Any]) -> None:
        """Keep a type registered at run time (its ``EntityType.to_json`` form) and append
        ``record`` (``record["version"]`` is its version) to its history, together."""

    async def type_versions(self, name: str) -> list[dict[str, Any]]:
        """The version records of a run-time type, oldest first (kept after deletion)."""

    async def delete_type(self, name: str) -> None:
        """Forget a run-time type's declaration (its version records stay)."""

    async def list_types(self) -> list[dict[str, Any]]:
        """Every type registered at run time."""
