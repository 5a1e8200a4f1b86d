#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what the tests talk to
# (promtool from Debian's prometheus package; the official Prometheus Python
# client as an independent exposition parser), then runs every test in the
# workspace with cargo-nextest (cargo test if nextest is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "test.sh: installing prometheus (for promtool)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The console's browser tests (tests/console.rs) drive headless Chromium through chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "test.sh: installing chromium and chromium-driver (for the console's browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi
# A real Alertmanager for tests/prometheus.rs (alerts routed to up's /alerts).
if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  echo "test.sh: installing prometheus-alertmanager"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
fi
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "test.sh: installing the prometheus-client Python package"
  python3 -m pip install -q --disable-pip-version-check prometheus-client==0.21.1
fi

if cargo nextest --version >/dev/null 2>&1; then
  # Tests that start whole environments are timing-sensitive (alarms fire on
  # measured CPU, health checks, log drains): they run on their own, one at a
  # time, after the rest, never beside CPU-heavy tests. Which tests those are
  # is said once, by the `environments` test group in .config/nextest.toml.
  status=0
  cargo nextest run --workspace --no-fail-fast -E 'not group(environments)' "$@" || status=$?
  cargo nextest run --workspace --no-fail-fast -E 'group(environments)' "$@" || status=$?
  exit "$status"
else
  cargo test --workspace --no-fail-fast "$@"
fi
