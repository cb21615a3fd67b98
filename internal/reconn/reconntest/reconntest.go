// Package reconntest helps test what a client does when a server closes kept-alive
// connections: a raw HTTP/1.1 server whose handler sees which request of its connection it
// is answering and decides when the connection ends.
package reconntest

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"testing"
)

// Serve runs a raw HTTP/1.1 server on a free port of 127.0.0.1 until the test ends and returns
// its URL ("http://127.0.0.1:port"). For every request it calls handle with the connection,
// the request's index on that connection (0 for the first; more means a client reused the
// connection) and the request with its body unread. handle writes the whole answer to c
// itself and returns false to close the connection.
func Serve(tb testing.TB, handle func(c net.Conn, n int, req *http.Request) (keep bool)) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil || !handle(c, n, req) {
						return
					}
				}
			})
		}
	})
	return "http://" + l.Addr().String()
}
