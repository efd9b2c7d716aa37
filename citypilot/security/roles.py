"""Roles of people, from least to most trusted; each may do what the ones below may."""

from __future__ import annotations

ROLES = ("viewer", "operator", "admin")


def role_allows(role: str, needed: str) -> bool:
    """Whether a person with ``role`` may do what ``needed`` may."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)
