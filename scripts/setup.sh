#!/usr/bin/env bash
# Set up everything CityPilot needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (PostGIS for the PostgreSQL backend, Chromium for browser tests),
# a project-local virtual environment with the pinned Python dependencies, and the
# console's front-end build. Usage: scripts/setup.sh [--no-system] [--no-console]
set -euo pipefail
cd "$(dirname "$0")/.."

want_system=1
want_console=1
for arg in "$@"; do
  case "$arg" in
    --no-system) want_system=0 ;;
    --no-console) want_console=0 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

need_apt=()
if [ "$want_system" = 1 ] && command -v apt-get >/dev/null; then
  if command -v pg_config >/dev/null || [ -d /usr/lib/postgresql ]; then
    pgver="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)"
    if [ -n "$pgver" ] && [ ! -e "/usr/share/postgresql/$pgver/extension/postgis.control" ]; then
      need_apt+=("postgresql-$pgver-postgis-3")
    fi
  fi
  command -v chromium >/dev/null || need_apt+=(chromium fonts-dejavu-core)
  command -v node >/dev/null || need_apt+=(nodejs npm)
  if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "==> installing system packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.citypilot-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing Python dependencies (pinned in pyproject.toml)"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

if [ "$want_console" = 1 ] && [ -f citypilot/console/package.json ]; then
  ( cd citypilot/console
    if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
      echo "==> installing console packages (npm ci)"
      npm ci --no-audit --no-fund --loglevel=error
    fi
    echo "==> building the console"
    npm run --silent build )
fi
echo "==> set-up done"
