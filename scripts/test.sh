#!/usr/bin/env bash
# Sets up everything the test suite needs, then runs it — the one test command (CI calls it too).
#   usage: scripts/test.sh [pytest args...]
# On a fresh Debian/Ubuntu machine (as root) it installs what is missing: Chromium (browser tests),
# Docker (image tests, via ../shared/tools when present) and helm (chart tests). Docker, browser and
# helm tests FAIL rather than skip here (VISION_REQUIRE_*=1): a green run means they really ran.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
apt_install() {  # apt_install <command> <package>: only what is missing, only where we can
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing $2 (apt)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } >/dev/null
  else
    log "warning: $1 missing and cannot be installed here; tests that need it will fail"
  fi
}

log "python environment ($VENV)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned: an unpinned resolve would fetch a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$VENV/bin/python" -m pip install -q -e '.[serve,ui,train,test]'

apt_install chromium chromium
apt_install wrk wrk
apt_install prometheus prometheus   # + promtool: rule unit tests, PromQL against a real server
apt_install npm npm                 # + node: scripts/chart-docs.sh --check (README and schema of the chart)
# Fonts: training renders printed digits from the train families and evaluation from held-out ones;
# rendering stops when a family is missing (visionctl.ml.synth.FONT_PACKAGES, the one list).
FONT_PACKAGES=$("$VENV/bin/python" -c 'from visionctl.ml.synth import FONT_PACKAGES; print(FONT_PACKAGES)')
# shellcheck disable=SC2086  # word splitting wanted: one package per word
if ! dpkg -s $FONT_PACKAGES >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing fonts (apt)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $FONT_PACKAGES; } >/dev/null
  else
    log "warning: fonts missing and cannot be installed here; tests that render digits from them will fail"
  fi
fi

log "helm + kubectl"
if ! command -v helm >/dev/null; then
  if [ -x ../shared/tools/install-helm.sh ] || [ -f ../shared/tools/install-helm.sh ]; then
    export PATH="$(bash ../shared/tools/install-helm.sh .tools/bin):$PATH"
  fi
fi

log "docker + base image"
if [ -z "${VISION_BASE_IMAGE:-}" ] && [ -f ../shared/tools/offline-base-image.sh ]; then
  # No registry here: build a python:3.11-slim stand-in offline (starts dockerd if needed).
  VISION_BASE_IMAGE=$(bash ../shared/tools/offline-base-image.sh)
  export VISION_BASE_IMAGE
fi

export VISION_REQUIRE_DOCKER=${VISION_REQUIRE_DOCKER:-1}
export VISION_REQUIRE_BROWSER=${VISION_REQUIRE_BROWSER:-1}
export VISION_REQUIRE_HELM=${VISION_REQUIRE_HELM:-1}
export VISION_REQUIRE_PROMETHEUS=${VISION_REQUIRE_PROMETHEUS:-1}

log "import contracts (lint-imports, pyproject.toml)"
"$VENV/bin/lint-imports"

log "lint (ruff, pyproject.toml)"
"$VENV/bin/ruff" check .

log "pytest"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
# pytest exit 5 = "no tests collected": a misconfigured run, never a pass.
[ "$rc" = 5 ] && { log "no tests were collected"; exit 1; }
exit "$rc"
