// Package tmpfs mounts small tmpfs file systems for tests that need a real
// full disk (ENOSPC).
package tmpfs

import (
	"os"
	"os/exec"
	"testing"
)

// Mount mounts a tmpfs of size (e.g. "512k") on a new temporary directory
// and unmounts it when the test ends. Mounting needs root: elsewhere the
// test is skipped, saying why.
func Mount(tb testing.TB, size string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("a full disk is simulated with a tmpfs mount, which needs root")
	}
	dir := tb.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0777", "tmpfs", dir).CombinedOutput(); err != nil {
		tb.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	tb.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}
