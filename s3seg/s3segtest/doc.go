// Package s3segtest holds test helpers for s3seg.ObjectStore implementations
// and their users:
//
//   - RunObjectStoreSuite, the conformance suite every ObjectStore (the local
//     directory store, the S3 store against a real S3-compatible server) must
//     pass;
//   - MemStore, an in-memory reference ObjectStore for unit tests;
//   - FaultStore, a decorator that injects errors per operation, for testing
//     upload retries and read failures;
//   - StartMinIO, a real MinIO server process on 127.0.0.1 for S3Store
//     integration tests (Stop and Restart for outages, CreateBucket,
//     NewStore). MinIO is AGPL: it only ever runs as a separate process.
//     MinIOBinary finds the binary that `make deps` builds; a test without
//     it fails, it never skips.
package s3segtest
