#!/usr/bin/env bash
# bench/initial-sync.sh: initial sync as the user sees it (issue 17).
# Builds lattice, starts a throwaway Postgres (wal_level=logical) and
# `lattice serve` as its own process, loads ROWS rows of ~200 B into one
# table per key type (uuid, bigint, text keys), then times
# `lattice replicate --db FILE --shape TABLE` from the process's start to
# its "lattice: shape synced" log line (written after the snapshot's SQLite
# COMMIT). After replicate exits, a separate sqlite3 process checks that
# the file holds all ROWS rows. The key types run interleaved, RUNS rounds
# (the machine is noisy); the summary gives the median and range.
#
#   bench/initial-sync.sh                    # 100,000 rows, 3 rounds
#   ROWS=1000000 RUNS=1 bench/initial-sync.sh  # also: time per 100k step
#   KEYS="uuid bigint" bench/initial-sync.sh
#   KEEP=1 bench/initial-sync.sh             # keep the logs (and Postgres' data)
#   PROFILE=DIR bench/initial-sync.sh        # CPU profiles of serve and of
#                                            # each replicate (go tool pprof -top)
#   RATE=50000 bench/initial-sync.sh         # serve --snapshot-rows-per-sec
#                                            # (default here 0: no limit)
#   BASE=351880d bench/initial-sync.sh       # also replicate with the lattice
#                                            # of that commit, interleaved
#                                            # ("uuid@base"), against a serve
#                                            # of that commit (its own process)
#
# The step times come from the client's "lattice: snapshot progress" log
# lines (one per 100,000 rows applied). Needs Go, Postgres server binaries
# (PG_BINDIR, pg_config or /usr/lib/postgresql/*/bin), psql and sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-100000}
RUNS=${RUNS:-3}
KEYS=${KEYS:-uuid bigint text}
RATE=${RATE:-0}
PROFILE=${PROFILE:-}
BASE=${BASE:-}

pgbin() {
	if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
	if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then pg_config --bindir; return; fi
	ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}
PGBIN=$(pgbin)
for t in psql sqlite3; do command -v $t >/dev/null || { echo "initial-sync.sh: $t is needed" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/lattice-initsync.XXXXXX)
SERVE_PID=""
PG_STARTED=""
asuser=()
if [ "$(id -u)" = 0 ]; then asuser=(runuser -u postgres --); chown postgres "$TMP"; fi
cleanup() {
	[ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
	[ -n "${BASE_PID:-}" ] && kill "$BASE_PID" 2>/dev/null && wait "$BASE_PID" 2>/dev/null || true
	[ -n "$PG_STARTED" ] && "${asuser[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -m immediate stop >/dev/null 2>&1 || true
	if [ -n "${KEEP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

{
	echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "go: $(go version | cut -d' ' -f3)  postgres: $("$PGBIN/postgres" --version | awk '{print $NF}')  rows: $ROWS  runs: $RUNS  keys: $KEYS  serve --snapshot-rows-per-sec $RATE"
} >&2

go build -o "$TMP/lattice" ./cmd/lattice
LATTICE=$TMP/lattice
variants=""
for k in $KEYS; do
	variants+=" $k"
	[ -n "$BASE" ] && variants+=" $k@base"
done
if [ -n "$BASE" ]; then
	mkdir "$TMP/base"
	git archive "$BASE" | tar -x -C "$TMP/base"
	(cd "$TMP/base" && go build -o "$TMP/lattice-base" ./cmd/lattice)
fi

# Throwaway Postgres. fsync is off: Postgres is the source here, and the
# replica's durability (the client's SQLite) is what is measured.
freeport() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
PGPORT=$(freeport)
"${asuser[@]}" "$PGBIN/initdb" -D "$TMP/pg" -U postgres --auth=trust --no-sync --encoding=UTF8 --locale=C >/dev/null
cat >>"$TMP/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$TMP'
wal_level = logical
max_replication_slots = 16
max_wal_senders = 16
fsync = off
full_page_writes = off
synchronous_commit = off
wal_writer_delay = 10ms
shared_buffers = 256MB
log_min_messages = warning
EOF
"${asuser[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w start >/dev/null
PG_STARTED=1
DBURL="postgres://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable"
psqlq() { psql -X -q -v ON_ERROR_STOP=1 "$DBURL" "$@"; }

# One table per key type, ~200 B rows (as server/bench_test.go's
# sync_items): LinearLite-like issues.
keyexpr() {
	case $1 in
	uuid) echo "uuid|gen_random_uuid()" ;;
	bigint) echo "bigint|i" ;;
	text) echo "text|'iss_' || substr(md5(i::text), 1, 20)" ;;
	*) echo "initial-sync.sh: unknown key type $1" >&2; exit 2 ;;
	esac
}
loadstart=$(date +%s)
tables=()
for k in $KEYS; do
	IFS='|' read -r typ expr <<<"$(keyexpr "$k")"
	t=items_$k
	tables+=("$t")
	psqlq <<EOF
CREATE TABLE $t (
  id $typ PRIMARY KEY,
  project_id integer NOT NULL,
  title text NOT NULL,
  body text NOT NULL,
  done boolean NOT NULL,
  created timestamptz NOT NULL
);
INSERT INTO $t
SELECT $expr, i % 100,
       rpad('task ' || i || ': ', 60, 'the quick brown fox jumps over the lazy dog '),
       rpad('notes for ' || i || ' ', 100, md5(i::text) || md5((i + 1)::text)),
       i % 3 = 0,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1.25 second'
FROM generate_series(1, $ROWS) i;
EOF
done
"$LATTICE" electrify --database-url "$DBURL" "${tables[@]}" >/dev/null
for t in "${tables[@]}"; do psqlq -c "VACUUM (FREEZE, ANALYZE) $t"; done
echo "loaded $ROWS rows into ${tables[*]} in $(($(date +%s) - loadstart)) s" >&2

# startserve BIN NAME PORT: starts lattice serve, sets LAST_PID.
startserve() {
	local env=()
	[ -n "$PROFILE" ] && mkdir -p "$PROFILE" && env=(env "LATTICE_CPUPROFILE=$PROFILE/$2.prof")
	"${env[@]}" "$1" serve --database-url "$DBURL" --listen "127.0.0.1:$3" --insecure \
		--data-dir "$TMP/data-$2" --snapshot-rows-per-sec "$RATE" --log-level error 2>"$TMP/$2.log" &
	LAST_PID=$!
	for _ in $(seq 200); do
		curl -fsS "http://127.0.0.1:$3/healthz" >/dev/null 2>&1 && return
		kill -0 "$LAST_PID" 2>/dev/null || { cat "$TMP/$2.log" >&2; exit 1; }
		sleep 0.05
	done
}
SPORT=$(freeport)
startserve "$LATTICE" serve "$SPORT"
SERVE_PID=$LAST_PID
BASE_PID=""
if [ -n "$BASE" ]; then
	BPORT=$(freeport)
	startserve "$TMP/lattice-base" serve-base "$BPORT"
	BASE_PID=$LAST_PID
fi

# ms since the epoch of a slog time=... field.
logms() { date -d "$1" +%s%3N; }

# CPU seconds (user+system) a process used so far.
cpusec() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

# one VARIANT ROUND: prints "VARIANT ROUND ms rows/s replicate-cpu serve-cpu"
# and the 100k steps.
replicate() {
	local v=$1 round=$2 k=${1%@base} bin=$LATTICE port=$SPORT spid=$SERVE_PID
	[ "$v" != "$k" ] && bin=$TMP/lattice-base port=$BPORT spid=$BASE_PID
	local t=items_$k db=$TMP/replica-$v-$round.db log=$TMP/replicate-$v-$round.log
	local env=()
	[ -n "$PROFILE" ] && env=(env "LATTICE_CPUPROFILE=$PROFILE/replicate-$v-$round.prof")
	sync
	local scpu0 start
	scpu0=$(cpusec "$spid")
	start=$(date +%s%3N)
	"${env[@]}" "$bin" replicate --url "ws://127.0.0.1:$port" --db "$db" --shape "$t" 2>"$log" &
	local pid=$!
	local line="" rcpu=0
	for _ in $(seq 12000); do
		rcpu=$(cpusec "$pid" 2>/dev/null || echo "$rcpu")
		line=$(grep -m1 'lattice: shape synced' "$log" || true)
		[ -n "$line" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	local scpu1
	scpu1=$(cpusec "$spid")
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	if [ -z "$line" ]; then echo "replicate $t: no 'shape synced' line:" >&2; cat "$log" >&2; exit 1; fi
	local end
	end=$(logms "$(sed -E 's/^time=([^ ]+).*/\1/' <<<"$line")")
	local n
	n=$(sqlite3 "$db" "SELECT count(*) FROM $t")
	[ "$n" = "$ROWS" ] || { echo "replica of $t holds $n rows, want $ROWS" >&2; exit 1; }
	local ms=$((end - start))
	echo "$v $round $ms $((ROWS * 1000 / (ms > 0 ? ms : 1))) $rcpu $(awk -v a="$scpu0" -v b="$scpu1" 'BEGIN { printf "%.2f", b - a }')"
	# steps: progress lines, ms between consecutive 100k marks (the first from start)
	local prev=$start steps=""
	while read -r tm; do
		local now
		now=$(logms "$tm")
		steps+=" $((now - prev))"
		prev=$now
	done < <(grep 'lattice: snapshot progress' "$log" | sed -E 's/^time=([^ ]+).*/\1/')
	[ -n "$steps" ] && echo "steps $v $round (ms per 100k, the first from process start):$steps" >&2
	rm -f "$db" "$db-wal" "$db-shm"
}

results=$TMP/results
for round in $(seq "$RUNS"); do
	for v in $variants; do
		r=$(replicate "$v" "$round")
		echo "$r" >>"$results"
		read -r _ _ ms rps rcpu scpu <<<"$r"
		printf 'round %d  %-11s  %6d ms  %8d rows/s  cpu: replicate %5.2f s, serve %5.2f s\n' "$round" "$v" "$ms" "$rps" "$rcpu" "$scpu" >&2
	done
done

if [ -n "$PROFILE" ]; then
	kill -TERM "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=""
	if [ -n "$BASE_PID" ]; then kill -TERM "$BASE_PID"; wait "$BASE_PID" 2>/dev/null || true; BASE_PID=""; cp "$TMP/lattice-base" "$PROFILE/lattice-base"; fi
	cp "$LATTICE" "$PROFILE/lattice"
	echo "profiles in $PROFILE: go tool pprof -top $PROFILE/lattice $PROFILE/serve.prof" >&2
fi

echo
echo "summary: $ROWS rows, lattice replicate from process start to 'shape synced' (median [min..max] of $RUNS; CPU seconds to synced, median)"
med() { sort -n | awk '{ v[NR] = $1 } END { printf "%s %s %s", (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2, v[1], v[NR] }'; }
for v in $variants; do
	read -r m lo hi <<<"$(awk -v v="$v" '$1 == v { print $4 }' "$results" | med)"
	read -r rc _ _ <<<"$(awk -v v="$v" '$1 == v { print $5 }' "$results" | med)"
	read -r sc _ _ <<<"$(awk -v v="$v" '$1 == v { print $6 }' "$results" | med)"
	printf "  %-11s %8.0f rows/s  [%.0f..%.0f]  cpu: replicate %.2f s, serve %.2f s\n" "$v" "$m" "$lo" "$hi" "$rc" "$sc"
done
