"""What an integrator does with ngsildclient against CityPilot: create an entity, read
it back, query by type and q, subscribe, update. Run by the client venv's Python:
``ngsildclient_session.py BASE_URL TOKEN RECEIVER_URL LOCAL_ID``; prints a JSON report."""

from __future__ import annotations

import json
import sys
from urllib.parse import urlsplit

from ngsildclient import Client, Entity, SubscriptionBuilder
from requests.auth import AuthBase


class Bearer(AuthBase):
    """The CityPilot access token on every request."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request):  # requests' AuthBase signature
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def main() -> None:
    """Run the session and print what the client saw."""
    base, token, receiver, local = sys.argv[1:5]
    where = urlsplit(base)
    client = Client(
        hostname=where.hostname, port=where.port, custom_auth=Bearer(token), verbose=False
    )
    lamp = Entity("Streetlight", local)  # urn:ngsi-ld:Streetlight:<local>
    lamp.prop("powerState", "on").prop("illuminanceLevel", 0.8)
    lamp.loc(47.32, 5.04)  # latitude, longitude
    client.create(lamp)
    read = client.get(lamp.id)
    found = client.query(type="Streetlight", q='powerState=="on"')
    subscription = (
        SubscriptionBuilder(receiver)
        .name(f"lamp {local}")
        .select_type("Streetlight")  # an id alone is no selector: v1.8 needs the type
        .watch(["powerState"])
        .build()
    )
    subscription_id = client.subscriptions.create(subscription)
    lamp.prop("powerState", "off")
    client.update(lamp)
    print(
        json.dumps(
            {
                "id": lamp.id,
                "read": read.to_dict(),
                "found": [e.id for e in found],
                "subscription": subscription_id,
            }
        )
    )


if __name__ == "__main__":
    main()
