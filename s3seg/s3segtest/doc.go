// Package s3segtest holds test helpers for s3seg.ObjectStore implementations
// and their users:
//
//   - RunObjectStoreSuite, the conformance suite every ObjectStore (the local
//     directory store, the S3 store against a real S3-compatible server) must
//     pass;
//   - MemStore, an in-memory reference ObjectStore for unit tests;
//   - FaultStore, a decorator that injects errors per operation, for testing
//     upload retries and read failures.
package s3segtest
