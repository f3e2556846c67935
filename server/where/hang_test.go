package where

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"context"
)

func TestHang(t *testing.T) {
	dir := os.Getenv("CORPUS")
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(string(b), "\n")
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			continue
		}
		done := make(chan bool)
		go func() {
			e, err := Parse(s, unitCols, 2)
			if err == nil {
				if p, err := e.Bind(context.Background(), []*string{sp("1"), nil}, fakeCoerce); err == nil {
					p.Eval(row("i4", 1, "tx", "a"))
				}
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("hang on %q", s)
		}
	}
}
