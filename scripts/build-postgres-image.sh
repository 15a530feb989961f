#!/usr/bin/env bash
# Builds a Postgres 15 container image from Debian packages, without any container registry.
#
#   scripts/build-postgres-image.sh [IMAGE]     (default IMAGE: tsraft/postgres:15)
#
# CI machines reach the npm registry and a Debian mirror, but no container registry, so the official
# `postgres` image cannot be pulled. This script debootstraps a minimal Debian 12 (bookworm) root
# file system with `postgresql-15` from the mirror the machine's own apt sources name, adds an
# entrypoint that behaves like the official image's, and `docker import`s it. The result works with
# `@testcontainers/postgresql` (its health check runs `pg_isready` through `sh`, both included).
#
# The entrypoint, like the official image's:
#   - on first start (no $PGDATA/PG_VERSION): requires POSTGRES_PASSWORD, runs initdb with
#     POSTGRES_USER (default postgres) as superuser, --auth-local=trust --auth-host=md5, allows
#     `host all all 0.0.0.0/0 md5` (and ::/0), and creates POSTGRES_DB (default POSTGRES_USER);
#   - then execs `postgres -c listen_addresses='*'` as the postgres user (PID 1, so signals reach
#     it). `docker import` cannot set STOPSIGNAL, so `docker stop` sends SIGTERM (Postgres' smart
#     shutdown, which waits for clients to disconnect); send SIGINT for a fast shutdown, as the
#     official image's STOPSIGNAL does (the testcontainers provider does so).
# Data lives in the container's writable layer, so it survives stop/kill and start.
#
# Needs root, a running Docker engine and debootstrap (installed with apt-get when missing).
# Environment:
#   TSRAFT_DEBIAN_MIRROR  Debian mirror URL to debootstrap from (default: read from apt sources)
#   TMPDIR                where the temporary root file system is built (default /var/tmp)
set -euo pipefail

image="${1:-tsraft/postgres:15}"
readonly suite=bookworm
readonly pg_major=15

log() { printf '[build-postgres-image] %s\n' "$*" >&2; }
die() { printf '[build-postgres-image] error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "must run as root (debootstrap and docker import need it)."
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info'; start dockerd first."

# debian_mirror: the first Debian archive URI the apt sources use for the $suite suite.
debian_mirror() {
  if [[ -n "${TSRAFT_DEBIAN_MIRROR:-}" ]]; then
    printf '%s\n' "$TSRAFT_DEBIAN_MIRROR"
    return
  fi
  local files=() f
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && files+=("$f")
  done
  ((${#files[@]})) || return 1
  # One-line format: deb [options] URI SUITE COMPONENTS...
  # deb822 format: stanzas of Types/URIs/Suites fields separated by blank lines.
  awk -v suite="$suite" '
    function flush() {
      if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && !found) {
        split(uris, u, " "); print u[1]; found = 1
      }
      types = ""; uris = ""; suites = ""
    }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[[:space:]]*$/) { flush(); next }
      if ($0 ~ /^[[:space:]]*#/) next
      if (tolower($1) == "types:") { $1 = ""; types = $0 }
      if (tolower($1) == "uris:") { $1 = ""; sub(/^ +/, ""); uris = $0 }
      if (tolower($1) == "suites:") { $1 = ""; suites = $0 }
      next
    }
    FNR == 1 { flush() }
    $1 == "deb" && !found {
      i = 2
      if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; found = 1 }
    }
    END { flush() }
  ' "${files[@]}" | head -n 1 | grep .
}

mirror="$(debian_mirror)" ||
  die "found no Debian '$suite' mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/; set TSRAFT_DEBIAN_MIRROR=http://your-mirror/debian."

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap with apt-get"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
fi

work="$(mktemp -d "${TMPDIR:-/var/tmp}/tsraft-pg-image.XXXXXX")"
rootfs="$work/rootfs"
cleanup() {
  # debootstrap may leave /proc or /sys of the chroot mounted when it fails.
  local m
  for m in proc sys dev/pts dev; do
    mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m" || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

log "debootstrap $suite (minbase, postgresql-$pg_major) from $mirror"
if ! debootstrap --variant=minbase --include="postgresql-$pg_major" "$suite" "$rootfs" "$mirror" \
  >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  [[ -f "$rootfs/debootstrap/debootstrap.log" ]] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
  die "debootstrap failed (mirror $mirror); see the log above."
fi

# The package's own cluster (/var/lib/postgresql/15/main, /etc/postgresql/15) is not used: the
# entrypoint creates $PGDATA on first start, like the official image.
rm -rf "$rootfs/var/lib/postgresql/$pg_major" "$rootfs/etc/postgresql/$pg_major" \
  "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* "$rootfs/debootstrap"
getent_uid="$(chroot "$rootfs" id -u postgres)" || die "the postgres user is missing from the image."
log "postgres user has uid $getent_uid in the image"

cat >"$rootfs/usr/local/bin/docker-entrypoint.sh" <<'ENTRYPOINT'
#!/bin/sh
# Acts like the official postgres image's entrypoint (see scripts/build-postgres-image.sh).
set -eu

if [ "${1:-postgres}" != postgres ]; then
  exec "$@"
fi
[ "$#" -gt 0 ] && shift

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

as_postgres=""
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  as_postgres="setpriv --reuid=postgres --regid=postgres --init-groups"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set." >&2
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  [ -n "$as_postgres" ] && chown postgres "$pwfile"
  $as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=md5 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf 'host all all 0.0.0.0/0 md5\nhost all all ::/0 md5\n' >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # Single-user mode: no server listens while the database is created, so a readiness check
    # (pg_isready) cannot succeed before the real server starts.
    db="$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')"
    printf 'CREATE DATABASE "%s";\n' "$db" | $as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi

exec $as_postgres postgres -c listen_addresses='*' "$@"
ENTRYPOINT
chmod 755 "$rootfs/usr/local/bin/docker-entrypoint.sh"

log "docker import -> $image"
tar -C "$rootfs" -c . | docker import \
  -c 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
  -c 'CMD ["postgres"]' \
  -c 'EXPOSE 5432' \
  -c "ENV PATH=/usr/lib/postgresql/$pg_major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  -c 'ENV PGDATA=/var/lib/postgresql/data' \
  -c 'ENV LANG=C.UTF-8' \
  -m "postgresql-$pg_major on Debian $suite, built by scripts/build-postgres-image.sh" \
  - "$image" >/dev/null
log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
