#!/bin/bash
# First start: initdb with the official image's variables; then run the server in the foreground.
set -euo pipefail
BIN=/usr/lib/postgresql/bin
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec runuser -u postgres -- /bin/bash "$0" "$@"
fi
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
    pwfile="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    "$BIN/initdb" -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=trust
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "$db" != postgres ]; then
        "$BIN/createdb" -U "$user" "$db"
    fi
    "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop
fi
if [ "${1:-postgres}" = postgres ]; then
    exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*'
fi
exec "$@"
