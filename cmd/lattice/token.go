package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/latticesync/lattice/server/auth"
)

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("auth-secret", envOr("LATTICE_AUTH_SECRET", ""), "HS256 secret (env LATTICE_AUTH_SECRET)")
	sub := fs.String("sub", "", "user id (claim sub)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime (0 = no exp claim)")
	claims := map[string]any{}
	fs.Func("claim", "extra claim `k=v`, repeatable; v is taken as JSON when it is valid JSON (7, true, null, [\"a\"], {...}, \"7\"), else as a string; not sub (--sub) or exp (--ttl)", func(s string) error {
		k, v, err := parseClaim(s)
		if err != nil {
			return err
		}
		claims[k] = v
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token takes no arguments, got %q", fs.Args())
	}
	if *secret == "" || *sub == "" {
		return errors.New("token: --auth-secret (or LATTICE_AUTH_SECRET) and --sub are required")
	}
	tok, err := auth.SignHMAC([]byte(*secret), *sub, *ttl, claims)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// parseClaim reads a --claim k=v: v as JSON when it is valid JSON (kept as
// written), otherwise as a plain string.
func parseClaim(s string) (string, any, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", nil, fmt.Errorf("%q is not k=v", s)
	}
	switch k {
	case "sub":
		return "", nil, errors.New("claim sub cannot be set with --claim: use --sub")
	case "exp":
		return "", nil, errors.New("claim exp cannot be set with --claim: use --ttl")
	}
	if json.Valid([]byte(v)) {
		return k, json.RawMessage(v), nil
	}
	return k, v, nil
}
