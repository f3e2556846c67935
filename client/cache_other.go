//go:build !js

package client

// snapshotCacheKiB is the SQLite page cache of the client's connection
// while it applies a snapshot (see growCache): 128 MiB holds the key
// index of a few million rows, so random keys (uuid, text) do not spill
// and re-read index pages mid-transaction. Pages are allocated as used.
const snapshotCacheKiB = 128 << 10
