//go:build js

package jsbridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/hack-pad/safejs"
)

// Serve connects a Bridge to the worker script and serves requests until
// ctx ends. The script must have set globalThis.__latticeHost to an object
// with post(port, json) (send a message to a port) and ready(handler)
// (called once; the script then passes every request to handler(port,
// json), having queued those that arrived before Go was ready).
//
// The handler never blocks: it starts a goroutine per request, so that a
// request waiting on IndexedDB or the network cannot stall the JS event
// loop that must deliver what it waits for.
func Serve(ctx context.Context, opts Options) error {
	host, err := safejs.Global().Get("__latticeHost")
	if err != nil || host.IsUndefined() {
		return fmt.Errorf("jsbridge: globalThis.__latticeHost is not set: %v", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	post := func(port int, ev Event) {
		data, err := json.Marshal(ev)
		if err != nil {
			data, _ = json.Marshal(Event{"id": ev["id"], "ok": false,
				"error": map[string]any{"code": CodeInternal, "message": "encode reply: " + err.Error()}})
		}
		if _, err := host.Call("post", port, string(data)); err != nil {
			log.Warn("lattice: post to page failed", "port", port, "err", err)
		}
	}
	opts.Emit = post
	b := New(opts)
	handler, err := safejs.FuncOf(func(_ safejs.Value, args []safejs.Value) any {
		if len(args) < 2 {
			return nil
		}
		port, err1 := args[0].Int()
		data, err2 := args[1].String()
		go func() {
			if err1 != nil || err2 != nil {
				post(port, Event{"id": nil, "ok": false, "error": errorValue(badRequest("bad request arguments"))})
				return
			}
			req, err := DecodeRequest(data)
			if err != nil {
				post(port, Event{"id": nil, "ok": false, "error": errorValue(err)})
				return
			}
			post(port, b.Handle(ctx, port, req))
		}()
		return nil
	})
	if err != nil {
		return fmt.Errorf("jsbridge: %w", err)
	}
	defer handler.Release()
	if _, err := host.Call("ready", handler.Value()); err != nil {
		return fmt.Errorf("jsbridge: ready: %w", err)
	}
	<-ctx.Done()
	b.Close()
	return ctx.Err()
}
