#!/bin/bash
# Builds a minimal PostgreSQL 15 root filesystem from this machine's own postgresql-15 packages.
#
#   build-hostcopy.sh ROOTFS          (env PGUID/PGGID: uid/gid of `postgres` in the image, default 999)
#
# The rootfs holds the files of postgresql-15, postgresql-client-15, libpq5 and tzdata (minus docs
# and the LLVM JIT), a shell and a few core tools, the shared-library closure of every binary, the
# C.UTF-8 locale, a passwd/group with postgres, and docker-entrypoint.sh. It is the same distro and
# libc as the host, so the copied binaries run unchanged. Import it with import.sh.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 ROOTFS" >&2
  exit 2
fi
R=$(realpath -m "$1")
PGUID=${PGUID:-999}
PGGID=${PGGID:-999}
HERE=$(cd "$(dirname "$0")" && pwd)

case "$R" in /|/usr|/usr/*|/etc|/etc/*|/var|/bin|/lib|/sbin) echo "refusing to use $R as a rootfs" >&2; exit 2 ;; esac
for p in postgresql-15 postgresql-client-15 libpq5 tzdata; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "package $p is not installed on this machine" >&2; exit 1; }
done

rm -rf "$R"
mkdir -p "$R"
LIST=$(mktemp)
trap 'rm -f "$LIST"' EXIT

# copy PATH…: copies files (not directory contents) keeping their path; follows symlinks too.
copy() {
  local f
  for f in "$@"; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    [ -e "$R$f" ] || [ -L "$R$f" ] && continue
    tar -C / -cf - --no-recursion "${f#/}" | tar -C "$R" -xf -
    if [ -L "$f" ]; then copy "$(readlink -f "$f")"; fi
  done
}

# 1. The packages' own files (directories are listed too, so tar --no-recursion keeps their modes).
dpkg -L postgresql-15 postgresql-client-15 libpq5 tzdata \
  | grep -Ev '^/usr/share/(doc|man|locale|lintian)(/|$)|llvmjit|/bitcode(/|$)' \
  | grep -v '^/\.$' | sed 's#^/##' > "$LIST"
tar -C / -cf - --no-recursion -T "$LIST" | tar -C "$R" -xf -

# 2. A shell and the tools the engine and the entrypoint use.
TOOLS="/bin/sh /usr/bin/dash /usr/bin/bash /usr/bin/env /usr/bin/id /usr/bin/mkdir /usr/bin/chmod
 /usr/bin/chown /usr/bin/chgrp /usr/bin/mktemp /usr/bin/rm /usr/bin/rmdir /usr/bin/sleep /usr/bin/cat
 /usr/bin/ls /usr/bin/cp /usr/bin/mv /usr/bin/ln /usr/bin/touch /usr/bin/true /usr/bin/false
 /usr/bin/setpriv /usr/bin/kill /usr/bin/ps /usr/bin/grep /usr/bin/sed /usr/bin/tar /usr/bin/du
 /usr/bin/date /usr/bin/head /usr/bin/tail /usr/bin/wc /usr/bin/sort /usr/bin/tee /usr/bin/stat
 /usr/bin/dirname /usr/bin/basename /usr/bin/readlink /usr/bin/locale /usr/bin/echo /usr/bin/printf
 /usr/bin/find /usr/bin/xargs /usr/bin/uname /usr/bin/hostname /usr/bin/whoami /usr/bin/nproc
 /usr/bin/test /usr/bin/[ /usr/bin/expr /usr/bin/timeout /usr/bin/gzip /usr/bin/zcat"
# shellcheck disable=SC2086 # word splitting of the list is intended
copy $TOOLS

# 3. The shared-library closure of every executable and library in the tree.
find "$R" \( -type f -perm -u+x -o -type f -name '*.so*' \) -print \
  | while read -r f; do { ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^[[:space:]]*\/lib/{print $1}' || true; }; done \
  | sort -u | while read -r l; do copy "$l"; done
copy /lib64/ld-linux-x86-64.so.2
tar -C / -cf - usr/lib/locale/C.utf8 | tar -C "$R" -xf -

# 4. Merged-/usr layout: /bin, /lib, /lib64 and /sbin are links into /usr.
for d in bin lib lib64 sbin; do
  mkdir -p "$R/usr/$d"
  if [ -e "$R/$d" ] && [ ! -L "$R/$d" ]; then cp -a "$R/$d/." "$R/usr/$d/"; rm -rf "${R:?}/$d"; fi
  ln -sfn "usr/$d" "$R/$d"
done

# 5. Users, name service, directories. NB: never write through "$R/var/run" (it links to /run).
mkdir -p "$R/etc" "$R/tmp" "$R/root" "$R/run/postgresql" "$R/var/lib/postgresql/data" \
         "$R/docker-entrypoint-initdb.d" "$R/usr/local/bin" "$R/var"
rm -rf "${R:?}/var/run"
ln -sfn /run "$R/var/run"
chmod 1777 "$R/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:%s:%s:PostgreSQL administrator:/var/lib/postgresql:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
  "$PGUID" "$PGGID" > "$R/etc/passwd"
printf 'root:x:0:\npostgres:x:%s:\nnogroup:x:65534:\n' "$PGGID" > "$R/etc/group"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > "$R/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$R/etc/hosts"
ln -sfn /usr/share/zoneinfo/Etc/UTC "$R/etc/localtime"
chown "$PGUID:$PGGID" "$R/run/postgresql" "$R/var/lib/postgresql" "$R/var/lib/postgresql/data"
chmod 3777 "$R/run/postgresql"
chmod 1777 "$R/var/lib/postgresql/data"
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$R/usr/share/postgresql/15/postgresql.conf.sample"
install -m 0755 "$HERE/docker-entrypoint.sh" "$R/usr/local/bin/docker-entrypoint.sh"

# 6. Check the result has what the engine needs.
missing=""
for b in pg_ctl initdb postgres psql pg_isready pgbench; do
  [ -x "$R/usr/lib/postgresql/15/bin/$b" ] || missing="$missing $b"
done
for b in sleep sh id kill chmod mkdir test cat setpriv; do
  [ -x "$R/usr/bin/$b" ] || missing="$missing $b"
done
if [ -n "$missing" ]; then
  echo "rootfs $R is missing:$missing" >&2
  exit 1
fi
echo "rootfs ready: $R ($(du -sh "$R" | cut -f1))"
