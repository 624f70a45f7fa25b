package partition

import (
	"bytes"
	"io"
)

type snapBuf struct{ bytes.Buffer }

func (b *snapBuf) ID() string    { return "test" }
func (b *snapBuf) Cancel() error { return nil }
func (b *snapBuf) Close() error  { return nil }
func (b *snapBuf) reader() io.ReadCloser {
	return io.NopCloser(bytes.NewReader(b.Bytes()))
}
