package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latticesync/lattice/protocol"
)

// fakeJWT is an unsigned JWT-shaped token with the given claims (the
// client reads exp and iat only to time refreshes; the fake service
// checks nothing).
func fakeJWT(sub string, iat, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload := fmt.Sprintf(`{"sub":%q,"iat":%d,"exp":%d}`, sub, iat.Unix(), exp.Unix())
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload)) + "." + enc([]byte("sig"))
}

func expiredErr() *protocol.Error {
	return &protocol.Error{Code: protocol.ErrUnauthorized, Message: "token expired", Fatal: true}
}

// waitStatus waits until the client's status satisfies ok.
func waitStatus(t *testing.T, c *Client, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		st := c.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func refusedExpired(st Status) bool {
	var pe *protocol.Error
	return st.State == StateOffline && errors.As(st.LastError, &pe) &&
		pe.Code == protocol.ErrUnauthorized && pe.Message == "token expired"
}

// TestTokenFuncAfterUnauthorized: when the service cuts a connection
// because its token expired, the client asks TokenFunc for a new token and
// reconnects with it at once (no backoff); Status.LastError carries the
// service's error; a write made in between is sent once, on the new
// connection.
func TestTokenFuncAfterUnauthorized(t *testing.T) {
	fs := newFakeServer(t)
	var n atomic.Int32
	gate := make(chan struct{}) // holds the second TokenFunc call
	c, err := Open(context.Background(), ":memory:", &Options{URL: fs.url(), TokenFunc: func(ctx context.Context) (string, error) {
		k := n.Add(1)
		if k == 2 {
			select {
			case <-gate:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return fmt.Sprint("t", k), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run(t, c)
	fc := fs.accept()
	if fc.hello.Token != "t1" {
		t.Fatal(fc.hello.Token)
	}
	fc.welcome("log1")
	syncItems(t, c, fc, 10)
	fc.send(expiredErr())
	<-fc.done
	// Offline, told why, while the new token is being fetched.
	waitStatus(t, c, refusedExpired)
	if err := c.Exec(ctxT(t), "INSERT INTO items VALUES (1, 'offline', 1)"); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	close(gate)
	fc = fs.accept()
	if d := time.Since(released); d > time.Second {
		t.Errorf("reconnected %v after the new token", d)
	}
	if fc.hello.Token != "t2" {
		t.Fatalf("token %q on the new connection", fc.hello.Token)
	}
	fc.welcome("log1")
	s := fc.expectSubscribe()
	if !s.Resume {
		t.Fatalf("subscribe %+v", s)
	}
	// Writes follow the answer (which describes the tables as they are now).
	fc.send(&protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	if w := fc.expectWrite(); w.TxnID != 1 || len(w.Changes) != 1 {
		t.Fatalf("write %+v", w)
	}
	fc.send(&protocol.Ack{TxnID: 1})
	waitFor(t, func() bool { return c.PendingCount() == 0 })
	select {
	case w := <-fc.writes:
		t.Fatalf("sent again: %+v", w)
	case <-time.After(50 * time.Millisecond):
	}
	st := waitStatus(t, c, func(s Status) bool { return s.State == StateOnline })
	var pe *protocol.Error
	if !errors.As(st.LastError, &pe) || pe.Message != "token expired" {
		t.Fatalf("last error %v", st.LastError)
	}
	if got := n.Load(); got != 2 {
		t.Fatalf("TokenFunc called %d times", got)
	}
}

// TestRefusedTokenNotResent: a token the service refused is not sent
// again; the client stays offline, with the service's reason, until
// SetToken gives another one, then reconnects at once; writes made
// meanwhile are sent after the reconnect.
func TestRefusedTokenNotResent(t *testing.T) {
	fs := newFakeServer(t)
	var mu sync.Mutex
	tok := "old"
	c, err := Open(context.Background(), ":memory:", &Options{URL: fs.url(), TokenFunc: func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return tok, nil // what a bridge without getToken does: the last token given
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 10)
	fc.send(expiredErr())
	waitStatus(t, c, refusedExpired)
	for i := 1; i <= 3; i++ {
		if err := c.Exec(ctxT(t), fmt.Sprintf("INSERT INTO items VALUES (%d, 'w', %d)", i, i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case fc := <-fs.conns:
		t.Fatalf("reconnected with token %q", fc.hello.Token)
	case <-time.After(700 * time.Millisecond):
	}
	if st := c.Status(); !refusedExpired(st) {
		t.Fatalf("status while waiting %+v", st)
	}
	mu.Lock()
	tok = "new"
	mu.Unlock()
	set := time.Now()
	c.SetToken("new")
	fc = fs.accept()
	if d := time.Since(set); d > time.Second {
		t.Errorf("reconnected %v after SetToken", d)
	}
	if fc.hello.Token != "new" {
		t.Fatalf("token %q", fc.hello.Token)
	}
	fc.welcome("log1")
	sub := fc.expectSubscribe()
	fc.send(&protocol.Subscribed{ReqID: sub.ReqID, ShapeIDs: shapeIDs(sub)})
	for i := 1; i <= 3; i++ {
		w := fc.expectWrite()
		if w.TxnID != uint64(i) {
			t.Fatalf("write %+v", w)
		}
		fc.send(&protocol.Ack{TxnID: w.TxnID})
	}
	waitFor(t, func() bool { return c.PendingCount() == 0 })
	waitStatus(t, c, func(s Status) bool { return s.State == StateOnline })
}

// TestSetTokenWithoutTokenFunc: without a TokenFunc, unauthorized ends
// Run, unless SetToken gave a new token meanwhile.
func TestSetTokenWithoutTokenFunc(t *testing.T) {
	fs := newFakeServer(t)
	c, err := Open(context.Background(), ":memory:", &Options{URL: fs.url(), Token: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	fc := fs.accept()
	fc.welcome("log1")
	c.SetToken("b") // the open connection keeps its token
	fc.expectNothing()
	fc.send(expiredErr())
	fc = fs.accept()
	if fc.hello.Token != "b" {
		t.Fatalf("token %q", fc.hello.Token)
	}
	fc.send(expiredErr())
	select {
	case err := <-done:
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != protocol.ErrUnauthorized {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}
}

// TestRefreshBeforeExpiry: a token with an exp is replaced before it
// expires: the client asks TokenFunc for the next one and switches
// connections, with no error recorded and no state change reported.
func TestRefreshBeforeExpiry(t *testing.T) {
	fs := newFakeServer(t)
	var n atomic.Int32
	var mu sync.Mutex
	var states []string
	c, err := Open(context.Background(), ":memory:", &Options{
		URL: fs.url(),
		TokenFunc: func(context.Context) (string, error) {
			now := time.Now()
			return fakeJWT(fmt.Sprint("u", n.Add(1)), now, now.Add(2*time.Second)), nil
		},
		OnStatus: func(s Status) {
			mu.Lock()
			states = append(states, s.State)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run(t, c)
	fc := fs.accept()
	first := fc.hello.Token
	start := time.Now()
	fc.welcome("log1")
	syncItems(t, c, fc, 10)
	waitStatus(t, c, func(s Status) bool { return s.State == StateOnline })
	mu.Lock()
	states = nil
	mu.Unlock()
	fc2 := fs.accept()
	if d := time.Since(start); d >= 2*time.Second {
		t.Errorf("switched %v after connecting with a 2 s token", d)
	}
	if fc2.hello.Token == first {
		t.Fatal("same token")
	}
	select {
	case <-fc.done: // the old connection is closed by the client
	case <-time.After(testTimeout):
		t.Fatal("old connection still open")
	}
	fc2.welcome("log1")
	if s := fc2.expectSubscribe(); !s.Resume {
		t.Fatalf("subscribe %+v", s)
	}
	if st := c.Status(); st.State != StateOnline || st.LastError != nil {
		t.Fatalf("status %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range states {
		if s != StateOnline {
			t.Fatalf("states during the switch: %v", states)
		}
	}
}

func TestRefreshAt(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		iat, exp time.Duration // from now
		want     time.Duration
	}{
		{0, time.Hour, time.Hour - 30*time.Second},
		{0, 3 * time.Second, 2700 * time.Millisecond},
		{-50 * time.Minute, 10 * time.Minute, 10*time.Minute - 30*time.Second},
	} {
		at, ok := refreshAt(fakeJWT("u", now.Add(c.iat), now.Add(c.exp)), now)
		if !ok || !at.Equal(now.Add(c.want)) {
			t.Errorf("iat %v exp %v: refresh at %v (%v), want %v", c.iat, c.exp, at.Sub(now), ok, c.want)
		}
	}
	for _, tok := range []string{"", "opaque", "a.b.c", fakeJWT("u", now, now)[:10]} {
		if _, ok := refreshAt(tok, now); ok {
			t.Errorf("%q: refresh time for a token without exp", tok)
		}
	}
}

// A fatal Error received but not handled when the session ends (a write
// failed on the connection the service closed after sending it) is what
// the session reports.
func TestQueuedFatalWins(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	s := newSession(c, context.Background(), nil)
	s.frames <- item{m: &protocol.Welcome{LogID: "l"}}
	s.frames <- item{m: expiredErr()}
	s.frames <- item{err: errors.New("read frame: closed")}
	if e := s.queuedFatal(); e == nil || e.Message != "token expired" {
		t.Fatalf("queued fatal %v", e)
	}
	if e := s.queuedFatal(); e != nil {
		t.Fatalf("again: %v", e)
	}
}
