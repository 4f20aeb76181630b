#!/usr/bin/env bash
# ferretdb-pg.sh: run FerretDB v1.24.0 on PostgreSQL (Debian packages) as an external
# MongoDB-compatible server, so the MongoDB store can be benchmarked over the network:
#
#   scripts/ferretdb-pg.sh start      # install PostgreSQL if needed, start it and FerretDB
#   go run ./cmd/calaimfhir bench --mongodb-uri mongodb://127.0.0.1:27019/calaimfhir
#   scripts/ferretdb-pg.sh stop
#
# Commands: start (default), stop, status. Settings (environment):
#   FERRETPG_DIR      working directory: PostgreSQL cluster, FerretDB binary, logs
#                     (default /tmp/calaimfhir-ferretdb-pg)
#   FERRETPG_PG_PORT  PostgreSQL port on 127.0.0.1 (default 54329)
#   FERRETPG_PORT     FerretDB (MongoDB wire protocol) port on 127.0.0.1 (default 27019)
#
# PostgreSQL runs as its own cluster in FERRETPG_DIR (initdb, trust auth on loopback only),
# never the system's "main" cluster. FerretDB is built from its Go module (the embeddable
# package, through a small main written below, because its cmd/ferretdb panics unless built
# from a FerretDB git checkout) with the Go toolchain and module proxy; nothing is pulled from
# container registries.
set -euo pipefail

FERRETDB_VERSION=v1.24.0
DIR=${FERRETPG_DIR:-/tmp/calaimfhir-ferretdb-pg}
PG_PORT=${FERRETPG_PG_PORT:-54329}
PORT=${FERRETPG_PORT:-27019}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

log() { echo "ferretdb-pg: $*" >&2; }

# as_postgres runs a PostgreSQL tool as the postgres user when we are root (PostgreSQL
# refuses to run as root), else as ourselves.
as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_postgresql() {
	if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
		log "installing PostgreSQL from the Debian packages"
		$SUDO apt-get update
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
	fi
	PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
}

start_postgresql() {
	mkdir -p "$DIR/pg" "$DIR/sock"
	if [ "$(id -u)" -eq 0 ]; then chown postgres "$DIR/pg" "$DIR/sock"; fi
	if [ ! -f "$DIR/pg/PG_VERSION" ]; then
		log "creating a PostgreSQL cluster in $DIR/pg"
		as_postgres "$PGBIN/initdb" -D "$DIR/pg" -U postgres --auth=trust -E UTF8 --locale=C >"$DIR/initdb.log"
	fi
	if as_postgres "$PGBIN/pg_ctl" -D "$DIR/pg" status >/dev/null 2>&1; then
		log "PostgreSQL already running"
	else
		touch "$DIR/pg.log"
		if [ "$(id -u)" -eq 0 ]; then chown postgres "$DIR/pg.log"; fi
		as_postgres "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -w \
			-o "-p $PG_PORT -k $DIR/sock -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
		log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
	fi
	if ! as_postgres "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='ferretdb'" | grep -q 1; then
		as_postgres "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres ferretdb
	fi
}

build_ferretdb() {
	BIN="$DIR/bin/ferretdb-$FERRETDB_VERSION"
	if [ -x "$BIN" ]; then return; fi
	log "building FerretDB $FERRETDB_VERSION (a few minutes the first time)"
	local src="$DIR/src"
	mkdir -p "$src" "$DIR/bin"
	cat >"$src/go.mod" <<EOF
module calaimfhir.local/ferretdb-pg

go 1.22

require github.com/FerretDB/FerretDB $FERRETDB_VERSION
EOF
	cat >"$src/main.go" <<'EOF'
// Command ferretdb-pg runs the embeddable FerretDB on PostgreSQL until interrupted.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27019", "MongoDB wire protocol address")
	pg := flag.String("postgresql-url", "postgres://postgres@127.0.0.1:54329/ferretdb", "PostgreSQL URL")
	flag.Parse()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Handler:       "postgresql",
		PostgreSQLURL: *pg,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Printf("FerretDB listening on %s (PostgreSQL %s)", *listen, *pg)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
EOF
	(cd "$src" && go build -mod=mod -o "$BIN" .)
}

start_ferretdb() {
	if [ -f "$DIR/ferretdb.pid" ] && kill -0 "$(cat "$DIR/ferretdb.pid")" 2>/dev/null; then
		log "FerretDB already running (pid $(cat "$DIR/ferretdb.pid"))"
		return
	fi
	nohup "$BIN" --listen-addr "127.0.0.1:$PORT" \
		--postgresql-url "postgres://postgres@127.0.0.1:$PG_PORT/ferretdb" >"$DIR/ferretdb.log" 2>&1 &
	echo $! >"$DIR/ferretdb.pid"
	for _ in $(seq 1 50); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
			log "FerretDB $FERRETDB_VERSION on 127.0.0.1:$PORT (pid $(cat "$DIR/ferretdb.pid"), log $DIR/ferretdb.log)"
			return
		fi
		sleep 0.2
	done
	log "FerretDB did not start; see $DIR/ferretdb.log"
	tail -n 20 "$DIR/ferretdb.log" >&2
	exit 1
}

stop_all() {
	if [ -f "$DIR/ferretdb.pid" ]; then
		kill "$(cat "$DIR/ferretdb.pid")" 2>/dev/null || true
		rm -f "$DIR/ferretdb.pid"
		log "FerretDB stopped"
	fi
	install_postgresql
	if [ -f "$DIR/pg/PG_VERSION" ] && as_postgres "$PGBIN/pg_ctl" -D "$DIR/pg" status >/dev/null 2>&1; then
		as_postgres "$PGBIN/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null
		log "PostgreSQL stopped (data kept in $DIR/pg; remove $DIR to start afresh)"
	fi
}

case "${1:-start}" in
start)
	install_postgresql
	start_postgresql
	build_ferretdb
	start_ferretdb
	echo "mongodb://127.0.0.1:$PORT/calaimfhir"
	log "try: go run ./cmd/calaimfhir bench --mongodb-uri mongodb://127.0.0.1:$PORT/calaimfhir"
	;;
stop) stop_all ;;
status)
	install_postgresql
	as_postgres "$PGBIN/pg_ctl" -D "$DIR/pg" status || true
	if [ -f "$DIR/ferretdb.pid" ] && kill -0 "$(cat "$DIR/ferretdb.pid")" 2>/dev/null; then
		echo "FerretDB running, pid $(cat "$DIR/ferretdb.pid"), port $PORT"
	else
		echo "FerretDB not running"
	fi
	;;
*)
	echo "usage: $0 [start|stop|status]" >&2
	exit 2
	;;
esac
