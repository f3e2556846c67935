#!/bin/sh
# Commit -> client latency through a JetStream change log against the
# local one (issue 18), side by side in one run: bench/loadgen starts a
# throwaway Postgres and `lattice serve` for each run; the JetStream runs
# add --log-url to a NATS server (bench/natsd, a process of its own) and
# a stream of their own. See BENCHMARKS.md, "JetStream change log".
#
#   bench/jetstream.sh            1 client and 1,000 clients, local then JetStream, ROUNDS times
#
# Environment: ROUNDS (default 2), DURATION (default 30s) per run, OUT
# (default /tmp/lattice-jetstream) for binaries, JSON results and logs.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lattice-jetstream}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-30s}
mkdir -p "$OUT"
go build -o "$OUT/lattice" ./cmd/lattice
go build -o "$OUT/loadgen" ./bench/loadgen
go build -o "$OUT/natsd" ./bench/natsd
rm -rf "$OUT/nats"
"$OUT/natsd" --port -1 --store "$OUT/nats" >"$OUT/natsd.url" &
NATSD=$!
trap 'kill $NATSD 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do [ -s "$OUT/natsd.url" ] && break; sleep 0.1; done
NATS=$(cat "$OUT/natsd.url")
[ -n "$NATS" ] || { echo "bench/jetstream.sh: natsd did not start" >&2; exit 1; }
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')  load: $(cut -d' ' -f1-3 /proc/loadavg)  nats: $NATS"
printf '%-10s %-9s %7s %9s %9s %9s %11s %8s\n' clients log p50_ms p99_ms max_ms changes/s us_cpu/chg equal
n=0
for round in $(seq "$ROUNDS"); do
	for clients in 1 1000; do
		for log in local jetstream; do
			n=$((n + 1))
			extra=""
			[ "$log" = jetstream ] && extra="--log-url $NATS --log-stream LG$n"
			json="$OUT/r$round-$clients-$log.json"
			# 1 client: 20 writes/s of its project; 1,000 clients on one
			# project: each write reaches all of them.
			"$OUT/loadgen" --local --lattice "$OUT/lattice" --clients "$clients" --projects 1 --issues 100 --rate 20 \
				--warmup 5s --duration "$DURATION" --sample 1h --serve-args "$extra" --json "$json" >"$OUT/r$round-$clients-$log.log" 2>&1 ||
				{ echo "run $clients $log failed: $OUT/r$round-$clients-$log.log" >&2; continue; }
			python3 - "$json" "$clients" "$log" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("%-10s %-9s %7.1f %9.1f %9.1f %9.0f %11.1f %8s" % (sys.argv[2], sys.argv[3], r["P50ms"], r["P99ms"], r["MaxMs"], r["ChangesPerSec"], r["CPUMicrosPerChange"], "%d/%d" % (r["ClientsEqual"], r["Clients"])))
PY
		done
	done
done
