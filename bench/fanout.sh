#!/bin/sh
# Fan-out through the binary (issue 17): bench/loadgen runs the clients in
# a process of its own, against `lattice serve` and a throwaway Postgres
# that it starts as child processes. See BENCHMARKS.md, "Fan-out with the
# load generator (issue 17)".
#
#   bench/fanout.sh latency     1,000 clients all receiving every change (one project)
#   bench/fanout.sh spread      10,000 clients, 1,000 projects, 1,000 writes/s
#   bench/fanout.sh soak        the same for 30 minutes, a line every 30 s
#   bench/fanout.sh -- FLAGS    bench/loadgen with your own flags (--help lists them)
#
# Environment: DURATION overrides the measured period; OUT (default
# /tmp/lattice-fanout) holds the binaries, the JSON results and the logs.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lattice-fanout}
mkdir -p "$OUT"
go build -o "$OUT/lattice" ./cmd/lattice
go build -o "$OUT/loadgen" ./bench/loadgen
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
what=${1:-latency}
[ $# -gt 0 ] && shift
lg() { "$OUT/loadgen" --local --lattice "$OUT/lattice" "$@"; }
case "$what" in
latency)
	# Every client holds the one project: each write reaches all 1,000.
	lg --clients 1000 --projects 1 --issues 100 --rate 20 --warmup 5s --duration "${DURATION:-60s}" --json "$OUT/latency.json" "$@" ;;
spread)
	lg --clients 10000 --projects 1000 --issues 20 --rate 1000 --dial-parallel 128 --warmup 10s --duration "${DURATION:-120s}" --sample 15s --json "$OUT/spread.json" "$@" ;;
soak)
	lg --clients 10000 --projects 1000 --issues 20 --rate 1000 --dial-parallel 128 --warmup 60s --duration "${DURATION:-30m}" --sample 30s --json "$OUT/soak.json" "$@" ;;
--)
	lg "$@" ;;
*)
	echo "usage: bench/fanout.sh latency|spread|soak|-- FLAGS" >&2; exit 2 ;;
esac
