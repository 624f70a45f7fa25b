package s3seg

// Test-only access to internals.

// Waiters returns how many callers wait on the in-flight fetch of the key
// (not counting the caller performing it), or -1 if none is in flight.
func (c *Cache[V]) Waiters(object string, off, n int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.calls[cacheKey{object, off, n}]
	if !ok {
		return -1
	}
	return cl.waiters
}

// EncodeFooterForTest appends the footer and trailer encoding of f to dst.
func EncodeFooterForTest(dst []byte, f Footer) ([]byte, error) { return appendFooter(dst, f) }

// PayloadForTest returns the uncompressed block payload of p.
func PayloadForTest(p PartitionBatch) ([]byte, error) {
	b, _, _, err := appendPayload(nil, &p)
	return b, err
}

// SetS3ListPageSize sets how many keys each ListObjectsV2 page asks for, so
// tests can exercise pagination with few objects.
func SetS3ListPageSize(s *S3Store, n int32) { s.listPageSize = n }
