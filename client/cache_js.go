//go:build js

package client

// snapshotCacheKiB: in a browser the module's memory never shrinks once
// grown, so the snapshot's page cache is smaller than natively (see
// cache_other.go).
const snapshotCacheKiB = 32 << 10
