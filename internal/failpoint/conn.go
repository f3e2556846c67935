package failpoint

import (
	"errors"
	"net"
)

// Listener wraps ln so that every connection it accepts passes point name
// before each Write: at a cut action the connection sends the first half of
// what it was asked to write (a frame cut in the middle) and closes.
func Listener(ln net.Listener, name string) net.Listener {
	if !enabled.Load() || envSet.points[name] == nil {
		return ln
	}
	return &listener{Listener: ln, name: name}
}

type listener struct {
	net.Listener
	name string
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, name: l.name}, nil
}

type conn struct {
	net.Conn
	name string
}

func (c *conn) Write(b []byte) (int, error) {
	if err := Hit(c.name); errors.Is(err, ErrCut) {
		n, _ := c.Conn.Write(b[:len(b)/2])
		c.Conn.Close()
		return n, err
	} else if err != nil {
		c.Conn.Close()
		return 0, err
	}
	return c.Conn.Write(b)
}
