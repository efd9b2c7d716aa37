"""The simulated devices obey commands, as real ones would.

:func:`carry_out` applies one command to a device of a :class:`Simulator` and
answers like the device: accepted (the model's state changed, and the device is
woken so it reports its new state at once — the report that confirms the command)
or rejected with its reason (a command it does not know, a bad argument, a state
in which it cannot obey). The simulator's own clock gives the answer's instant.

* Streetlight ``switch(state)`` and ``setDimming(level)``: the lamp holds the
  level until the next command (off reports ~0 W; a dimmed lamp draws less);
  a defective lamp refuses. A tripped cabinet accepts but stays dark.
* AccessPoint ``disable``/``enable``/``allowGroups(groups)``: a disabled reader
  refuses every badge but those of the allowed groups.
* TrafficSignal ``requestPriority``/``cancelPriority``/``setPlan``: green is held
  on the approach for the vehicle; a flashing signal refuses.
* Bus/Tram ``sendMessage(text)``: shown on board (refused at the depot).
* Camera ``preset(n)``: refused by an offline or faulty camera.
* OffStreetParking ``close``/``open``: the entrances' barriers; closed, no car comes in
  (the cars inside still leave); a car park out of service refuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from citypilot.twin.devices.base import DeviceModel
from citypilot.twin.devices.buildings import AccessPointModel
from citypilot.twin.devices.car_parks import OffStreetParkingModel
from citypilot.twin.devices.lighting import StreetlightModel
from citypilot.twin.devices.traffic import CameraModel, TrafficSignalModel
from citypilot.twin.devices.vehicles import TransitVehicleModel
from citypilot.twin.simulator import Simulator

#: (accepted, reason, device instant)
Answer = tuple[bool, str | None, float]
MAX_TEXT = 1024


class Refused(Exception):
    """The device says no; the message is its reason."""


def _number(args: dict[str, Any], name: str, lo: float, hi: float) -> float:
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise Refused(f"{name} must be a number in {lo:g}..{hi:g}")
    return float(value)


def _text(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise Refused(f"{name} must be a text of at most {MAX_TEXT} characters")
    return value


def _report_next(dev: DeviceModel, attrs: dict[str, Any]) -> None:
    """Attributes the device reports with its next report (added to any already due)."""
    dev.pending_attrs = {**(dev.pending_attrs or {}), **attrs}


def _lamp(dev: StreetlightModel, t: float, level: float) -> None:
    if dev.fault or dev.status != "ok":
        raise Refused(f"the lamp is {dev.fault or dev.status}")
    dev.override_level, dev.override_until = level, math.inf
    dev.next_periodic = t  # report the full state now, even if nothing visible changes


def _streetlight(dev: DeviceModel, command: str, args: dict[str, Any], t: float) -> None:
    assert isinstance(dev, StreetlightModel)
    if command == "switch":
        state = args.get("state")
        if state not in ("on", "off"):
            raise Refused("state must be 'on' or 'off'")
        _lamp(dev, t, 1.0 if state == "on" else 0.0)
    elif command == "setDimming":
        _lamp(dev, t, round(_number(args, "level", 0, 100) / 100.0, 4))
    else:
        raise Refused(f"a streetlight does not know the command {command!r}")


def _access_point(dev: DeviceModel, command: str, args: dict[str, Any], t: float) -> None:
    assert isinstance(dev, AccessPointModel)
    if command in ("disable", "enable"):
        dev.badges_enabled = command == "enable"
        _report_next(dev, {"badgesEnabled": dev.badges_enabled})
    elif command == "allowGroups":
        groups = args.get("groups")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Refused("groups must be a list of group names")
        dev.allowed_groups = tuple(groups)
        _report_next(dev, {"allowedGroups": list(groups)})
    else:
        raise Refused(f"a badge reader does not know the command {command!r}")


def _signal(
    dev: DeviceModel, command: str, args: dict[str, Any], t: float, command_id: str
) -> None:
    assert isinstance(dev, TrafficSignalModel)
    if command == "requestPriority":
        if dev.fault or dev.status != "ok" or dev.phase == "flashingAmber":
            raise Refused("the signal is flashing amber and cannot give priority")
        approach = args.get("approach")
        if approach not in ("north", "east", "south", "west"):
            raise Refused("approach must be north, east, south or west")
        until = t + _number(args, "eta_s", 0, 600) + _number(args, "duration_s", 1, 300)
        dev.start_priority(t, str(approach), command_id, until)
        _report_next(
            dev,
            {
                "phase": "green",
                "controlMode": "priority",
                "priorityApproach": approach,
                "priorityRequest": command_id,
            },
        )
    elif command == "cancelPriority":
        request = _text(args, "request")
        if dev.priority_approach != "none" and request != dev.priority_request:
            raise Refused(f"the priority in force is {dev.priority_request}, not {request}")
        dev.end_priority(t)
        _report_next(dev, {"priorityApproach": "none", "controlMode": dev.mode})
    elif command == "setPlan":
        dev.plan = _text(args, "plan")
        _report_next(dev, {"plan": dev.plan})
    else:
        raise Refused(f"a traffic signal does not know the command {command!r}")


def _vehicle(dev: DeviceModel, command: str, args: dict[str, Any], t: float) -> None:
    assert isinstance(dev, TransitVehicleModel)
    if command != "sendMessage":
        raise Refused(f"a vehicle does not know the command {command!r}")
    if dev.status == "atDepot":
        raise Refused("the vehicle is at the depot, with nobody on board")
    _report_next(dev, {"displayMessage": _text(args, "text")})


def _camera(dev: DeviceModel, command: str, args: dict[str, Any], t: float) -> None:
    assert isinstance(dev, CameraModel)
    if command != "preset":
        raise Refused(f"a camera does not know the command {command!r}")
    if dev.fault or dev.status != "online":
        raise Refused(f"the camera is {dev.fault or dev.status}")
    dev.preset = int(_number(args, "n", 0, 255))
    _report_next(dev, {"preset": dev.preset})


def _car_park(dev: DeviceModel, command: str, args: dict[str, Any], t: float) -> None:
    assert isinstance(dev, OffStreetParkingModel)
    if command not in ("close", "open"):
        raise Refused(f"a car park does not know the command {command!r}")
    if dev.fault:
        raise Refused(f"the car park is {dev.fault}")
    dev.closed = command == "close"


_HANDLERS: dict[type, Callable[..., None]] = {
    StreetlightModel: _streetlight,
    AccessPointModel: _access_point,
    TransitVehicleModel: _vehicle,
    CameraModel: _camera,
    OffStreetParkingModel: _car_park,
}


def simulates(sim: Simulator, entity_id: str) -> bool:
    """Whether the simulator runs the device of this entity."""
    try:
        sim.device(entity_id)
    except KeyError:
        return False
    return True


def carry_out(sim: Simulator, entity_id: str, command: str, args: Any, command_id: str) -> Answer:
    """Apply a command to a simulated device; answer (accepted, reason, device instant)."""
    t = sim.now
    try:
        dev = sim.device(entity_id)
    except KeyError:
        return False, f"no simulated device {entity_id}", t
    try:
        if not isinstance(args, dict):
            raise Refused("args must be an object")
        if isinstance(dev, TrafficSignalModel):
            _signal(dev, command, args, t, command_id)
        else:
            handler = _HANDLERS.get(type(dev))
            if handler is None:
                raise Refused(f"a {dev.entity_type} does not take commands")
            handler(dev, command, args, t)
    except Refused as exc:
        return False, str(exc), t
    sim.wake(entity_id)
    return True, None, t
