package failpoint

import (
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

func TestParseAndHit(t *testing.T) {
	s, err := Parse("a=error#2, b=cut, c=sleep(30)#2+, d=error")
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for i := 0; i < 4; i++ {
		got = append(got, errors.Is(s.Hit("a"), ErrInjected))
	}
	if want := []bool{false, true, false, false}; !slices.Equal(got, want) {
		t.Fatalf("a=error#2 hits: %v, want %v", got, want)
	}
	if !errors.Is(s.Hit("b"), ErrCut) || !errors.Is(s.Hit("b"), ErrCut) {
		t.Fatal("b=cut must cut at every hit")
	}
	start := time.Now()
	s.Hit("c")
	if d := time.Since(start); d > 20*time.Millisecond {
		t.Fatalf("first hit of c=sleep(30)#2+ slept %v", d)
	}
	s.Hit("c")
	s.Hit("c")
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Fatalf("hits 2 and 3 of c=sleep(30)#2+ slept only %v", d)
	}
	if s.Hit("nope") != nil {
		t.Fatal("an unknown point must do nothing")
	}
	var nilSet *Set
	if nilSet.Hit("a") != nil {
		t.Fatal("a nil set must do nothing")
	}
	for _, bad := range []string{"a", "=exit", "a=explode", "a=exit#0", "a=exit#x", "a=sleep(x)"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestConnCut(t *testing.T) {
	s, err := Parse("w=cut#2")
	if err != nil {
		t.Fatal(err)
	}
	// The process's set, for the Listener (restored after the test).
	oldSet, oldOn := envSet, enabled.Load()
	envSet = s
	enabled.Store(true)
	defer func() { envSet = oldSet; enabled.Store(oldOn) }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wl := Listener(ln, "w")
	go func() {
		c, err := wl.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("hello"))
		c.Write([]byte("world!"))
		c.Write([]byte("never"))
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if string(b) != "hellowor" {
		t.Fatalf("read %q, want the first write and half the second", b)
	}
}
