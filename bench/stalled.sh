#!/bin/sh
# Stalled clients and silent connections (issue 15): the service's RSS
# with 1,000 raw TCP connections and 1,000 WebSocket upgrades that never
# speak plus 1,000 subscribed clients that never read, and with one real
# client stalled while 50,000 rows are written. Both are tests (they
# assert the bounds) run with -v for their figures; see BENCHMARKS.md,
# "Stalled clients and silent connections (issue 15)".
#
#   bench/stalled.sh                          # both, about 3 minutes
#   LATTICE_STALL_SECONDS=180 bench/stalled.sh  # stall the real client for 3 minutes
set -eu
cd "$(dirname "$0")/.."
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tcp_wmem: $(cat /proc/sys/net/ipv4/tcp_wmem)  tcp_rmem: $(cat /proc/sys/net/ipv4/tcp_rmem)"
go test ./server -run '^(TestSilentAndStalledConnsRSS|TestStalledClientReturns)$' -count=1 -v -timeout 20m 2>&1 |
	grep -E '^(=== RUN|--- |PASS|FAIL|ok|    stall_test)'
