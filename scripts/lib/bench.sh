# shellcheck shell=bash
# Sourced by scripts/bench-*.sh: the setup every benchmark repeated, in one place.
# A benchmark installs what it needs when it is missing (rather than asking the reader to).

# need_tools TOOL...: installs, with apt-get, the package of each TOOL not on PATH
# (taskset comes with util-linux); exits 2 naming them if that fails.
need_tools() {
  local tool missing=() pkgs=() sudo=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  for tool in "${missing[@]}"; do
    case "$tool" in taskset) pkgs+=(util-linux) ;; *) pkgs+=("$tool") ;; esac
  done
  echo "installing ${pkgs[*]} (apt-get)" >&2
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${pkgs[@]}" >/dev/null; } ||
    { echo "${missing[*]}: required and could not be installed: apt-get install -y ${pkgs[*]}" >&2; exit 2; }
}

# free_port: a TCP port free on loopback now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready LOG [SECONDS] [PID]: waits (default 30 s) for `up`'s `ready:` line in LOG;
# gives up early if PID has exited. On failure prints LOG and exits 1.
wait_ready() {
  local log=$1 tenths=$((${2:-30} * 10)) pid=${3:-}
  for _ in $(seq 1 "$tenths"); do
    grep -q '^ready:' "$log" && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  cat "$log" >&2; echo "up did not become ready within ${2:-30} s ($log)" >&2; exit 1
}

# ratio A B: A/B with two decimals.
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
