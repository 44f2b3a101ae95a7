"""The drivers that run the core's operations: connection targets, the pool and its
failure rules, and the sync and async I/O loops side by side."""
