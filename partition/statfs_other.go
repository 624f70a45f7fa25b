//go:build !(linux || darwin || freebsd)

package partition

import "errors"

// FreeBytes is not implemented on this OS: the disk guard then never
// reports low space (it logs that once).
func FreeBytes(string) (uint64, error) {
	return 0, errors.New("free-space measurement is not supported on this OS")
}
