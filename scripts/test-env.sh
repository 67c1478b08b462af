#!/bin/bash
# Prepares this machine (Debian 12, run as root) for the test suite:
#   - installs docker.io, btrfs-progs, postgresql-15 and postgresql-client-15 when missing;
#   - starts dockerd in the background when the daemon does not answer (log: /var/log/dockerd.log);
#   - builds the local image sqlrs-local/postgres:15 from the host's PostgreSQL when it is missing.
# Idempotent, and quick when everything is already in place.
#
# env: SQLRS_TEST_IMAGE (default sqlrs-local/postgres:15), DOCKERD_TIMEOUT (seconds, default 60)
set -euo pipefail

IMAGE=${SQLRS_TEST_IMAGE:-sqlrs-local/postgres:15}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
HERE=$(cd "$(dirname "$0")" && pwd)

say() { printf 'test-env: %s\n' "$*"; }
die() { printf 'test-env: error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
  die "must run as root (installs packages and starts dockerd)"
fi

# 1. Packages.
need=()
for p in docker.io btrfs-progs postgresql-15 postgresql-client-15; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    :
  else
    need+=("$p")
  fi
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then
    say "apt-get update"
    apt-get update -qq
  fi
  say "installing ${need[*]}"
  # policy-rc.d-less containers may fail to start services at install time; that is not an error here
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  say "packages present: docker.io btrfs-progs postgresql-15 postgresql-client-15"
fi

# 2. Docker daemon.
if docker info >/dev/null 2>&1; then
  say "docker daemon is running"
else
  say "starting dockerd (log: /var/log/dockerd.log)"
  # its own session: a signal to the caller's process group must not reach dockerd or its shims
  setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
  deadline=$((SECONDS + DOCKERD_TIMEOUT))
  until docker info >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      tail -n 20 /var/log/dockerd.log >&2 || true
      die "docker daemon did not answer within ${DOCKERD_TIMEOUT}s (see /var/log/dockerd.log)"
    fi
    sleep 0.5
  done
  say "docker daemon is up"
fi

# 3. Image.
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "image $IMAGE exists"
else
  say "building image $IMAGE from the host's postgresql-15"
  work=$(mktemp -d /var/tmp/sqlrs-pgimage.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  "$HERE/pgimage/build-hostcopy.sh" "$work/rootfs"
  "$HERE/pgimage/import.sh" "$work/rootfs" "$IMAGE" >/dev/null
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE was not created"
  say "image $IMAGE built"
fi
