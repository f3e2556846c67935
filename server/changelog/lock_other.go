//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package changelog

import (
	"fmt"
	"os"
)

// lockDir creates dir/LOCK; on this platform it does not lock.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	return f, nil
}
