#!/usr/bin/env bash
# build.sh: one subcommand per concern. Every subcommand installs what it
# needs on a fresh machine (idempotently) and fails with a clear message when
# it cannot.
#
#   ./build.sh test     run every test (what CI runs)
#   ./build.sh demo     run the demo: the example app on a local Postgres (lattice dev)
#   ./build.sh build    build bin/lattice and the browser worker (web/dist)
#   ./build.sh bench    run the benchmarks (figures go in BENCHMARKS.md)
#   ./build.sh fuzz     run every fuzz target (FUZZTIME, default 30s each)
#   ./build.sh lint     gofmt, go vet (native and GOOS=js), go mod tidy check
#   ./build.sh deps     install prerequisites only
#   ./build.sh web      build and unit-test web/ (the npm package) only
#   ./build.sh web-browser  web/ in Chromium and the npm pack test (after build)
#   ./build.sh example  build the example app and run its end-to-end tests only
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

die() { echo "build.sh: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

need_go() {
	command -v go >/dev/null 2>&1 || die "Go is not installed (need Go >= 1.26): see https://go.dev/dl/"
}

apt_install() {
	# apt_install PKG...: install Debian packages when missing.
	local missing=()
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	command -v apt-get >/dev/null 2>&1 || die "need ${missing[*]} but apt-get is not available; install them by hand"
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	log "installing ${missing[*]}"
	$sudo apt-get update -qq >&2 || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

need_postgres() {
	# Postgres server binaries (initdb, postgres) for the throwaway clusters.
	if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; then return 0; fi
	if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then return 0; fi
	if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then return 0; fi
	apt_install postgresql
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || die "Postgres server binaries not found after install"
}

need_gcc() {
	# pg_query_go (Postgres' own SQL parser) is cgo.
	command -v gcc >/dev/null 2>&1 || apt_install gcc libc6-dev
}

need_sqlite3() {
	# The sqlite3 shell: the fault campaign writes replica files with it, as
	# a user would (it falls back to a plain SQLite connection without it).
	command -v sqlite3 >/dev/null 2>&1 && return 0
	(apt_install sqlite3) || log "sqlite3 shell not installed; the fault campaign uses a plain SQLite connection"
}

deps() {
	need_go
	need_gcc
	need_postgres
	need_sqlite3
	log "downloading Go modules"
	go mod download || die "go mod download failed (is the Go module proxy reachable?)"
	web_deps
	codegen_deps
	browser_deps
}

# --- web/: the npm package @latticesync/web (TypeScript + React hooks) ---

need_node() {
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
		die "Node.js >= 20 with npm is needed for web/: see https://nodejs.org/"
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	[ "$major" -ge 20 ] || die "Node.js >= 20 is needed for web/ (found $(node --version))"
}

need_chromium() {
	# The browser tests drive the Debian chromium with playwright-core.
	[ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ] && return 0
	command -v chromium >/dev/null 2>&1 && return 0
	if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
		die "Chromium is missing: as root run 'apt-get update && apt-get install -y chromium' (or set CHROMIUM to a Chromium binary)"
	fi
	apt_install chromium
	command -v chromium >/dev/null 2>&1 || die "chromium missing after installing the Debian chromium package"
}

web_deps() {
	need_node
	log "npm ci (web/)"
	(cd web && npm ci --no-audit --no-fund) >&2 || die "npm ci in web/ failed (is the npm registry reachable?)"
}

web_build() {
	need_node
	[ -d web/node_modules ] || web_deps
	log "building web/ (tsc)"
	(cd web && npm run --silent build) || die "web/ build failed"
}

web_test() {
	web_build
	log "web/ typecheck"
	(cd web && npm run --silent typecheck) || die "web/ typecheck failed"
	log "web/ unit tests (vitest)"
	(cd web && npx vitest run) || die "web/ unit tests failed"
}

web_browser_test() {
	# The package in headless Chromium against a real service (browsertest/'s
	# harness), and the npm pack test (a fresh Vite + React app from the registry).
	[ -f web/dist/lattice.wasm ] || build_wasm
	web_build
	[ -d browsertest/node_modules ] || browser_deps
	log "web/ browser tests (Chromium) and npm pack test"
	(cd web && node test/browser/run.mjs) || die "web/ browser tests failed"
}

# ---- lattice generate: the TypeScript fixture project of codegen's tests
# (tsc type checks, and a runtime check of the generated helpers on SQLite
# through better-sqlite3). Used by codegen's Go tests.
CODEGEN_TS=codegen/testdata/tscheck

codegen_deps() {
	need_node
	local stamp="$CODEGEN_TS/node_modules/.lattice-lock" want
	want=$(cat "$CODEGEN_TS/package-lock.json" "$CODEGEN_TS/package.json" | sha256sum | cut -d' ' -f1)
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
	# better-sqlite3 is compiled when no prebuilt binary can be downloaded:
	# it needs a C++ toolchain, and node-gyp finds Node's headers next to
	# node when they are installed there (Debian's nodejs) instead of
	# downloading them.
	command -v g++ >/dev/null 2>&1 || apt_install g++
	command -v make >/dev/null 2>&1 || apt_install make
	command -v python3 >/dev/null 2>&1 || apt_install python3
	local prefix
	prefix=$(dirname "$(dirname "$(command -v node)")")
	if [ -z "${npm_config_nodedir:-}" ] && [ -f "$prefix/include/node/node.h" ]; then
		export npm_config_nodedir="$prefix"
	fi
	log "npm ci in $CODEGEN_TS"
	(cd "$CODEGEN_TS" && npm ci --no-audit --no-fund >&2) || die "npm ci in $CODEGEN_TS failed"
	echo "$want" >"$stamp"
}

codegen_test() {
	log "tsc --noEmit on the generated client fixture ($CODEGEN_TS)"
	node "$CODEGEN_TS/node_modules/typescript/bin/tsc" --noEmit -p "$CODEGEN_TS" || die "the generated TypeScript does not type-check"
	node "$CODEGEN_TS/node_modules/typescript/bin/tsc" -p "$CODEGEN_TS/tsconfig.web.json" ||
		die "the generated helpers do not accept @latticesync/web's database type"
}

# --- browsertest/: real headless Chromium (Debian's) driven by playwright-core;
# the IndexedDB VFS tests (idbvfs) live there.

browser_deps() {
	need_node
	need_chromium
	log "npm ci (browsertest/)"
	(cd browsertest && npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm ci in browsertest/ failed (is the npm registry reachable?)"
}

browser_test() {
	[ -d browsertest/node_modules ] || browser_deps
	log "browser tests (browsertest/, headless Chromium)"
	(cd browsertest && node --test --test-concurrency=1 test/) || die "browser tests failed"
}

# --- examples/react: the example app; its end-to-end tests run lattice dev
# and drive Chromium through browsertest/'s harness.

example_build() {
	need_node
	web_build
	log "building examples/react (npm ci, npm run build)"
	(cd examples/react && npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm ci in examples/react failed"
	(cd examples/react && npm run --silent build) >&2 || die "examples/react build failed"
}

example_test() {
	[ -d browsertest/node_modules ] || browser_deps
	example_build
	log "example app end-to-end tests (examples/react/e2e, headless Chromium)"
	(cd examples/react && LATTICE_BIN="$ROOT/bin/lattice" node --test --test-concurrency=1 e2e/) || die "example app end-to-end tests failed"
}

build() {
	need_go
	need_gcc
	mkdir -p bin
	log "building bin/lattice"
	go build -o bin/lattice ./cmd/lattice
	build_wasm
}

# Packages that must build for the browser (GOOS=js GOARCH=wasm).
WASM_PKGS="./coltype ./protocol ./merge ./client ./jsbridge ./wasm ./idbvfs ./idbvfs/internal/testworker"

# build_wasm: the browser worker, into web/dist: lattice.wasm (stripped),
# wasm_exec.js (from this Go) and worker.js (web/src/worker, TypeScript);
# prints the wasm's raw, gzip and brotli sizes.
build_wasm() {
	need_go
	mkdir -p web/dist
	log "building web/dist/lattice.wasm (GOOS=js GOARCH=wasm)"
	# -B (no bounds checks) on SQLite's Go translation only: C SQLite runs
	# without them too; this makes the engine up to 2-3x faster and the
	# download 0.6 MiB (brotli) smaller (BENCHMARKS.md, speedtest16).
	GOOS=js GOARCH=wasm go build -trimpath -ldflags="-s -w" \
		-gcflags=github.com/ncruces/go-sqlite3-wasm/v6=-B -o web/dist/lattice.wasm ./wasm
	local goroot wasmexec
	goroot=$(go env GOROOT)
	wasmexec="$goroot/lib/wasm/wasm_exec.js"
	[ -f "$wasmexec" ] || wasmexec="$goroot/misc/wasm/wasm_exec.js"
	[ -f "$wasmexec" ] || die "wasm_exec.js not found in $goroot"
	cp "$wasmexec" web/dist/wasm_exec.js
	[ -x web/node_modules/.bin/tsc ] || (cd web && npm ci --no-audit --no-fund >&2) || die "npm ci in web/ failed"
	web/node_modules/.bin/tsc -p web/src/worker/tsconfig.json || die "compiling web/src/worker failed"
	node -e '
		const fs = require("fs"), zlib = require("zlib");
		const b = fs.readFileSync("web/dist/lattice.wasm");
		const gz = zlib.gzipSync(b, { level: 9 }).length;
		const br = zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length } }).length;
		const mb = n => (n / 1048576).toFixed(2) + " MiB";
		console.error(`lattice.wasm: ${mb(b.length)} raw, ${mb(gz)} gzip -9, ${mb(br)} brotli -11`);
	'
}

lint() {
	need_go
	log "gofmt"
	local bad
	bad=$(find . -name '*.go' -not -path '*/node_modules/*' -not -path './.git/*' -print0 | xargs -0 gofmt -l)
	[ -z "$bad" ] || die "gofmt needed on: $bad"
	log "go vet"
	go vet ./...
	log "go vet (GOOS=js GOARCH=wasm)"
	GOOS=js GOARCH=wasm go vet $WASM_PKGS
	log "go mod tidy check"
	go mod tidy -diff >/dev/null || die "go.mod/go.sum are not tidy: run go mod tidy"
}

test_() {
	deps
	lint
	web_test
	codegen_test
	log "go test"
	# -p 2: each test package starts its own throwaway Postgres.
	go test -count=1 -p 2 -timeout 30m ./...
	log "go test -race (core packages)"
	go test -count=1 -race -timeout 20m ./protocol ./coltype ./merge ./server/changelog ./client ./jsbridge
	# A count, not a duration: a duration budget trips a race in Go's fuzz
	# coordinator (go.dev/issue/75804, fixed in Go 1.27) that fails a
	# target with "context deadline exceeded" and no failing input.
	FUZZTIME=${CI_FUZZTIME:-5000x} fuzz
	build_wasm
	browser_test
	web_browser_test
	go build -o bin/lattice ./cmd/lattice
	example_test
	log "all tests passed"
}

bench() {
	deps
	local pattern=${BENCH:-.}
	go test -run '^$' -bench "$pattern" -benchmem -timeout 60m ./... | tee bench.out
	log "results in bench.out; record them in BENCHMARKS.md"
}

# Every fuzz target: package and name. Keep in step with the Fuzz* functions
# (grep -rn '^func Fuzz' --include='*_test.go' .).
FUZZ_TARGETS="
./protocol FuzzDecodeUp
./protocol FuzzDecodeDown
./protocol FuzzDecodeValue
./merge FuzzDecodeMeta
./merge FuzzDecodeDoc
./server/where FuzzParse
./server/changelog FuzzDecodeRecord
./server/changelog FuzzRecoverSegment
./coltype FuzzFromPGText
./coltype FuzzToPGText
./server/pgrepl FuzzDecode
./server/writes FuzzShadowArrays
"

# fuzz_inputs lists the saved inputs of one target (a new one is a crash).
fuzz_inputs() {
	{ ls "$1/testdata/fuzz/$2" 2>/dev/null || true; } | sort | tr '\n' ' '
}

fuzz() {
	# FUZZTIME is a duration (30s) or an execution count (10000000x: the
	# long run of BENCHMARKS.md, "Fuzzing (issue 15)"); FUZZPARALLEL, if
	# set, is the number of fuzzing workers (default: one per CPU).
	need_go
	local t=${FUZZTIME:-30s} pkg name tries before
	while read -r pkg name; do
		[ -n "$pkg" ] || continue
		for tries in 1 2; do
			log "fuzz $pkg $name ($t)"
			before=$(fuzz_inputs "$pkg" "$name")
			go test "$pkg" -run '^$' -fuzz "^$name\$" -fuzztime "$t" ${FUZZPARALLEL:+-parallel "$FUZZPARALLEL"} && break
			# A failure that wrote no failing input is Go's coordinator
			# race above (duration budgets only): once more, then give up.
			if [ "$(fuzz_inputs "$pkg" "$name")" != "$before" ] || [ "$tries" = 2 ]; then
				die "fuzz target $pkg $name failed (the failing input is in $pkg/testdata/fuzz/$name)"
			fi
			log "fuzz $pkg $name: failed without a failing input (go.dev/issue/75804), again"
		done
	done <<<"$FUZZ_TARGETS"
}

demo() {
	deps
	build
	web_build
	exec ./bin/lattice dev "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
test) test_ ;;
demo) demo "$@" ;;
build) build ;;
bench) bench ;;
fuzz) fuzz ;;
lint) lint ;;
deps) deps ;;
web) web_test ;;
web-browser) web_browser_test ;;
example)
	build
	example_test
	;;
*)
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
	[ -z "$cmd" ] && exit 0 || die "unknown subcommand: $cmd"
	;;
esac
