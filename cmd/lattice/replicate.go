package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/latticesync/lattice/client"
)

func replicateCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("replicate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("LATTICE_URL", "ws://localhost:5133"), "service URL (env LATTICE_URL)")
	db := fs.String("db", "", "SQLite file to keep in sync (created if missing)")
	token := fs.String("token", envOr("LATTICE_TOKEN", ""), "JWT (env LATTICE_TOKEN)")
	var tables, wheres, params multiFlag
	fs.Var(&tables, "shape", "table to sync (repeatable)")
	fs.Var(&wheres, "where", "where clause for the preceding --shape")
	fs.Var(&params, "param", "parameter $n of the where clause, in order (repeatable)")
	level := fs.String("log-level", envOr("LATTICE_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: lattice replicate --url ws://HOST:5133 --db FILE --shape TABLE [--where EXPR [--param V]...] [--token JWT]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *db == "" {
		return errors.New("replicate: --db FILE is required")
	}
	if len(tables) == 0 {
		return errors.New("replicate: at least one --shape TABLE is required")
	}
	if len(wheres) > len(tables) {
		return errors.New("replicate: more --where than --shape")
	}
	if len(params) > 0 && len(tables) > 1 {
		return errors.New("replicate: --param applies to a single --shape")
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
	failed := make(chan error, len(tables))
	done := make(chan error, 1)
	for i, t := range tables {
		sh := client.Shape{Table: t}
		if i < len(wheres) {
			sh.Where = wheres[i]
		}
		for _, p := range params {
			sh.Params = append(sh.Params, p)
		}
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
