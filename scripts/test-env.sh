#!/bin/bash
# Prepares this machine (Debian 12, run as root) for the test suite:
#   - installs docker.io, btrfs-progs, postgresql-15 and postgresql-client-15 when missing;
#   - installs chromium when missing (the headless browser of test/e2e/ui.test.ts);
#   - starts dockerd in the background when the daemon does not answer (log: /var/log/dockerd.log);
#   - builds the local image sqlrs-local/postgres:15 from the host's PostgreSQL when it is missing;
#   - Podman, for the container suites' second pass (test/e2e/podman.test.ts): installs podman (and
#     curl) when missing, writes the ulimit fix to /etc/sqlrs-test/containers.conf, starts
#     `podman system service` on /run/sqlrs-test/podman.sock unless it answers there (log:
#     /var/log/podman-service.log), and loads the image into Podman's store when it is missing or
#     differs from Docker's.
# Idempotent, and quick when everything is already in place.
#
# env: SQLRS_TEST_IMAGE (default sqlrs-local/postgres:15), DOCKERD_TIMEOUT (seconds, default 60),
#      SQLRS_TEST_PODMAN_SOCKET (default /run/sqlrs-test/podman.sock), PODMAN_TIMEOUT (seconds, default 30),
#      SQLRS_TEST_PODMAN=0 (leave Podman out), SQLRS_TEST_BROWSER=0 (leave Chromium out)
set -euo pipefail

IMAGE=${SQLRS_TEST_IMAGE:-sqlrs-local/postgres:15}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
PODMAN_SOCKET=${SQLRS_TEST_PODMAN_SOCKET:-/run/sqlrs-test/podman.sock}
PODMAN_TIMEOUT=${PODMAN_TIMEOUT:-30}
PODMAN_CONF=/etc/sqlrs-test/containers.conf
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

# 1b. Chromium: test/e2e/ui.test.ts drives the live page (/ui) in Debian's headless chromium.
if [ "${SQLRS_TEST_BROWSER:-1}" = 0 ]; then
  say "chromium left out (SQLRS_TEST_BROWSER=0)"
elif dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'ok installed'; then
  say "chromium present"
else
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show chromium >/dev/null 2>&1; then
    say "apt-get update"
    apt-get update -qq
  fi
  say "installing chromium"
  # a stale package list names a version the mirror no longer has: refresh it and try once more
  apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
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

# 4. Podman: the container suites run on it too (test/e2e/podman.test.ts), through its
#    Docker-compatible API on $PODMAN_SOCKET. SQLRS_TEST_PODMAN=0 leaves it out.
setup_podman() {
  need=()
  for p in podman curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then
      say "apt-get update"
      apt-get update -qq
    fi
    say "installing ${need[*]}"
    # with recommends (netavark, conmon, catatonit, ...): the set the environment guide verified;
    # a stale package list names a version the mirror no longer has: refresh it and try once more
    apt-get install -y -qq "${need[@]}" >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
  else
    say "packages present: podman curl"
  fi

  # Without this every container start fails here: podman's default nofile/nproc (1048576) exceed
  # what the machine lets a process raise its hard limits to ("error setting rlimit type 7").
  conf='[containers]
# written by scripts/test-env.sh: this machine lacks CAP_SYS_RESOURCE (hard nofile=20000) and
# rejects nproc above 32768 (= kernel.pid_max)
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]'
  if [ "$(cat "$PODMAN_CONF" 2>/dev/null)" != "$conf" ]; then
    mkdir -p "$(dirname "$PODMAN_CONF")"
    printf '%s\n' "$conf" > "$PODMAN_CONF.tmp" && mv "$PODMAN_CONF.tmp" "$PODMAN_CONF"
    say "wrote $PODMAN_CONF"
  fi

  podman_answers() { [ "$(curl -s --max-time 2 --unix-socket "$PODMAN_SOCKET" http://d/_ping 2>/dev/null)" = OK ]; }
  # pids of `podman system service` processes for this socket (started by an earlier run, maybe still starting)
  podman_services() { pgrep -f -x "podman system service --time=0 unix://$PODMAN_SOCKET" || true; }

  if podman_answers; then
    say "podman API answers at $PODMAN_SOCKET"
    for pid in $(podman_services); do
      tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "CONTAINERS_CONF=$PODMAN_CONF" \
        || say "warning: podman service $pid runs without CONTAINERS_CONF=$PODMAN_CONF; container starts may fail"
    done
  else
    if [ -z "$(podman_services)" ]; then
      say "starting podman system service on $PODMAN_SOCKET (log: /var/log/podman-service.log)"
      mkdir -p "$(dirname "$PODMAN_SOCKET")"
      rm -f "$PODMAN_SOCKET" # a stale socket of a service that is gone
      # its own session, like dockerd: a signal to the caller's process group must not reach it
      CONTAINERS_CONF=$PODMAN_CONF setsid nohup podman system service --time=0 "unix://$PODMAN_SOCKET" \
        >>/var/log/podman-service.log 2>&1 </dev/null &
    else
      say "podman system service is starting on $PODMAN_SOCKET"
    fi
    deadline=$((SECONDS + PODMAN_TIMEOUT))
    until podman_answers; do
      if [ $SECONDS -ge $deadline ]; then
        tail -n 20 /var/log/podman-service.log >&2 || true
        die "podman API did not answer at $PODMAN_SOCKET within ${PODMAN_TIMEOUT}s (see /var/log/podman-service.log)"
      fi
      sleep 0.2
    done
    say "podman API is up at $PODMAN_SOCKET"
  fi

  # The same image as Docker's (same id), under the name users pass: the engine looks images up by
  # that name through the API, where Podman resolves it to localhost/<name>.
  podman_image_id() {
    curl -s --max-time 10 --unix-socket "$PODMAN_SOCKET" "http://d/images/$IMAGE/json" 2>/dev/null \
      | grep -o '"Id":"[^"]*"' | head -n 1 | cut -d'"' -f4 || true
  }
  docker_id=$(docker image inspect --format '{{.Id}}' "$IMAGE")
  podman_id=$(podman_image_id)
  if [ "${podman_id#sha256:}" = "${docker_id#sha256:}" ]; then
    say "image $IMAGE is in Podman's store"
  else
    say "loading image $IMAGE into Podman's store${podman_id:+ (it holds a different one)}"
    # docker save | podman load (~2.5 s) beats rebuilding with pgimage/import.sh (~3.7 s) and keeps the id
    docker save "$IMAGE" | podman load -q >/dev/null
    podman_id=$(podman_image_id)
    [ "${podman_id#sha256:}" = "${docker_id#sha256:}" ] \
      || die "image $IMAGE does not resolve through the podman API at $PODMAN_SOCKET after loading (got '${podman_id}', want '${docker_id}')"
    say "image $IMAGE loaded into Podman's store"
  fi
}
if [ "${SQLRS_TEST_PODMAN:-1}" = 0 ]; then
  say "podman left out (SQLRS_TEST_PODMAN=0)"
else
  setup_podman
fi
