package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/latticesync/lattice/client"
)

func replicateCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("replicate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("LATTICE_URL", "ws://localhost:5133"), "service URL, or several separated by commas (replicas of one service sharing a --log-url: tried in turn) (env LATTICE_URL)")
	db := fs.String("db", "", "SQLite file to keep in sync (created if missing)")
	token := fs.String("token", envOr("LATTICE_TOKEN", ""), "JWT (env LATTICE_TOKEN)")
	var shapes shapeFlags
	jsonShapes := map[int]bool{}
	fs.Var(shapeFlag{&shapes, "shape", jsonShapes}, "shape", "table to sync, or a JSON shape {\"table\":...,\"where\":...,\"params\":[...],\"include\":{...}} (repeatable; each --where and --param applies to the table-name --shape before it)")
	fs.Var(shapeFlag{&shapes, "where", jsonShapes}, "where", "where clause of the preceding --shape, with $1..$n parameters")
	fs.Var(shapeFlag{&shapes, "param", jsonShapes}, "param", "next parameter ($1, $2, ...) of the preceding --shape's where clause")
	level := fs.String("log-level", envOr("LATTICE_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: lattice replicate --url ws://HOST:5133 --db FILE --shape TABLE|JSON [--where EXPR [--param V]...] [--shape ...] [--token JWT]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("replicate: unexpected arguments %q", fs.Args())
	}
	if *db == "" {
		return errors.New("replicate: --db FILE is required")
	}
	if len(shapes) == 0 {
		return errors.New("replicate: at least one --shape TABLE is required")
	}
	logger, err := newLogger(stderr, *level, "text")
	if err != nil {
		return err
	}
	c, err := client.Open(ctx, *db, &client.Options{
		URL:    *url,
		Token:  *token,
		Logger: logger,
		OnStatus: func(s client.Status) {
			logger.Info("status", "state", s.State, "lsn", s.LSN, "err", s.LastError)
		},
	})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, len(shapes))
	done := make(chan error, 1)
	for _, sh := range shapes {
		t := sh.Table
		sub, err := c.Subscribe(ctx, sh)
		if err != nil {
			return err
		}
		go func() {
			if err := sub.Synced(ctx); err != nil {
				if ctx.Err() == nil {
					failed <- fmt.Errorf("shape %s: %w", t, err)
				}
				return
			}
			logger.Info("shape synced", "table", t, "db", *db)
		}()
	}
	go func() { done <- c.Run(ctx) }()
	select {
	case err = <-failed:
		cancel()
		<-done
		return err
	case err = <-done:
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// shapeFlags collects --shape, --where and --param in command-line order.
type shapeFlags []client.Shape

type shapeFlag struct {
	shapes *shapeFlags
	kind   string
	json   map[int]bool // shapes given as JSON
}

func (f shapeFlag) String() string { return "" }

func (f shapeFlag) Set(v string) error {
	s := f.shapes
	if f.kind == "shape" {
		if v == "" {
			return errors.New("empty table name")
		}
		if strings.HasPrefix(strings.TrimSpace(v), "{") {
			sh, err := client.ParseShape([]byte(v))
			if err != nil {
				return err
			}
			*s = append(*s, sh)
			f.json[len(*s)-1] = true
			return nil
		}
		*s = append(*s, client.Shape{Table: v})
		return nil
	}
	if len(*s) == 0 {
		return fmt.Errorf("--%s must follow a --shape", f.kind)
	}
	if f.json[len(*s)-1] {
		return fmt.Errorf("--%s cannot follow a JSON --shape: put \"where\" and \"params\" in the JSON", f.kind)
	}
	last := &(*s)[len(*s)-1]
	switch f.kind {
	case "where":
		if last.Where != "" {
			return errors.New("--where given twice for one --shape")
		}
		last.Where = v
	case "param":
		last.Params = append(last.Params, v)
	}
	return nil
}
