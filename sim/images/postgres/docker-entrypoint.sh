#!/bin/bash
# The official postgres image's start-up contract, for Debian's PostgreSQL: initialise PGDATA on
# first start from POSTGRES_* (and /docker-entrypoint-initdb.d), never touch an existing cluster,
# then run the server as the postgres user as PID 1.
set -Eeuo pipefail

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

if [ "${1:-}" = postgres ]; then
    shift
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        POSTGRES_USER=${POSTGRES_USER:-postgres}
        POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
        if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
            cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
MSG
            exit 1
        fi
        pwfile=$(mktemp)
        printf '%s' "${POSTGRES_PASSWORD:-}" > "$pwfile"
        chown postgres "$pwfile"
        # No --auth, as the official image: initdb then trusts the socket and 127.0.0.1/::1 (any password, or none,
        # logs in there); only connections from other addresses meet the rule below and need the password.
        as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --locale=C.UTF-8 --encoding=UTF8 \
            -D "$PGDATA" >/dev/null
        rm -f "$pwfile"
        echo "host all all all ${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
        echo "listen_addresses = '*'" >> "$PGDATA/postgresql.auto.conf"
        # Initialise behind a socket only, as the official image does, so nobody connects early.
        as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        if [ "$POSTGRES_DB" != postgres ]; then
            as_postgres psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
                -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
        fi
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
                *.sh) . "$f" ;;
                *.sql) as_postgres psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f" ;;
            esac
        done
        as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        echo "PostgreSQL init process complete; ready for start up."
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" "$@"
fi
exec "$@"
