"""The embedded demo's command channel: commands go straight to the in-process simulator.

The simulator still reports through the ingest API like any gateway, so a command
is confirmed only by the simulated device's own next report.
"""

from __future__ import annotations

from citypilot.engine.command_model import Command
from citypilot.engine.commands import DeviceAnswer
from citypilot.twin.device_commands import carry_out, simulates
from citypilot.twin.simulator import Simulator


class SimulatorChannel:
    """Delivers commands to the devices of a simulator running in this process."""

    name = "simulator"

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def reaches(self, command: Command) -> bool:
        """Whether the simulator runs this command's device."""
        return simulates(self.sim, command.entity_id)

    async def deliver(self, command: Command) -> DeviceAnswer:
        """Apply the command; the device's answer comes at once."""
        accepted, reason, at = carry_out(
            self.sim, command.entity_id, command.command, command.args, command.id
        )
        return DeviceAnswer(accepted, reason, at)

    async def close(self) -> None:
        """Nothing to release."""
