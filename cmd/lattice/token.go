package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/latticesync/lattice/server"
)

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("auth-secret", envOr("LATTICE_AUTH_SECRET", ""), "HS256 secret (env LATTICE_AUTH_SECRET)")
	sub := fs.String("sub", "", "user id (claim sub)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime (0 = no exp claim)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" || *sub == "" {
		return errors.New("token: --auth-secret (or LATTICE_AUTH_SECRET) and --sub are required")
	}
	tok, err := server.SignToken([]byte(*secret), *sub, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
