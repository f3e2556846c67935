package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/server/auth"
)

func TestTokenClaimRoundTrip(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	var out, errb bytes.Buffer
	err := tokenCmd([]string{"--auth-secret", secret, "--sub", "alice", "--ttl", "1h",
		"--claim", "role=admin", "--claim", "org_id=7", "--claim", `teams=["a","b"]`,
		"--claim", "big=12345678901234567890", "--claim", `quoted="7"`, "--claim", "admin=true",
		"--claim", "none=null", "--claim", `meta={"x":1}`, "--claim", "note=hello world", "--claim", "empty=",
		"--claim", "iss=https://idp.example"}, &out, &errb)
	if err != nil {
		t.Fatalf("token: %v (%s)", err, errb.String())
	}
	v, err := auth.New(context.Background(), auth.Config{Secret: []byte(secret), Issuer: "https://idp.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	id, err := v.Verify(strings.TrimSpace(out.String()), time.Now())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.UserID != "alice" || time.Until(id.Expires) < 59*time.Minute || time.Until(id.Expires) > time.Hour {
		t.Fatalf("identity %+v", id)
	}
	var c map[string]json.RawMessage
	if err := json.Unmarshal(id.Claims, &c); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"sub": `"alice"`, "role": `"admin"`, "org_id": `7`, "teams": `["a","b"]`, "big": `12345678901234567890`,
		"quoted": `"7"`, "admin": `true`, "none": `null`, "meta": `{"x":1}`, "note": `"hello world"`, "empty": `""`,
		"iss": `"https://idp.example"`,
	} {
		if got := string(c[k]); got != want {
			t.Errorf("claim %s = %s, want %s (claims %s)", k, got, want, id.Claims)
		}
	}
	if _, ok := c["iat"]; !ok {
		t.Errorf("no iat in %s", id.Claims)
	}
}

func TestTokenClaimRefused(t *testing.T) {
	for _, c := range []struct{ arg, want string }{
		{"sub=bob", "use --sub"},
		{"exp=1", "use --ttl"},
		{"noequals", "is not k=v"},
		{"=v", "is not k=v"},
	} {
		var out, errb bytes.Buffer
		err := tokenCmd([]string{"--auth-secret", "s", "--sub", "alice", "--claim", c.arg}, &out, &errb)
		if err == nil || !strings.Contains(err.Error()+errb.String(), c.want) {
			t.Errorf("--claim %s: err %v, stderr %q; want %q", c.arg, err, errb.String(), c.want)
		}
		if out.Len() > 0 {
			t.Errorf("--claim %s printed a token", c.arg)
		}
	}
}
