"""Device keys as MQTT clients of Mosquitto's dynamic security plugin.

With ``mqtt_dynsec_url`` set, every device key is also an MQTT client of the broker:
username the device's name, password its key, and a role ``citypilot-device-<name>``
whose ACL lets it publish only to the topics of what its binding covers (see
docs/mqtt.md): ``<root>/<Type>/<local-id>/attrs`` and ``…/cmd/ack``, and subscribe to
``…/cmd``, for each bound entity (an entity list, or a municipality's entities as the
store holds them when the ACL is written), for ``<root>/<Type>/+`` for a type, or for
``<root>/+/+`` and ``<root>/batch`` for a key bound to nothing. The broker, not
CityPilot, refuses what falls outside: MQTT delivers no publisher's name to
subscribers, so only the broker can tell who published.

Changes travel as JSON commands on ``$CONTROL/dynamic-security/v1`` (answers on
``…/response``), sent with the plugin's admin credentials.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson

from citypilot.config import Settings
from citypilot.model.errors import ServiceUnavailable
from citypilot.model.ids import type_of_id
from citypilot.security.devices import Device, DeviceBinding
from citypilot.store.base import EntityScope, Store

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
DEVICE_ROLE_PREFIX = "citypilot-device-"
INGEST_ROLE = "citypilot-ingest"
#: How long one exchange with the broker may take before it is given up.
TIMEOUT_S = 15.0
_NOT_FOUND = ("Client not found", "Role not found")


def dynamic_security(settings: Settings) -> DynamicSecurity | None:
    """The broker to provision device keys on, if the settings name one."""
    if not settings.mqtt_dynsec_url:
        return None
    return DynamicSecurity(settings.mqtt_dynsec_url, settings.mqtt_topic_root)


async def scopes_for(store: Store, binding: DeviceBinding) -> dict[str, EntityScope]:
    """The stored entities a binding's ACL depends on: those it lists, or all of them
    for a municipality (none for a type or no binding)."""
    if binding.entities:
        return await store.entity_scopes(binding.entities)
    if binding.municipality is not None:
        return await store.entity_scopes()
    return {}


def device_role(name: str) -> str:
    """The broker role of a device's key."""
    return DEVICE_ROLE_PREFIX + name


def _entity_topic(root: str, entity_id: str) -> str | None:
    """``<root>/<Type>/<local-id>`` of an entity, or None if no topic can name it."""
    parts = entity_id.split(":", 3)
    if len(parts) != 4 or parts[:2] != ["urn", "ngsi-ld"]:
        return None
    type_name, local = parts[2], parts[3]
    if not type_name or not local or any(c in type_name + local for c in "/+#"):
        return None
    return f"{root}/{type_name}/{local}"


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True}


def device_acls(
    root: str, binding: DeviceBinding, scopes: Mapping[str, EntityScope]
) -> list[dict[str, Any]]:
    """The ACL entries of a key with ``binding``; ``scopes`` are the store's entities
    (type, municipality, department by id), which a municipality binding expands to."""
    if binding.is_open:
        prefixes = [f"{root}/+/+"]
    elif binding.entities or binding.municipality is not None:
        candidates: Iterable[str] = binding.entities or scopes
        prefixes = []
        for entity_id in candidates:
            # a listed entity not (or no longer) in the store keeps the type its id names
            type_name, municipality, _ = scopes.get(entity_id) or (
                type_of_id(entity_id),
                None,
                None,
            )
            topic = _entity_topic(root, entity_id)
            if topic is not None and binding.refusal(entity_id, type_name, municipality) is None:
                prefixes.append(topic)
    else:
        prefixes = [f"{root}/{binding.type}/+"]
    acls = []
    for prefix in sorted(prefixes):
        acls += [
            _acl("publishClientSend", prefix + "/attrs"),
            _acl("publishClientSend", prefix + "/cmd/ack"),
            _acl("subscribePattern", prefix + "/cmd"),
        ]
    if binding.is_open:
        acls.append(_acl("publishClientSend", f"{root}/batch"))
    return acls


def ingest_acls(root: str) -> list[dict[str, Any]]:
    """What CityPilot's own ingest client needs: read the whole tree (shared
    subscriptions too) and publish commands."""
    return [
        _acl("subscribePattern", f"{root}/#"),
        _acl("subscribePattern", f"$share/+/{root}/#"),
        _acl("publishClientSend", f"{root}/+/+/cmd"),
    ]


@dataclass
class SyncReport:
    """What ``sync`` did: roles written, clients and roles removed, and the devices the
    broker has no client for (their key is not kept here: rotate it to provision)."""

    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _key(acl: Mapping[str, Any]) -> tuple[str, str, bool]:
    return (acl["acltype"], acl["topic"], bool(acl["allow"]))


class DynamicSecurity:
    """Sends dynamic-security commands to one broker (a connection per exchange)."""

    def __init__(self, url: str, root: str, timeout: float = TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("mqtt_dynsec_url must be mqtt://user:password@host:port")
        self.host = parts.hostname
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.tls = parts.scheme == "mqtts"
        self.root = root.strip("/")
        self.timeout = timeout

    async def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the commands in one message; their answers, in order. ServiceUnavailable
        when the broker cannot be reached or does not answer."""
        if not commands:
            return []
        tag = uuid.uuid4().hex
        for k, command in enumerate(commands):
            command["correlationData"] = f"{tag}-{k}"
        try:
            async with asyncio.timeout(self.timeout), self._client() as client:
                await client.subscribe(RESPONSE_TOPIC, qos=1)
                await client.publish(CONTROL_TOPIC, orjson.dumps({"commands": commands}), qos=1)
                async for message in client.messages:
                    answers = orjson.loads(bytes(message.payload)).get("responses", [])  # type: ignore[arg-type]
                    if answers and str(answers[0].get("correlationData", "")).startswith(tag):
                        return answers
        except (aiomqtt.MqttError, TimeoutError, OSError) as e:
            raise ServiceUnavailable(
                f"the MQTT broker's dynamic security at {self.host}:{self.port} did not "
                f"answer: {e}",
                retry_after=5,
            ) from e
        raise ServiceUnavailable("the MQTT broker closed the connection", retry_after=5)

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=f"citypilot-dynsec-{uuid.uuid4().hex[:12]}",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=ssl.create_default_context() if self.tls else None,
        )

    async def checked(
        self, commands: list[dict[str, Any]], tolerated: tuple[str, ...] = ()
    ) -> None:
        """Run the commands; ServiceUnavailable naming the first that failed (other than
        with one of the ``tolerated`` errors)."""
        for answer in await self.run(commands):
            error = answer.get("error")
            if error and error not in tolerated:
                raise ServiceUnavailable(
                    f"the MQTT broker refused {answer.get('command')}: {error}", retry_after=5
                )

    # -- device keys ----------------------------------------------------------------------
    async def put_device(
        self, name: str, key: str, binding: DeviceBinding, scopes: Mapping[str, EntityScope]
    ) -> None:
        """Make the device an MQTT client with ``key`` as password and the ACL of its
        binding; a client of that name before is removed (and disconnected) first."""
        role = device_role(name)
        await self.checked(
            [
                {"command": "deleteClient", "username": name},
                {"command": "deleteRole", "rolename": role},
                {
                    "command": "createRole",
                    "rolename": role,
                    "acls": device_acls(self.root, binding, scopes),
                },
                {
                    "command": "createClient",
                    "username": name,
                    "password": key,
                    "roles": [{"rolename": role}],
                },
            ],
            tolerated=_NOT_FOUND,
        )

    async def remove_device(self, name: str) -> None:
        """Remove the device's client (disconnecting it) and its role."""
        await self.checked(
            [
                {"command": "deleteClient", "username": name},
                {"command": "deleteRole", "rolename": device_role(name)},
            ],
            tolerated=_NOT_FOUND,
        )

    async def sync(
        self,
        devices: list[Device],
        scopes: Mapping[str, EntityScope],
        ingest: tuple[str, str] | None = None,
    ) -> SyncReport:
        """Reconcile the broker with the store: every device's role holds the ACL of its
        binding (a municipality's entities as they are now), clients and roles of devices
        that no longer exist are removed, and with ``ingest`` (username, password) the
        ingest client exists with its role. Devices without a client are reported."""
        report = SyncReport()
        listed = await self.run(
            [{"command": "listClients", "verbose": True}, {"command": "listRoles", "verbose": True}]
        )
        clients = {c["username"]: c for c in listed[0].get("data", {}).get("clients", [])}
        roles = {r["rolename"]: r for r in listed[1].get("data", {}).get("roles", [])}
        wanted = {device_role(d.name): device_acls(self.root, d.binding, scopes) for d in devices}
        if ingest is not None:
            wanted[INGEST_ROLE] = ingest_acls(self.root)
        commands: list[dict[str, Any]] = []
        for role, acls in wanted.items():
            commands += _role_changes(role, acls, roles.get(role))
            if role not in roles or _role_changes(role, acls, roles[role]):
                report.updated.append(role)
        names = {d.name for d in devices}
        for username, client in clients.items():
            ours = [r["rolename"] for r in client.get("roles", [])]
            if any(r.startswith(DEVICE_ROLE_PREFIX) for r in ours) and username not in names:
                commands.append({"command": "deleteClient", "username": username})
                report.removed.append(username)
        for role in roles:
            if role.startswith(DEVICE_ROLE_PREFIX) and role not in wanted:
                commands.append({"command": "deleteRole", "rolename": role})
                report.removed.append(role)
        for device in devices:
            if device.name not in clients:
                report.missing.append(device.name)
            elif device_role(device.name) not in _roles_of(clients[device.name]):
                commands.append(_add_role(device.name, device_role(device.name)))
        if ingest is not None:
            username, password = ingest
            if username in clients:
                commands.append(
                    {"command": "setClientPassword", "username": username, "password": password}
                )
                if INGEST_ROLE not in _roles_of(clients[username]):
                    commands.append(_add_role(username, INGEST_ROLE))
            else:
                commands.append(
                    {
                        "command": "createClient",
                        "username": username,
                        "password": password,
                        "roles": [{"rolename": INGEST_ROLE}],
                    }
                )
        await self.checked(commands, tolerated=_NOT_FOUND)
        return report


def _roles_of(client: Mapping[str, Any]) -> set[str]:
    return {r["rolename"] for r in client.get("roles", [])}


def _add_role(username: str, role: str) -> dict[str, Any]:
    return {"command": "addClientRole", "username": username, "rolename": role}


def _role_changes(
    role: str, acls: list[dict[str, Any]], existing: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The commands that give ``role`` exactly ``acls``."""
    if existing is None:
        return [{"command": "createRole", "rolename": role, "acls": acls}]
    have = {_key(a) for a in existing.get("acls", [])}
    want = {_key(a) for a in acls}
    removed = [
        {"command": "removeRoleACL", "rolename": role, "acltype": k, "topic": t}
        for k, t, _ in sorted(have - want)
    ]
    added = [
        {"command": "addRoleACL", "rolename": role, "acltype": k, "topic": t, "allow": allow}
        for k, t, allow in sorted(want - have)
    ]
    return removed + added
