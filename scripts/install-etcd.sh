#!/usr/bin/env bash
# Installs etcd (Debian's etcd-server, 3.4 on Debian 12) for `./dev bench:e2e`, which runs a
# 3-member etcd cluster beside tsraft when an `etcd` binary is on the PATH. Needs root (apt-get).
#
#   scripts/install-etcd.sh
set -euo pipefail
if command -v etcd >/dev/null 2>&1; then
  echo "etcd is installed: $(etcd --version | head -n 1)"
  exit 0
fi
[[ "$(id -u)" == 0 ]] || { echo "run as root: it installs etcd-server with apt-get" >&2; exit 1; }
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null
# The package enables and starts a system etcd on the default ports where systemd runs; the
# benchmark starts its own members on free ports and needs none.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
echo "installed: $(etcd --version | head -n 1)"
