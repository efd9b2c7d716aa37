"""No credential reaches a log line."""

from __future__ import annotations

import logging

from citypilot.security.redact import MASK, RedactFilter, logging_config, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"


def test_tokens_keys_and_passwords_are_masked_wherever_they_appear():
    lines = [
        f'127.0.0.1:5123 - "WebSocket /api/v1/stream?token={JWT}&types=Bus" [accepted]',
        f"Authorization: Bearer {JWT}",
        f"offered subprotocols citypilot.stream, bearer.{JWT}",
        "X-Device-Key: cpd_abcdef0123456789",
        "device key cpd_abcdef0123456789 rotated",
        "username=bob&password=hunter2-hunter2",
        "GET /api/v1/stream?ticket=tk_0123456789",
    ]
    for line in lines:
        out = redact(line)
        assert MASK in out, line
        for secret in (JWT, "abcdef0123456789", "hunter2", "tk_0123456789"):
            assert secret not in out, out
    assert redact("monkey=banana&types=Bus") == "monkey=banana&types=Bus"


def test_the_filter_masks_the_arguments_of_a_record_and_keeps_the_format_working():
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:1", f"/api/v1/stream?token={JWT}"), None,
    )  # fmt: skip
    assert RedactFilter().filter(record)
    expected = f'127.0.0.1:1 - "WebSocket /api/v1/stream?token={MASK}" [accepted]'
    assert record.getMessage() == expected


def test_every_handler_of_the_server_log_has_the_filter():
    config = logging_config("info")
    assert all(h["filters"] == ["redact"] for h in config["handlers"].values())
    assert config["loggers"]["citypilot"]["handlers"] == ["default"]
    assert config["root"]["handlers"] == ["default"]  # any other library's lines too
