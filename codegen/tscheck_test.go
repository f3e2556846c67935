package codegen_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// tscheckDir is the TypeScript fixture project; its node_modules come from
// `./build.sh deps` (npm ci).
const tscheckDir = "testdata/tscheck"

// tsc runs the fixture's pinned TypeScript compiler with args in dir.
func tsc(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join(tscheckDir, "node_modules", "typescript", "bin", "tsc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("TypeScript is not installed in %s: run ./build.sh deps (npm ci there): %v", tscheckDir, err)
	}
	cmd := exec.Command("node", append([]string{bin}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTypeErrors proves the generated types reject wrong code: usage.ts
// compiles as it is (every line marked @ts-expect-error is an error, or tsc
// complains about an unused directive), and with the markers removed tsc
// reports errors on exactly the marked lines.
func TestTypeErrors(t *testing.T) {
	if out, err := tsc(t, tscheckDir, "--noEmit", "-p", "."); err != nil {
		t.Fatalf("tsc --noEmit on the fixture failed: %v\n%s", err, out)
	}
	// And against the real @latticesync/web types (web/src in this repository).
	if out, err := tsc(t, tscheckDir, "-p", "tsconfig.web.json"); err != nil {
		t.Fatalf("tsc -p tsconfig.web.json (the helpers with @latticesync/web's Lattice) failed: %v\n%s", err, out)
	}

	src, err := os.ReadFile(filepath.Join(tscheckDir, "usage.ts"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	want := map[int]bool{}
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "// @ts-expect-error") {
			lines[i] = "// (expected error below)"
			want[i+2] = true // 1-based number of the next line
		}
	}
	if len(want) < 20 {
		t.Fatalf("only %d @ts-expect-error markers in usage.ts", len(want))
	}

	dir := t.TempDir()
	for _, name := range []string{"package.json", "tsconfig.json"} {
		b, err := os.ReadFile(filepath.Join(tscheckDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "usage.ts"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(tscheckDir)
	for _, link := range []string{"lattice", "node_modules"} {
		if err := os.Symlink(filepath.Join(abs, link), filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := tsc(t, dir, "--noEmit", "-p", ".")
	if err == nil {
		t.Fatalf("tsc passed without the @ts-expect-error markers:\n%s", out)
	}
	errLine := regexp.MustCompile(`(?m)^usage\.ts\((\d+),\d+\): error`)
	got := map[int]bool{}
	for _, m := range errLine.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		got[n] = true
	}
	var missing, extra []int
	for n := range want {
		if !got[n] {
			missing = append(missing, n)
		}
	}
	for n := range got {
		if !want[n] {
			extra = append(extra, n)
		}
	}
	sort.Ints(missing)
	sort.Ints(extra)
	if len(missing) > 0 || len(extra) > 0 || bytes.Contains([]byte(out), []byte("lattice/")) {
		t.Fatalf("marked lines without an error: %v; errors on unmarked lines: %v\n%s", missing, extra, out)
	}
}
