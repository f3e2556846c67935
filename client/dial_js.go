//go:build js

package client

import "github.com/coder/websocket"

// pingsVisible is false in browsers: they answer the service's pings
// themselves and do not report them, so a quiet connection cannot be told
// from a dead one; the browser's own TCP timeouts apply.
const pingsVisible = false

func dialOptions(onPing func()) *websocket.DialOptions { return nil }
