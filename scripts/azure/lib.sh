# shellcheck shell=bash
# What the deploy scripts share: a stop that says what to do, bounded retries, and the
# deploy's Python (a venv with the app's requirements and Alembic, nothing else).
# Sourced, never run.

fail() {
  echo "deploy: $*" >&2
  exit 1
}

# need COMMAND WHERE-TO-GET-IT
need() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed: $2"
}

# retry TRIES PAUSE WHAT COMMAND...: run COMMAND until it succeeds, at most TRIES times.
retry() {
  local tries=$1 pause=$2 what=$3 attempt
  shift 3
  for attempt in $(seq 1 "$tries"); do
    if "$@"; then
      return 0
    fi
    [ "$attempt" -lt "$tries" ] || break
    echo "deploy: ${what}: not yet (${attempt}/${tries}); trying again in ${pause}s" >&2
    sleep "$pause"
  done
  return 1
}

# The Python that runs the database step: DEPLOY_PYTHON if set, else .venv-deploy, made
# and kept in step with requirements-deploy.txt here.
deploy_python() {
  if [ -n "${DEPLOY_PYTHON:-}" ]; then
    echo "$DEPLOY_PYTHON"
    return
  fi
  local python want
  python=$(command -v python3.11 || command -v python3) ||
    fail "Python 3.11 is not installed: https://www.python.org/downloads/"
  [ -x .venv-deploy/bin/python ] || "$python" -m venv .venv-deploy >&2
  want=$(cat requirements.txt requirements-deploy.txt | "$python" -c \
    'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
  if [ "$(cat .venv-deploy/.requirements.sha256 2>/dev/null)" != "$want" ]; then
    echo "deploy: installing the deploy's Python packages into .venv-deploy" >&2
    .venv-deploy/bin/python -m pip install -q --disable-pip-version-check \
      -r requirements-deploy.txt >&2
    echo "$want" >.venv-deploy/.requirements.sha256
  fi
  echo .venv-deploy/bin/python
}
