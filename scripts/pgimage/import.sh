#!/bin/sh
# Imports a root filesystem built by build-hostcopy.sh as a container image.
#
#   import.sh ROOTFS IMAGE            (env DOCKER=podman to import into Podman instead)
#
# No VOLUME is declared on purpose: the engine always bind-mounts the data directory, and a
# declared volume would leave an anonymous volume behind for every other container.
# The Docker daemon refuses a STOPSIGNAL change on import, so containers set StopSignal themselves.
set -eu
if [ $# -ne 2 ]; then
  echo "usage: $0 ROOTFS IMAGE" >&2
  exit 2
fi
[ -x "$1/usr/lib/postgresql/15/bin/postgres" ] || { echo "$1 does not look like a PostgreSQL rootfs" >&2; exit 1; }
tar -C "$1" -c . | ${DOCKER:-docker} import \
  --change 'ENV PG_MAJOR=15' \
  --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PGDATA=/var/lib/postgresql/data' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
  --change 'CMD ["postgres"]' \
  --change 'EXPOSE 5432' \
  - "$2"
