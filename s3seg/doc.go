// Package s3seg owns StreamHouse's segment objects: the immutable objects in
// S3 (or MinIO, or a local directory) into which partition leaders flush
// acknowledged records.
//
// One object holds one flush of one agent: a block per partition, each
// compressed on its own (none, zstd or LZ4) and protected by a CRC32C, then a
// footer indexing partition -> byte range -> offset range, itself protected
// by a CRC32C, then a fixed 16-byte trailer. DESIGN.md specifies format v1
// byte by byte; testdata/golden-v1.seg pins it.
//
// The package provides:
//
//   - Encoder.Encode, DecodeFooter, DecodeFooterTail and DecodeBlock, the
//     format. Decoders return errors wrapping ErrCorrupt for any damaged or
//     inconsistent input, never wrong records, and bound every allocation by
//     the input size and MaxBlockSize.
//   - ObjectStore, the storage interface (immutable objects: Put never
//     overwrites), ValidateKey and ObjectKey (the key scheme), LocalStore
//     (a directory, the embedded default), S3Store (Amazon S3 or MinIO via
//     aws-sdk-go-v2: conditional PUTs, SDK retries, per-attempt timeouts,
//     Check with errors that name what to fix) and Instrumented (Prometheus
//     request metrics). Every store passes s3segtest.RunObjectStoreSuite;
//     S3Store runs it against a real MinIO server process.
//   - Cache, the segment cache (an LRU of blocks, raw or decoded as its
//     owner chooses, bounded by SEGMENT_CACHE_SIZE, with shared concurrent
//     misses, background prefetch and DropObject), and Reader, which reads
//     footers (Head plus a ranged GET of the tail) and blocks (one ranged GET
//     per block, checksum verified), optionally through a Cache of raw
//     blocks.
//
// The package imports nothing else from this repository. Metrics are
// registered on an injected prometheus.Registerer; nothing happens at init.
package s3seg
