#!/usr/bin/env bash
# Installs what the project's development and tests need on a fresh machine, and only what
# is missing: unixODBC (for pyodbc), shellcheck (the deploy scripts' lint), sqlite3 (the
# docs' queries) and Chromium (the capacity page's browser tests, driven by Playwright, which
# downloads no browser of its own) from Debian's packages, a venv in .venv with requirements-dev.txt, checkov in
# .venv-checkov (requirements-infra.txt), the app's requirements alone in .venv-package,
# Azurite from npm.
# Deploying needs none of this: see docs/site-administrator.md.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
  python=$(command -v python3.11 || command -v python3)
fi

missing=()
{ ldconfig -p 2>/dev/null || true; } | grep -q 'libodbc\.so\.2' || missing+=(unixodbc)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v sqlite3 >/dev/null || missing+=(sqlite3) # the docs' queries of the local database
[ -x /usr/bin/chromium ] || missing+=(chromium)       # tests/test_capacity_page.py
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]} (Debian's packages)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: warning: install ${missing[*]} (apt-get install ${missing[*]})" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $python"
  "$python" -m venv .venv
fi
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > .venv/.requirements.sha256
fi

want=$(sha256sum requirements-infra.txt | cut -d' ' -f1)
if [ "$(cat .venv-checkov/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing checkov into .venv-checkov"
  [ -x .venv-checkov/bin/python ] || "$python" -m venv .venv-checkov
  .venv-checkov/bin/python -m pip install -q --disable-pip-version-check -r requirements-infra.txt
  echo "$want" > .venv-checkov/.requirements.sha256
fi

# The app's requirements alone, as the Functions host installs them: tests/test_package.py
# indexes the deployment package with it.
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv-package/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing requirements.txt alone into .venv-package"
  rm -rf .venv-package
  "$python" -m venv .venv-package
  .venv-package/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > .venv-package/.requirements.sha256
fi

if [ ! -x node_modules/.bin/azurite-blob ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "bootstrap: installing Azurite from npm"
  npm ci --no-audit --no-fund --loglevel=error
fi
