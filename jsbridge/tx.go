package jsbridge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/latticesync/lattice/client"
)

// itx is an interactive transaction: a goroutine inside
// client.Transaction running the statements the page sends, until commit,
// rollback, detach of its port, or TxIdle without a request.
type itx struct {
	id    int
	reqs  chan txReq
	done  chan struct{}
	err   error // result of Transaction; set before done closes
	stop  chan struct{}
	once  sync.Once
	ended bool // commit or rollback requested; guarded by Bridge.mu
}

type txReq struct {
	fn     func(*client.Tx) (any, error)
	end    bool
	commit bool
	reply  chan txReply
}

type txReply struct {
	v   any
	err error
}

var (
	errRollback = errors.New("transaction rolled back")
	errTxIdle   = errors.New("transaction rolled back: no request for too long")
	errTxGone   = errors.New("transaction rolled back: its tab detached")
)

func (t *itx) abort() { t.once.Do(func() { close(t.stop) }) }

// do runs fn inside the transaction and returns its result.
func (t *itx) do(ctx context.Context, fn func(*client.Tx) (any, error)) (any, error) {
	r := txReq{fn: fn, reply: make(chan txReply, 1)}
	select {
	case t.reqs <- r:
	case <-t.done:
		return nil, &Error{Code: CodeBadRequest, Message: "transaction is over: " + t.err.Error()}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case rep := <-r.reply:
		return rep.v, rep.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *Bridge) begin(ctx context.Context, db *openDB, p *port) (any, error) {
	t := &itx{
		id:   b.newID(),
		reqs: make(chan txReq),
		done: make(chan struct{}),
		stop: make(chan struct{}),
	}
	started := make(chan struct{})
	go func() {
		defer close(t.done)
		t.err = db.c.Transaction(context.Background(), func(tx *client.Tx) error {
			close(started)
			idle := time.NewTimer(b.opts.TxIdle)
			defer idle.Stop()
			for {
				select {
				case r := <-t.reqs:
					if r.end {
						if r.commit {
							return nil
						}
						return errRollback
					}
					v, err := r.fn(tx)
					r.reply <- txReply{v, err}
					idle.Reset(b.opts.TxIdle)
				case <-idle.C:
					return errTxIdle
				case <-t.stop:
					return errTxGone
				}
			}
		})
		if t.err == nil {
			b.checkPending(db)
		}
	}()
	select {
	case <-started:
	case <-t.done:
		return nil, t.err
	case <-ctx.Done():
		t.abort()
		return nil, ctx.Err()
	}
	b.mu.Lock()
	if b.ports[p.id] != p {
		b.mu.Unlock()
		t.abort()
		return nil, &Error{Code: CodeClosed, Message: "port detached"}
	}
	p.txs[t.id] = t
	b.mu.Unlock()
	return map[string]any{"tx": t.id}, nil
}

// txOf returns the transaction named by the request's tx field, nil if it
// has none.
func (b *Bridge) txOf(p *port, req Request) (*itx, error) {
	v, ok := req["tx"]
	if !ok || v == nil {
		return nil, nil
	}
	n, err := req.int("tx")
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	t := p.txs[n]
	b.mu.Unlock()
	if t == nil {
		return nil, badRequest("no open transaction %d", n)
	}
	return t, nil
}

func (b *Bridge) finish(ctx context.Context, db *openDB, p *port, req Request, commit bool) (any, error) {
	t, err := b.txOf(p, req)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, badRequest("missing tx")
	}
	b.mu.Lock()
	delete(p.txs, t.id)
	b.mu.Unlock()
	select {
	case t.reqs <- txReq{end: true, commit: commit}:
	case <-t.done:
	case <-ctx.Done():
		t.abort()
		return nil, ctx.Err()
	}
	<-t.done
	if !commit && errors.Is(t.err, errRollback) {
		return nil, nil
	}
	if t.err != nil {
		return nil, t.err
	}
	return nil, nil
}
