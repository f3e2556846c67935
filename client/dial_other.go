//go:build !js

package client

import (
	"context"

	"github.com/coder/websocket"
)

// pingsVisible reports whether the WebSocket library lets the client see
// the service's keepalive pings, so that a silent connection can be
// detected (see session.watchdog).
const pingsVisible = true

// dialOptions returns the options for dialing the service; onPing is
// called for every ping received.
func dialOptions(onPing func()) *websocket.DialOptions {
	return &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			onPing()
			return true // answer with a pong
		},
	}
}
