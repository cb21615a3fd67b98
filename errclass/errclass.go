// Package errclass names the kinds of request failure. The proxy, the recorder, the replayer,
// the store and every report use these names, so that a "timeout" means one thing everywhere.
// It imports nothing, so that the proxy (which imports nothing else of llmtape) can use it.
package errclass

// Class is the kind of a failed request; the empty Class is no failure. Classes are stored as
// their names and appear as such in JSON and reports.
type Class string

// The classes.
const (
	None     Class = ""         // not failed
	HTTP     Class = "http"     // the server answered with a status of 400 or more
	Timeout  Class = "timeout"  // the request took longer than its limit
	Connect  Class = "connect"  // no response: the connection could not be made or broke first
	Stream   Class = "stream"   // the stream broke, carried an error object or a malformed event
	Canceled Class = "canceled" // canceled: the client went away, or a second Ctrl-C aborted it
)
