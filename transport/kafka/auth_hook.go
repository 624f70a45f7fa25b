package kafka

// Temporary authorization hook: every request is allowed. The handlers of
// this package call s.authorize before touching a topic; the SASL/ACL work
// replaces this file with the real check.

// Operation is what a request does to a resource.
type Operation int

// Operations checked by authorize.
const (
	OpRead Operation = iota
	OpWrite
	OpDescribe
	OpCreate
	OpDelete
	OpAlter
)

// authorize reports whether the connection's principal may do op on topic
// (nil: allowed).
func (s *Server) authorize(c *Conn, op Operation, topic string) error {
	return nil
}
