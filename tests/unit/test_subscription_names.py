"""A subscription's name in its old spelling (``name``, NGSI-LD before v1.3, still sent
by client libraries) is taken as ``subscriptionName``; both at once are refused."""

from __future__ import annotations

import pytest

from citypilot.model.errors import BadRequestData
from citypilot.notify.subscription import current_names, merged, new_subscription
from citypilot.security.tokens import Principal

DOC = {
    "type": "Subscription",
    "entities": [{"type": "Streetlight"}],
    "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
}


def test_the_old_name_is_kept_as_subscription_name():
    made = new_subscription({**DOC, "name": "lamps"}, Principal("ops", "operator"), 0.0)
    assert made["subscriptionName"] == "lamps" and "name" not in made
    renamed = merged(made, {"name": "all lamps"})
    assert renamed["subscriptionName"] == "all lamps" and "name" not in renamed


def test_both_spellings_at_once_are_refused():
    with pytest.raises(BadRequestData) as refused:
        current_names({**DOC, "name": "a", "subscriptionName": "b"})
    assert refused.value.field == "name"
