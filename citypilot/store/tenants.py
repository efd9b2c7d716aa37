"""Where each NGSI-LD tenant's data lives (ETSI GS CIM 009 v1.8, clause 4.14).

A tenant is a city data space of its own: on SQLite the database
``<data_dir>/tenants/<name>/city.db`` (with its notification and audit files beside
it), on PostgreSQL the database ``<city database>_t_<name>`` on the city's server.
Either is created the first time the tenant is written to; the default tenant is the
city's own store, untouched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg.conninfo import conninfo_to_dict

from citypilot.model.errors import BadRequestData

if TYPE_CHECKING:
    from citypilot.config import Settings
    from citypilot.store.base import Store

#: The request header naming the tenant (clause 6.3.14).
TENANT_HEADER = "NGSILD-Tenant"
#: Tenant names: a letter, then up to 39 lower-case letters, digits, ``_`` or ``-``
#: (safe as a directory and in a database name).
TENANT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
#: PostgreSQL keeps the first 63 bytes of a name: longer ones would collide.
_PG_NAME_BYTES = 63
#: Connections of a tenant's pool at most (the city's own has 10): a metropole of
#: tens of municipalities stays within a server's ``max_connections``.
TENANT_POOL_SIZE = 4


def check_tenant_name(name: str) -> str:
    """The tenant name, or BadRequestData naming the header."""
    if TENANT_NAME.fullmatch(name) is None:
        raise BadRequestData(
            f"{TENANT_HEADER} must be a letter then up to 39 lower-case letters, digits,"
            f" '_' or '-'; got {name[:60]!r}",
            TENANT_HEADER,
        )
    return name


def _city_database(settings: Settings) -> str:
    params = conninfo_to_dict(settings.postgres_dsn)
    return str(params.get("dbname") or params.get("user") or "postgres")


def tenant_database(settings: Settings, name: str) -> str:
    """The PostgreSQL database of a tenant; BadRequestData when the name would not fit."""
    database = f"{_city_database(settings)}_t_{name}"
    if len(database.encode()) > _PG_NAME_BYTES:
        room = _PG_NAME_BYTES - len(database.encode()) + len(name)
        raise BadRequestData(
            f"{TENANT_HEADER} {name!r} is too long for this city's database names"
            f" (at most {max(room, 0)} characters here)",
            TENANT_HEADER,
        )
    return database


def tenant_dir(settings: Settings, name: str) -> Path:
    """The directory of a tenant's SQLite files."""
    return settings.data_path / "tenants" / name


async def tenant_exists(settings: Settings, city_store: Store, name: str) -> bool:
    """Whether the tenant's data space was created (by this process or another one)."""
    if settings.store != "postgres":
        return (tenant_dir(settings, name) / "city.db").exists()
    from citypilot.store.postgres import PostgresStore

    assert isinstance(city_store, PostgresStore)
    database = tenant_database(settings, name)
    async with city_store.pool.connection() as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        return await cur.fetchone() is not None


async def existing_tenants(settings: Settings, city_store: Store) -> list[str]:
    """The names of the tenants created so far (by any process), sorted."""
    if settings.store != "postgres":
        root = settings.data_path / "tenants"
        found = (p.parent.name for p in root.glob("*/city.db")) if root.is_dir() else ()
        return sorted(n for n in found if TENANT_NAME.fullmatch(n))
    from citypilot.store.postgres import PostgresStore

    assert isinstance(city_store, PostgresStore)
    prefix = f"{_city_database(settings)}_t_"
    async with city_store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
        )
        names = [row[0][len(prefix) :] for row in await cur.fetchall()]
    return sorted(n for n in names if TENANT_NAME.fullmatch(n))
