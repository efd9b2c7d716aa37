"""The city's built-in entity types, after the FIWARE Smart Data Models where one exists.

Units are UN/CEFACT common codes (WTT watt, KWH kilowatt-hour, KMH km/h, MTR metre,
SEC second, DD degree, GQ microgram per cubic metre, P1 percent, CEL degree Celsius,
MQS cubic metre per second, LUX lux, C62 one/unitless).
"""

from __future__ import annotations

from dataclasses import replace

from citypilot.model.types import AttributeSpec, CommandSpec, Confirmation, EntityType


def _num(
    name: str,
    unit: str | None,
    lo: float | None,
    hi: float | None,
    doc: str = "",
    integer: bool = False,
) -> AttributeSpec:
    return AttributeSpec(
        name, "Property", "integer" if integer else "number", unit, lo, hi, description=doc
    )


def _choice(name: str, *choices: str, doc: str = "") -> AttributeSpec:
    return AttributeSpec(name, "Property", "string", choices=choices, description=doc)


def _text(name: str, doc: str = "") -> AttributeSpec:
    return AttributeSpec(name, "Property", "string", description=doc)


def _flag(name: str, doc: str = "") -> AttributeSpec:
    return AttributeSpec(name, "Property", "boolean", description=doc)


def _obj(name: str, doc: str = "") -> AttributeSpec:
    return AttributeSpec(name, "Property", "object", description=doc)


def _personal(spec: AttributeSpec, *members: str) -> AttributeSpec:
    """The spec marked as holding personal identifiers (``members`` of its object value)."""
    return replace(spec, personal=members)


def _when(name: str, doc: str = "") -> AttributeSpec:
    return AttributeSpec(name, "Property", "datetime", description=doc)


def _ref(name: str, target: str, doc: str = "") -> AttributeSpec:
    return AttributeSpec(name, "Relationship", "string", target=target, description=doc)


def _attrs(*specs: AttributeSpec) -> dict[str, AttributeSpec]:
    return {s.name: s for s in specs}


def _cmd(
    name: str,
    doc: str,
    *params: AttributeSpec,
    confirms: dict[str, Confirmation] | None = None,
    timeout_s: float = 60.0,
    destructive: bool = False,
    destructive_when: dict[str, tuple[str, ...]] | None = None,
) -> CommandSpec:
    return CommandSpec(
        name,
        {p.name: p for p in params},
        doc,
        confirms or {},
        timeout_s,
        destructive,
        destructive_when or {},
    )


def _array(name: str, doc: str = "") -> AttributeSpec:
    return AttributeSpec(name, "Property", "array", description=doc)


def _reports(value: object = None, *, arg: str | None = None, **how: object) -> Confirmation:
    """The reported value confirming a command (a constant, or from an argument)."""
    return Confirmation(value, arg, **how)  # type: ignore[arg-type]


def _commands(*cmds: CommandSpec) -> dict[str, CommandSpec]:
    return {c.name: c for c in cmds}


#: Attributes every entity may carry, whatever its type.
COMMON_ATTRIBUTES: dict[str, AttributeSpec] = _attrs(
    AttributeSpec("location", "GeoProperty", "object", description="GeoJSON geometry"),
    _text("name", "Human-readable name"),
    _text("description"),
    _obj("address", "schema.org PostalAddress: streetAddress, addressLocality, postalCode"),
    _text("department", "The service (silo) that runs the asset"),
    _ref("refMunicipality", "Municipality", "The municipality the asset lies in"),
    _ref("refZone", "Zone"),
    _text("source", "Where the data comes from"),
    _text("serialNumber"),
    _when("dateInstalled"),
)

_VEHICLE = (
    _num("speed", "KMH", 0, 250, "Current speed"),
    _num("bearing", "DD", 0, 360, "Heading, degrees clockwise from north"),
    _when("dateLastMoved"),
)
_TRANSIT = (
    *_VEHICLE,
    _text("routeId", "GTFS route_id"),
    _text("tripId", "GTFS trip_id"),
    _text("nextStop", "GTFS stop_id of the next stop"),
    _num("delay", "SEC", -3600, 14400, "Seconds behind (+) or ahead (-) of the timetable"),
    _num("occupancy", "P1", 0, 200, "Load as percent of seated+standing capacity"),
    _num("passengerCount", "C62", 0, 400, integer=True),
    _choice("status", "inService", "outOfService", "atDepot", "breakdown"),
    _text("displayMessage", "Message shown on board"),
)
SIGNAL_PLANS = ("normal", "peak", "offPeak", "event", "evacuation")
APPROACHES = ("north", "east", "south", "west")
_SEND_MESSAGE = _cmd(
    "sendMessage",
    "Show a message to the driver and on the passenger displays",
    _text("text"),
    confirms={"displayMessage": _reports(arg="text")},
)
_UNIT = (
    *_VEHICLE,
    _text("callSign"),
    _ref("refHomeBase", "Building"),
    _ref("refIncident", "Incident"),
)

BUILTIN_TYPES: tuple[EntityType, ...] = (
    EntityType(
        "Streetlight",
        "lighting",
        "A street lamp on a column",
        "Streetlighting/Streetlight",
        _attrs(
            _choice("powerState", "on", "off", "low", "bootingUp"),
            _choice(
                "status", "ok", "defectiveLamp", "columnIssue", "brokenLantern", "cabinetFault"
            ),
            _num("powerConsumption", "WTT", 0, 2000, "Instantaneous power draw"),
            _num("illuminanceLevel", "C62", 0, 1, "Dimming level, 0 off .. 1 full"),
            _num("lanternHeight", "MTR", 0, 40),
            _text("lampTechnology"),
            _ref("refStreetlightControlCabinet", "StreetlightControlCabinet"),
            _when("dateLastSwitchingOn"),
            _when("dateLastLampChange"),
        ),
        _commands(
            _cmd(
                "switch",
                "Switch the lamp on (full) or off",
                _choice("state", "on", "off"),
                confirms={
                    "illuminanceLevel": _reports(arg="state", choices={"on": 1.0, "off": 0.0})
                },
                timeout_s=120.0,
                destructive_when={"state": ("off",)},
            ),
            _cmd(
                "setDimming",
                "Set the light level, in percent of full (0 is off)",
                _num("level", "P1", 0, 100),
                confirms={"illuminanceLevel": _reports(arg="level", scale=0.01, tolerance=0.006)},
                timeout_s=120.0,
            ),
        ),
    ),
    EntityType(
        "TrafficSignal",
        "traffic",
        "Signal controller at a junction",
        "Transportation/TrafficLight",
        _attrs(
            _choice("phase", "red", "amber", "green", "flashingAmber", "off"),
            _choice("controlMode", "fixedTime", "actuated", "priority", "manual", "off"),
            _choice("status", "ok", "fault", "lampFailure", "communicationLoss"),
            _num(
                "vehicleCount",
                "C62",
                0,
                100000,
                "Vehicles counted in the last interval",
                integer=True,
            ),
            _num("queueLength", "MTR", 0, 5000),
            _num("cycleTime", "SEC", 0, 600),
            _choice("plan", *SIGNAL_PLANS, doc="The signal timing plan in force"),
            _choice(
                "priorityApproach", "none", *APPROACHES, doc="Approach held green for priority"
            ),
            _text("priorityRequest", "Id of the priority request being served"),
        ),
        _commands(
            _cmd(
                "requestPriority",
                "Hold green on an approach for a vehicle arriving in eta_s seconds",
                _choice("approach", *APPROACHES),
                _text("vehicle", "Id of the vehicle asking"),
                _choice("class", "bus", "tram", "emergency"),
                _num("eta_s", "SEC", 0, 600),
                _num("duration_s", "SEC", 1, 300),
                confirms={"priorityApproach": _reports(arg="approach")},
            ),
            _cmd(
                "cancelPriority",
                "End a priority request (the command id of requestPriority)",
                _text("request"),
                confirms={"priorityApproach": _reports("none")},
            ),
            _cmd(
                "setPlan",
                "Put a timing plan in force",
                _choice("plan", *SIGNAL_PLANS),
                confirms={"plan": _reports(arg="plan")},
            ),
        ),
    ),
    EntityType(
        "Camera",
        "police",
        "CCTV or analytics camera",
        "Device/Device",
        _attrs(
            _choice("status", "online", "offline", "fault", "recording"),
            _choice("cameraUsage", "cctv", "trafficAnalytics", "enforcement", "crowd"),
            _num("crowdCount", "C62", 0, 100000, integer=True),
            _personal(
                _obj("lastEvent", "Last analytics event: kind, plate (pseudonymised), at"),
                "plate",
            ),
            _num("pan", "DD", 0, 360),
            _num("preset", "C62", 0, 255, "Preset position in use", integer=True),
        ),
        _commands(
            _cmd(
                "preset",
                "Point the camera at a stored preset position",
                _num("n", "C62", 0, 255, integer=True),
                confirms={"preset": _reports(arg="n")},
            ),
        ),
        restricted=True,
    ),
    EntityType(
        "Tram",
        "transit",
        "Tram vehicle in service",
        "Transportation/Vehicle",
        _attrs(*_TRANSIT),
        _commands(_SEND_MESSAGE),
    ),
    EntityType(
        "Bus",
        "transit",
        "Bus in service",
        "Transportation/Vehicle",
        _attrs(*_TRANSIT),
        _commands(_SEND_MESSAGE),
    ),
    EntityType(
        "VariableMessageSign",
        "traffic",
        "Roadside variable message sign",
        "Transportation/TrafficEnvironmentImpact",
        _attrs(
            _text("displayedMessage", "Text shown now"),
            _when("displayUntil", "When the message ends"),
            _choice("status", "ok", "fault", "offline"),
        ),
        _commands(
            _cmd(
                "display",
                "Show a text until a time",
                _text("text"),
                _when("until"),
                confirms={"displayedMessage": _reports(arg="text")},
                timeout_s=120.0,
            )
        ),
    ),
    EntityType(
        "BikeStation",
        "mobility",
        "Bike-sharing docking station",
        "Transportation/BikeHireDockingStation",
        _attrs(
            _num("availableBikeNumber", "C62", 0, 500, integer=True),
            _num("freeSlotNumber", "C62", 0, 500, integer=True),
            _num("totalSlotNumber", "C62", 0, 500, integer=True),
            _choice(
                "status",
                "working",
                "outOfService",
                "withIncidence",
                "full",
                "almostFull",
                "empty",
                "almostEmpty",
            ),
        ),
    ),
    EntityType(
        "ParkingSpot",
        "parking",
        "On-street parking space with an occupancy sensor",
        "Parking/ParkingSpot",
        _attrs(
            _choice("status", "free", "occupied", "closed", "unknown"),
            _choice("category", "onStreet", "offStreet", "disabled", "electricCharging"),
            _num("occupancyDuration", "SEC", 0, 30 * 86400),
            _ref("refParkingSite", "ParkingSite"),
        ),
    ),
    EntityType(
        "DeliveryArea",
        "parking",
        "Goods delivery bay with an occupancy sensor",
        "Parking/ParkingSpot",
        _attrs(
            _choice("status", "free", "occupied", "closed", "unknown"),
            _num("occupancyDuration", "SEC", 0, 30 * 86400),
            _num("maximumParkingDuration", "SEC", 0, 86400),
            _flag("overstay", "Occupied for longer than allowed"),
        ),
    ),
    EntityType(
        "OffStreetParking",
        "parking",
        "Car park (underground, multi-storey or surface) with barrier-controlled entrances",
        "Parking/OffStreetParking",
        _attrs(
            _choice("status", "open", "closed", "outOfService", doc="Whether cars may enter"),
            _choice("category", "underground", "multiStorey", "surface"),
            _num("totalSpotNumber", "C62", 0, 10000, integer=True),
            _num("availableSpotNumber", "C62", 0, 10000, integer=True),
            _num("occupancy", "P1", 0, 100, "Share of the spaces taken"),
        ),
        _commands(
            _cmd(
                "close",
                "Close the entrances: no car enters, the cars inside may still leave",
                confirms={"status": _reports("closed")},
                destructive=True,
            ),
            _cmd("open", "Open the entrances again", confirms={"status": _reports("open")}),
        ),
    ),
    EntityType(
        "AirQualityObserved",
        "environment",
        "Air quality monitoring station",
        "Environment/AirQualityObserved",
        _attrs(
            _num("no2", "GQ", 0, 2000, "Nitrogen dioxide"),
            _num("pm10", "GQ", 0, 2000),
            _num("pm25", "GQ", 0, 2000),
            _num("o3", "GQ", 0, 2000, "Ozone"),
            _num("temperature", "CEL", -60, 60),
            _num("relativeHumidity", "P1", 0, 100),
            _num("airQualityIndex", "C62", 0, 500, integer=True),
            _choice(
                "airQualityLevel",
                "good",
                "moderate",
                "unhealthyForSensitive",
                "unhealthy",
                "veryUnhealthy",
                "hazardous",
            ),
        ),
    ),
    EntityType(
        "WaterLevelSensor",
        "water",
        "River or network water level gauge",
        "Environment/WaterObserved",
        _attrs(
            _num("waterLevel", "MTR", -50, 100, "Stage above the gauge datum"),
            _num("alertLevel", "MTR", -50, 100, "Stage at which flooding starts"),
            _num("flow", "MQS", 0, 100000),
            _num("rainfall", "MMT", 0, 500, "Rain in the last hour, millimetres"),
            _choice("status", "ok", "fault", "offline"),
        ),
    ),
    EntityType(
        "WaterQualityObserved",
        "water",
        "Water quality probe",
        "Environment/WaterQualityObserved",
        _attrs(
            _num("pH", "C62", 0, 14),
            _num("turbidity", "NTU", 0, 4000),
            _num("conductivity", "D10", 0, 100),
            _num("temperature", "CEL", -5, 50),
            _num("dissolvedOxygen", "M1", 0, 50),
            _choice("status", "ok", "fault", "offline"),
        ),
    ),
    EntityType(
        "Building",
        "buildings",
        "Public building",
        "Building/Building",
        _attrs(
            _choice(
                "category",
                "townHall",
                "school",
                "library",
                "sportsCentre",
                "museum",
                "office",
                "depot",
                "policeStation",
                "fireStation",
                "hospital",
                "other",
            ),
            _num("floorsAboveGround", "C62", 0, 200, integer=True),
            _num("occupancy", "C62", 0, 100000, "People inside", integer=True),
            _choice("status", "open", "closed", "lockdown", "evacuated"),
        ),
        _commands(
            _cmd(
                "lockdown",
                "Lock every access point of the building",
                confirms={"status": _reports("lockdown")},
                destructive=True,
            ),
            _cmd("release", "Return every access point to normal"),
        ),
    ),
    EntityType(
        "AccessPoint",
        "buildings",
        "Badge reader on a building door",
        "Building/Device",
        _attrs(
            _choice("status", "online", "offline", "fault"),
            _flag("locked"),
            _flag("badgesEnabled"),
            _num("accessCount", "C62", 0, 1000000, "Accesses since midnight", integer=True),
            _personal(
                _obj("lastAccess", "Last access: badge (pseudonymised), group, result, at"),
                "badge",
            ),
            _ref("refBuilding", "Building"),
            _array("allowedGroups", "Badge groups still admitted while badges are disabled"),
        ),
        _commands(
            _cmd(
                "disable",
                "Refuse every badge except the allowed groups",
                confirms={"badgesEnabled": _reports(False)},
                destructive=True,
            ),
            _cmd("enable", "Accept badges again", confirms={"badgesEnabled": _reports(True)}),
            _cmd(
                "allowGroups",
                "Badge groups admitted while the reader is disabled",
                _array("groups", "Group names (strings)"),
                confirms={"allowedGroups": _reports(arg="groups")},
            ),
        ),
    ),
    EntityType(
        "PoliceUnit",
        "police",
        "Police patrol unit",
        "Transportation/Vehicle",
        _attrs(
            *_UNIT,
            _choice("status", "available", "patrolling", "dispatched", "onScene", "offDuty"),
        ),
        _commands(
            _cmd(
                "dispatch",
                "Send the unit to an incident",
                _ref("refIncident", "Incident"),
                confirms={"status": _reports("dispatched")},
            )
        ),
        restricted=True,
    ),
    EntityType(
        "TechnicalVehicle",
        "technical",
        "Municipal technical service vehicle",
        "Transportation/Vehicle",
        _attrs(
            *_UNIT,
            _choice(
                "vehicleType",
                "repair",
                "lighting",
                "sweeper",
                "tow",
                "gritter",
                "water",
                "fireEngine",
                "ambulance",
            ),
            _choice("status", "available", "onRoute", "working", "atBase", "outOfService"),
        ),
        _commands(
            _cmd(
                "dispatch",
                "Send the vehicle to an incident",
                _ref("refIncident", "Incident"),
                confirms={"status": _reports("onRoute")},
            )
        ),
    ),
    EntityType(
        "Zone",
        "planning",
        "Zoning polygon",
        "PointOfInterest/Zone",
        _attrs(
            _choice(
                "category",
                "residential",
                "commercial",
                "industrial",
                "park",
                "centre",
                "floodProne",
                "lowEmission",
                "pedestrian",
                "other",
            ),
            _num("population", "C62", 0, 10**8, integer=True),
        ),
    ),
    EntityType(
        "ServiceRequest",
        "administration",
        "A citizen's report to the 311 desk (Open311 GeoReport v2)",
        "IssueTracking/ServiceRequest",
        _attrs(
            AttributeSpec(
                "description", value="string", max_length=4000, description="In the citizen's words"
            ),
            _text("serviceCode", "The Open311 service the request is for"),
            _text("serviceName"),
            _choice("status", "open", "closed"),
            AttributeSpec(
                "statusNotes", value="string", max_length=4000, description="The city's answer"
            ),
            _when("requestedAt", "When the citizen made the request"),
            _when("updatedAt", "When the city last changed its status"),
            _when("expectedAt", "When the city expects to have fulfilled it"),
            _text("serviceNotice", "What the citizen is told on submission"),
            _text("agencyResponsible"),
            _text("addressString", "The address the citizen gave"),
            _text("mediaUrl", "A photo or video the citizen linked"),
            _text("token", "Lets the citizen's app find the request later"),
            _obj("answers", "The service definition's attributes, answered"),
            _text("accountId", "The requester's account in the client application"),
        ),
    ),
    # -- incident response (ops/incidents.py, ops/closures.py) -----------------------------
    EntityType(
        "Incident",
        "emergency",
        "An incident the control room responds to: its units, closures and timeline",
        "Alert/Alert",
        _attrs(
            _choice(
                "incidentType",
                "fire",
                "roadAccident",
                "flood",
                "publicOrder",
                "infrastructureFault",
                "medical",
                "other",
            ),
            _choice("severity", "minor", "moderate", "major", "critical"),
            _choice("status", "reported", "dispatched", "on_scene", "resolved", "closed"),
            AttributeSpec("description", value="string", max_length=4000),
            _obj("affectedArea", "GeoJSON polygon of the area affected"),
            _text("reportedBy", "The operator, rule or request that opened it"),
            _when("reportedAt"),
            _when("updatedAt"),
            AttributeSpec("timeline", value="array", description="Every action: who, what, when"),
            _obj("assignments", "Units sent, by unit id: status, ETA, route"),
            _obj("links", "Ids of the alarms, service requests, commands and closures"),
            _num("prioritySavedSeconds", "SEC", 0, 86400, "Response time saved by signal priority"),
        ),
    ),
    # -- alarms (engine/alarms.py, docs/alarms.md) -----------------------------------------
    EntityType(
        "Alarm",
        "operations",
        "An alarm raised by a rule or a device, managed after ISA-18.2",
        "Alert/Alert",
        _attrs(
            _choice("severity", "critical", "high", "medium", "low"),
            _choice(
                "state",
                "active-unacknowledged",
                "active-acknowledged",
                "cleared-unacknowledged",
                "cleared",
            ),
            _text("rule", "The rule (or device:<type>) that raised it"),
            _text("alarmSource", "Id of the entity the alarm is about"),
            _text("alarmSourceType", "Type of that entity"),
            AttributeSpec("message", value="string", max_length=1000),
            _obj("reading", "The value that raised it, and when it was observed"),
            _num("count", "C62", 1, None, "Times raised while open (repeats)", integer=True),
            _when("raisedAt"),
            _when("lastRaisedAt"),
            _when("clearedAt"),
            _obj("acknowledged", "Who acknowledged it, and when"),
            _obj("shelved", "Who shelved it, when, until when and why"),
            _obj("suppressed", "The mode that suppresses it by design, and since when"),
            AttributeSpec("comments", value="array", description="Operators' comments"),
            AttributeSpec("log", value="array", description="Every transition: when, who, what"),
        ),
    ),
    EntityType(
        "Rule",
        "operations",
        "An automation rule (engine/rules.py, docs/rules.md): its definition and version",
        None,
        _attrs(
            _obj("definition", "The rule as given: trigger, condition, actions"),
            _num("version", "C62", 1, None, "Definitions saved under this id", integer=True),
            _flag("enabled"),
            _text("owner", "The department that owns the rule"),
            _text("updatedBy"),
            _when("updatedAt"),
        ),
    ),
    EntityType(
        "RoadClosure",
        "traffic",
        "Street segments closed to traffic until an end time",
        "Transportation/RoadSegment",
        _attrs(
            AttributeSpec("edges", value="array", description="Closed edges of graph/edges.csv"),
            _text("reason"),
            _choice("status", "active", "ended"),
            _when("startsAt"),
            _when("endsAt"),
            _ref("refIncident", "Incident"),
            _text("closedBy"),
        ),
    ),
    EntityType(
        "Municipality",
        "administration",
        "Member municipality of the metropole",
        "Administration/Municipality",
        _attrs(
            _num("population", "C62", 0, 10**9, integer=True),
            _num("areaServed", "KMK", 0, 100000, "Area in square kilometres"),
            _text("code", "Official municipality code"),
        ),
    ),
)
