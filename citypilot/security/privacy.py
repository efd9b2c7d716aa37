"""Privacy by design: personal identifiers pseudonymised at ingest, masked on the way out.

Attributes a type marks ``personal`` (badge ids, plates) never reach the store as
sent: each identifier becomes ``ps:<key id>:<hex>``, an HMAC-SHA256 of the raw value
under a secret key kept in the data directory (``privacy-keys.json``, mode 0600).
Keys are versioned: rotating adds a key that pseudonymises from then on, and older
keys stay so a data-subject request still finds what they produced (see
docs/privacy.md). Readers whose grants do not name the entity's department see
``MASK`` instead of the pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

#: What a reader without the need to know sees in place of a personal identifier.
MASK = "***"
KEYS_FILE = "privacy-keys.json"
PSEUDONYM = re.compile(r"^ps:[a-z0-9]{1,16}:[0-9a-f]{32}$")


@dataclass(frozen=True)
class PseudonymKeys:
    """The versioned pseudonymisation keys: ``current`` names the one in use."""

    current: str
    keys: dict[str, bytes]

    def pseudonym(self, raw: str, key_id: str | None = None) -> str:
        """The pseudonym of a raw identifier under one key (default: the current one)."""
        kid = key_id or self.current
        digest = hmac.new(self.keys[kid], raw.encode(), hashlib.sha256).hexdigest()[:32]
        return f"ps:{kid}:{digest}"

    def all_pseudonyms(self, raw: str) -> list[str]:
        """The pseudonyms of a raw identifier under every key (for data-subject requests)."""
        return [self.pseudonym(raw, kid) for kid in sorted(self.keys)]

    def pseudonymise(self, value: Any) -> Any:
        """A raw identifier's pseudonym; a pseudonym (or a non-string) is left as it is."""
        if not isinstance(value, str) or PSEUDONYM.match(value):
            return value
        return self.pseudonym(value)


def _write_keys(path: Path, current: str, keys: dict[str, bytes]) -> None:
    doc = {"current": current, "keys": {k: v.hex() for k, v in keys.items()}}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def load_keys(data_dir: Path) -> PseudonymKeys:
    """The keys kept in the data directory, created (one key, ``k1``) on first use."""
    path = data_dir / KEYS_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_keys(path, "k1", {"k1": secrets.token_bytes(32)})
    doc = orjson.loads(path.read_bytes())
    return PseudonymKeys(doc["current"], {k: bytes.fromhex(v) for k, v in doc["keys"].items()})


def rotate_keys(data_dir: Path) -> str:
    """Add a new key and make it current; return its id (older keys are kept)."""
    keys = load_keys(data_dir)
    number = max(int(k[1:]) for k in keys.keys if k[1:].isdigit()) + 1
    new_id = f"k{number}"
    _write_keys(data_dir / KEYS_FILE, new_id, {**keys.keys, new_id: secrets.token_bytes(32)})
    return new_id


def transform(personal: tuple[str, ...], value: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to the personal parts of a value: the whole value when ``personal`` is
    empty, else those members of an object value."""
    if not personal:
        return fn(value)
    if not isinstance(value, dict):
        return value
    return {k: (fn(v) if k in personal and v is not None else v) for k, v in value.items()}


def mask(personal: tuple[str, ...], value: Any) -> Any:
    """The value as a reader without the need to know sees it."""
    return transform(personal, value, lambda _v: MASK)


def personal_attributes(entity_type: Any) -> dict[str, tuple[str, ...]]:
    """Per attribute of a type that holds personal identifiers, its personal members."""
    return {
        name: spec.personal
        for name, spec in entity_type.attributes.items()
        if spec.personal is not None
    }


# -- data-subject requests (``citypilot privacy export|erase SUBJECT``) ---------------
#: What an erased identifier becomes in state and history.
ERASED = "erased"


def subject_needles(keys: PseudonymKeys, subject: str) -> list[str]:
    """What a data subject's identifier may be stored as: its pseudonym under every key
    (a pseudonym given as the subject is taken as it is), and the raw identifier for
    values stored before their attribute was marked personal."""
    if PSEUDONYM.match(subject):
        return [subject]
    return [*keys.all_pseudonyms(subject), subject]


async def export_subject(store: Any, keys: PseudonymKeys, subject: str) -> dict[str, Any]:
    """Everything kept about a data subject: state, history, dead letters, audit."""
    from citypilot.model.timeutil import format_instant
    from citypilot.security.audit import AuditQuery

    needles = subject_needles(keys, subject)
    found = await store.find_values(needles)
    entries, before_id = [], None
    while True:  # the audit log holds no attribute values; any mention is listed
        page, _ = await store.query_audit(AuditQuery(limit=1000, before_id=before_id))
        for entry in page:
            text = orjson.dumps(entry.to_json()).decode()
            if any(n in text for n in needles):
                entries.append(entry.to_json())
        if len(page) < 1000:
            break
        before_id = page[-1].id
    return {
        "subject": subject,
        "pseudonyms": [n for n in needles if n != subject],
        "state": [
            {"entityId": f.entity_id, "attribute": f.attr, "value": f.value}
            for f in found
            if f.kept_in == "state"
        ],
        "history": [
            {
                "entityId": f.entity_id,
                "attribute": f.attr,
                "observedAt": format_instant(f.observed_at),
                "value": f.value,
            }
            for f in found
            if f.kept_in == "history"
        ],
        "deadLetters": [
            {
                "source": f.entity_id,
                "reason": f.attr,
                "receivedAt": format_instant(f.observed_at),
                "payload": f.value,
            }
            for f in found
            if f.kept_in == "deadLetter"
        ],
        "audit": entries,
    }


async def erase_subject(store: Any, keys: PseudonymKeys, subject: str) -> int:
    """Replace a data subject's identifiers by ``ERASED`` in state, history and dead
    letters (which keep refused messages as sent); return how many values changed.
    (The audit log keeps the fact of the request, without the subject.)"""
    return await store.erase_values(subject_needles(keys, subject), ERASED)
