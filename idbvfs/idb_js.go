//go:build js

package idbvfs

import (
	"context"
	"errors"
	"fmt"
	"syscall/js"
)

// dbPrefix prefixes the IndexedDB database name of every SQLite file.
const dbPrefix = "idbvfs:"

// idbBackend stores each file as an IndexedDB database with the object
// stores "blocks" (block index -> Uint8Array) and "meta" ("meta" ->
// {size, blockSize}).
type idbBackend struct {
	durability string
}

var (
	jsObject     = js.Global().Get("Object")
	jsUint8Array = js.Global().Get("Uint8Array")
	jsKeyRange   = js.Global().Get("IDBKeyRange")
)

// jsError is an IndexedDB failure (a DOMException or an exception thrown by
// a call), as an error.
type jsError struct {
	op, name, msg string
}

func (e *jsError) Error() string { return fmt.Sprintf("indexeddb %s: %s: %s", e.op, e.name, e.msg) }

func domError(op string, v js.Value) error {
	if v.IsUndefined() || v.IsNull() {
		return &jsError{op: op, name: "Error", msg: "unknown error"}
	}
	name, msg := "Error", v.String()
	if n := v.Get("name"); n.Type() == js.TypeString {
		name = n.String()
	}
	if m := v.Get("message"); m.Type() == js.TypeString {
		msg = m.String()
	}
	return &jsError{op: op, name: name, msg: msg}
}

// try runs f and turns a JS exception thrown inside into an error.
func try(op string, f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(js.Error); ok {
				err = domError(op, e.Value)
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}

// waiter receives the events of one IndexedDB request or transaction. The
// JS callback only does a non-blocking send; the goroutine blocks in wait.
type waiter struct {
	fn   js.Func
	ch   chan js.Value
	done bool // an event arrived: the callback will not be called again
}

func newWaiter() *waiter {
	w := &waiter{ch: make(chan js.Value, 1)}
	w.fn = js.FuncOf(func(this js.Value, args []js.Value) any {
		var ev js.Value
		if len(args) > 0 {
			ev = args[0]
		}
		select {
		case w.ch <- ev:
		default: // the first event decides
		}
		return nil
	})
	return w
}

// on sets the waiter as the handler of the given events of target.
func (w *waiter) on(target js.Value, events ...string) {
	for _, e := range events {
		target.Set("on"+e, w.fn)
	}
}

func (w *waiter) wait(ctx context.Context, op string) (js.Value, error) {
	select {
	case ev := <-w.ch:
		w.done = true
		return ev, nil
	case <-ctx.Done():
		return js.Value{}, fmt.Errorf("indexeddb %s: %w", op, ctx.Err())
	}
}

// release frees the callback once it has fired. After a timeout it is left
// alone (a small leak): IndexedDB may still call it, and calling a released
// js.Func would crash the program.
func (w *waiter) release() {
	if w.done {
		w.fn.Release()
	}
}

func indexedDB() (js.Value, error) {
	f := js.Global().Get("indexedDB")
	if f.IsUndefined() || f.IsNull() {
		return js.Value{}, errors.New("indexeddb: not available in this context")
	}
	return f, nil
}

func (b *idbBackend) Open(ctx context.Context, name string, create bool) (Handle, bool, error) {
	idb, err := indexedDB()
	if err != nil {
		return nil, false, err
	}
	w := newWaiter()
	defer w.release()
	created := false
	upgrade := js.FuncOf(func(this js.Value, args []js.Value) any {
		// Runs inside the versionchange transaction: create the stores,
		// or refuse to create a database that should exist. A throw here
		// aborts the open, which then reports an error event.
		try("upgrade", func() {
			req := args[0].Get("target")
			if args[0].Get("oldVersion").Int() == 0 {
				created = true
				if !create {
					req.Get("transaction").Call("abort")
					return
				}
				db := req.Get("result")
				db.Call("createObjectStore", "blocks")
				db.Call("createObjectStore", "meta")
			}
		})
		return nil
	})
	defer func() {
		if w.done {
			upgrade.Release()
		}
	}()
	var req js.Value
	if err := try("open", func() {
		req = idb.Call("open", dbPrefix+name, 1)
		req.Set("onupgradeneeded", upgrade)
		w.on(req, "success", "error")
	}); err != nil {
		return nil, false, err
	}
	ev, err := w.wait(ctx, "open")
	if err != nil {
		return nil, false, err
	}
	if ev.Get("type").String() != "success" {
		if created && !create {
			return nil, false, nil
		}
		return nil, false, domError("open", req.Get("error"))
	}
	h := &idbHandle{db: req.Get("result"), durability: b.durability}
	// Another connection wants to delete or upgrade the database: let it,
	// and fail from now on (an SQLite I/O error) instead of blocking it.
	h.onVersionChange = js.FuncOf(func(this js.Value, args []js.Value) any {
		try("close", func() { h.db.Call("close") })
		return nil
	})
	h.db.Set("onversionchange", h.onVersionChange)
	return h, !created, nil
}

func (b *idbBackend) Exists(ctx context.Context, name string) (bool, error) {
	idb, err := indexedDB()
	if err != nil {
		return false, err
	}
	w := newWaiter()
	defer w.release()
	fail := newWaiter()
	defer fail.release()
	if err := try("databases", func() {
		idb.Call("databases").Call("then", w.fn, fail.fn)
	}); err != nil {
		return false, err
	}
	select {
	case list := <-w.ch:
		w.done, fail.done = true, true
		for i := range list.Length() {
			if list.Index(i).Get("name").String() == dbPrefix+name {
				return true, nil
			}
		}
		return false, nil
	case e := <-fail.ch:
		w.done, fail.done = true, true
		return false, domError("databases", e)
	case <-ctx.Done():
		return false, fmt.Errorf("indexeddb databases: %w", ctx.Err())
	}
}

func (b *idbBackend) Delete(ctx context.Context, name string) error {
	idb, err := indexedDB()
	if err != nil {
		return err
	}
	w := newWaiter()
	defer w.release()
	var req js.Value
	if err := try("delete", func() {
		req = idb.Call("deleteDatabase", dbPrefix+name)
		w.on(req, "success", "error")
	}); err != nil {
		return err
	}
	ev, err := w.wait(ctx, "delete")
	if err != nil {
		return err
	}
	if ev.Get("type").String() != "success" {
		return domError("delete", req.Get("error"))
	}
	return nil
}

type idbHandle struct {
	db              js.Value
	durability      string
	onVersionChange js.Func
}

func (h *idbHandle) Load(ctx context.Context, first, n int64) (Meta, []Block, error) {
	w := newWaiter()
	defer w.release()
	var tx, metaReq, keysReq, valsReq js.Value
	if err := try("read", func() {
		tx = h.db.Call("transaction", []any{"blocks", "meta"}, "readonly")
		metaReq = tx.Call("objectStore", "meta").Call("get", "meta")
		if n > 0 {
			r := jsKeyRange.Call("bound", first, first+n-1)
			blocks := tx.Call("objectStore", "blocks")
			keysReq = blocks.Call("getAllKeys", r)
			valsReq = blocks.Call("getAll", r)
		}
		w.on(tx, "complete", "error", "abort")
	}); err != nil {
		return Meta{}, nil, err
	}
	ev, err := w.wait(ctx, "read")
	if err != nil {
		return Meta{}, nil, err
	}
	if ev.Get("type").String() != "complete" {
		return Meta{}, nil, domError("read", tx.Get("error"))
	}
	var meta Meta
	if m := metaReq.Get("result"); m.Type() == js.TypeObject {
		meta.Size = int64(m.Get("size").Float())
		meta.BlockSize = int64(m.Get("blockSize").Int())
	}
	if n == 0 {
		return meta, nil, nil
	}
	keys, vals := keysReq.Get("result"), valsReq.Get("result")
	out := make([]Block, keys.Length())
	for i := range out {
		v := vals.Index(i)
		data := make([]byte, v.Get("byteLength").Int())
		js.CopyBytesToGo(data, v)
		out[i] = Block{Index: int64(keys.Index(i).Float()), Data: data}
	}
	return meta, out, nil
}

func (h *idbHandle) Commit(ctx context.Context, puts []Block, dropFrom int64, meta *Meta) error {
	w := newWaiter()
	defer w.release()
	var tx js.Value
	if err := try("write", func() {
		opts := jsObject.New()
		opts.Set("durability", h.durability)
		stores := []any{"blocks"}
		if meta != nil {
			stores = append(stores, "meta")
		}
		tx = h.db.Call("transaction", stores, "readwrite", opts)
		w.on(tx, "complete", "error", "abort")
		blocks := tx.Call("objectStore", "blocks")
		if dropFrom >= 0 {
			blocks.Call("delete", jsKeyRange.Call("lowerBound", dropFrom))
		}
		for _, b := range puts {
			u := jsUint8Array.New(len(b.Data))
			js.CopyBytesToJS(u, b.Data)
			blocks.Call("put", u, b.Index)
		}
		if meta != nil {
			m := jsObject.New()
			m.Set("size", meta.Size)
			m.Set("blockSize", meta.BlockSize)
			tx.Call("objectStore", "meta").Call("put", m, "meta")
		}
		tx.Call("commit")
	}); err != nil {
		if !tx.IsUndefined() {
			try("abort", func() { tx.Call("abort") })
		}
		return err
	}
	ev, err := w.wait(ctx, "write")
	if err != nil {
		return err
	}
	if ev.Get("type").String() != "complete" {
		return domError("write", tx.Get("error"))
	}
	return nil
}

func (h *idbHandle) Close() error {
	err := try("close", func() { h.db.Call("close") })
	h.db.Set("onversionchange", js.Null())
	h.onVersionChange.Release()
	return err
}
