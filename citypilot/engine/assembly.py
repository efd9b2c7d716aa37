"""The engine assembled: device commands, alarms, rules and city modes, built from the
settings and the broker, started and stopped together.

``running_city`` (``api/app.py``) runs it inside the API process (``engine =
"embedded"``, the default); ``citypilot worker engine`` runs it in the worker that holds
the engine lease (``engine = "worker"``, ``workers/engine.py``). Either way it is the
same services wired the same way: rules act through the alarm, command and incident
services; modes send commands, suppress alarms, switch rules and close roads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from citypilot.broker import Broker
from citypilot.bus.nats import NatsBus
from citypilot.config import Settings
from citypilot.engine.alarms import AlarmService
from citypilot.engine.commands import CommandService
from citypilot.engine.modes import ModeService
from citypilot.engine.rules import RuleEngine, mode_hook_for
from citypilot.ingest.bus_commands import BusCommandChannel
from citypilot.ingest.http_commands import HttpCallbackChannel
from citypilot.ops.closures import ClosureBook

log = logging.getLogger(__name__)


async def _command_service(settings: Settings, broker: Broker) -> CommandService:
    """The command service with its first channel, the HTTP callbacks (tables created),
    and, on the NATS bus with ``mqtt_url`` set, MQTT through the ingest workers."""
    from citypilot.store.commands import command_log_for

    log_ = command_log_for(broker.store)
    service = CommandService(
        broker,
        log_,
        retry_s=settings.command_retry_s,
        max_attempts=settings.command_max_attempts,
    )
    await log_.open()
    callbacks = HttpCallbackChannel(log_)
    await callbacks.load()
    service.channels.append(callbacks)
    if settings.mqtt_url and isinstance(broker.bus, NatsBus):
        service.channels.append(BusCommandChannel(broker.bus, service, settings.mqtt_topic_root))
    return service


def _rule_engine(
    settings: Settings, broker: Broker, alarms: AlarmService, commands: CommandService
) -> RuleEngine:
    """The rules engine, acting through the alarm, command and incident services."""
    from citypilot.engine.rule_pack import RULE_PACK_DIR
    from citypilot.ops.incidents import IncidentBook

    dirs = [RULE_PACK_DIR] if settings.rule_pack else []
    if settings.rules_dir is not None:
        dirs.append(settings.rules_dir)
    return RuleEngine(
        broker, alarms=alarms, commands=commands, incidents=IncidentBook(broker), rule_dirs=dirs
    )


def _mode_service(
    settings: Settings,
    broker: Broker,
    commands: CommandService,
    alarms: AlarmService,
    rules: RuleEngine,
    closures: Any,
) -> ModeService:
    """The mode service with the built-in modes, the alarms it suppresses, the rules it
    switches and the road closures it makes."""
    from citypilot.engine.mode_model import load_modes
    from citypilot.store.modes import mode_log_for

    modes = ModeService(
        broker,
        commands,
        mode_log_for(broker.store),
        load_modes(broker.registry),
        layers=settings.data_path / "layers",
    )
    modes.alarms = alarms
    modes.rules = rules
    modes.closures = closures
    return modes


@dataclass
class Engine:
    """The engine's services, wired together; :meth:`start` and :meth:`stop` run them."""

    commands: CommandService
    callbacks: HttpCallbackChannel
    alarms: AlarmService
    rules: RuleEngine
    modes: ModeService

    @classmethod
    async def build(cls, settings: Settings, broker: Broker, closures: ClosureBook) -> Engine:
        """The services for these settings (command tables created, callbacks read); more
        command channels may be appended to ``commands.channels`` before :meth:`start`."""
        commands = await _command_service(settings, broker)
        alarms = AlarmService(broker)
        rules = _rule_engine(settings, broker, alarms, commands)
        modes = _mode_service(settings, broker, commands, alarms, rules, closures)
        callbacks = commands.channels[0]
        assert isinstance(callbacks, HttpCallbackChannel)
        return cls(commands, callbacks, alarms, rules, modes)

    def _services(self) -> list[Any]:
        """The services in the order they start (and stop in reverse)."""
        return [self.commands, self.alarms, self.rules, self.modes]

    async def start(self) -> None:
        """Take up the commands, alarms, rules and mode activations under way; run them.
        When one fails to start, those already started are stopped before the error
        is raised: nothing is left running half-assembled."""
        started: list[Any] = []
        try:
            for service in self._services():
                await service.start()
                started.append(service)
                if service is self.commands:
                    for channel in self._bus_channels():
                        channel.start()  # the acks of the commands the service took up
        except BaseException:
            for channel in self._bus_channels():
                await stop_quietly(channel, "close")
            for service in reversed(started):
                await stop_quietly(service)
            raise
        self.rules.set_mode_hook(mode_hook_for(self.modes))

    def _bus_channels(self) -> list[BusCommandChannel]:
        return [c for c in self.commands.channels if isinstance(c, BusCommandChannel)]

    async def stop(self) -> None:
        """Stop every timer and listener, finish the deliveries under way, close channels;
        a service that fails to stop does not keep the others running."""
        for channel in self._bus_channels():
            await stop_quietly(channel, "close")  # first: apply no more acks (another leader will)
        for service in reversed(self._services()):
            await stop_quietly(service)
        for channel in self.commands.channels:
            await stop_quietly(channel, "close")


async def stop_quietly(service: Any, method: str = "stop") -> None:
    """Call ``service.<method>()``, logging (not raising) what it raises."""
    try:
        await getattr(service, method)()
    except Exception:
        log.exception("%s failed to %s", type(service).__name__, method)
