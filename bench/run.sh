#!/usr/bin/env bash
# bench/run.sh: the read-path benchmarks as reported in BENCHMARKS.md
# ("Read path (issue 2)"). Each runs COUNT times (default 3); the summary
# gives, per figure, the median and the range of the runs.
#
#   bench/run.sh                 all three
#   bench/run.sh sync|live|mem   one of them
#   bench/run.sh shapes          the relational-shape benchmarks (not in "all")
#   COUNT=5 bench/run.sh live
#
# Needs what ./build.sh test needs (Go, gcc, Postgres server binaries); the
# benchmarks start their own throwaway Postgres. Raw output is kept in
# $OUT (default /tmp/lattice-bench-read-path.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-3}
OUT=${OUT:-/tmp/lattice-bench-read-path.txt}
what=${1:-all}

pgbin() {
	if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
	if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then pg_config --bindir; return; fi
	ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

{
	echo "date: $(date -u +%F)"
	echo "nproc: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "ram: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
	echo "go: $(go version)"
	echo "postgres: $("$(pgbin)/postgres" --version 2>/dev/null || echo unknown)"
} | tee "$OUT"

run() {
	echo "==> go test ./server -run '^\$' $*" | tee -a "$OUT" >&2
	go test ./server -run '^$' -count "$COUNT" -timeout 60m "$@" 2>&1 | tee -a "$OUT"
}

case "$what" in
all | sync) run -bench '^BenchmarkInitialSync100k$' -benchtime 3x ;;&
all | live) run -bench '^BenchmarkCommitToLiveQuery$' -benchtime 500x ;;&
all | mem) run -bench '^BenchmarkIdleConnMemory$' -benchtime 1x ;;&
shapes) run -bench '^BenchmarkShapeIngest$' -benchtime 1x ; run -bench '^BenchmarkShapeMoveIn$' -benchtime 5x ;;&
all | sync | live | mem | shapes) ;;
*) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

# Summary: median [min..max] of every metric of every benchmark.
echo
echo "summary (median [min..max] over runs):"
awk '
/^Benchmark/ && NF >= 4 {
	name = $1; sub(/-[0-9]+$/, "", name)
	if (!(name in seen)) { seen[name] = 1; order[++nn] = name }
	for (i = 3; i + 1 <= NF; i += 2) {
		k = name SUBSEP $(i+1)
		if (!(k in cnt)) { units[name] = units[name] " " $(i+1) }
		v[k, ++cnt[k]] = $i
	}
}
END {
	for (a = 1; a <= nn; a++) {
		name = order[a]
		printf "%s\n", name
		m = split(substr(units[name], 2), us, " ")
		for (u = 1; u <= m; u++) {
			k = name SUBSEP us[u]; n = cnt[k]
			for (i = 1; i <= n; i++) s[i] = v[k, i] + 0
			for (i = 2; i <= n; i++) { x = s[i]; j = i - 1; while (j >= 1 && s[j] > x) { s[j+1] = s[j]; j-- } s[j+1] = x }
			med = (n % 2) ? s[(n+1)/2] : (s[n/2] + s[n/2+1]) / 2
			printf "    %-22s %12.4g  [%.4g..%.4g]  n=%d\n", us[u], med, s[1], s[n], n
		}
	}
}' "$OUT" | tee -a "$OUT"
echo "raw output: $OUT" >&2
