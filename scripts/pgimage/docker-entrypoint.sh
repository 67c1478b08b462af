#!/bin/sh
# Entrypoint of the sqlrs-local/postgres image (POSIX sh, installed as /usr/local/bin/docker-entrypoint.sh).
#
# A small subset of the conventions of the well-known postgres images, so the image can also be
# used by hand (`docker run -e POSTGRES_PASSWORD=x -p 127.0.0.1::5432 IMAGE`):
#   POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, PGDATA, POSTGRES_INITDB_ARGS,
#   POSTGRES_HOST_AUTH_METHOD and /docker-entrypoint-initdb.d/*.sql|*.sh.
# Any command other than `postgres` (e.g. `sleep infinity`, `initdb …`) is executed as given; the
# engine itself always runs its own command and manages Postgres through `pg_ctl`.
set -eu

# `docker run IMAGE -c fsync=off`: arguments starting with '-' are server options.
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" != "postgres" ]; then exec "$@"; fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA"
  # Only change what is not ours yet: a recursive chown would copy every file up when PGDATA
  # lives on a copy-on-write mount.
  [ "$(stat -c %u "$PGDATA")" = "$(id -u postgres)" ] || chown postgres:postgres "$PGDATA"
  chmod 0700 "$PGDATA" 2>/dev/null || :
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' + 2>/dev/null || :
  mkdir -p /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
    echo >&2 "error: POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)"
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words on purpose
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  [ -n "${POSTGRES_PASSWORD:-}" ] || auth=trust
  printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"

  # A temporary server on the unix socket only, for the init scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
  export PGUSER="$POSTGRES_USER" PGPASSWORD="${POSTGRES_PASSWORD:-}" PGHOST=/var/run/postgresql
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --dbname postgres -q -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)  echo "running $f"; . "$f" ;;
      *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --dbname "$POSTGRES_DB" -q -f "$f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  unset PGPASSWORD
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
