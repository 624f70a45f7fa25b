package main

import "github.com/streamhouse/streamhouse/partition"

// checkDiskSpace is --check-config's view of MIN_FREE_DISK_BYTES.
func (c *agentCmd) checkDiskSpace(add addFunc) {
	const name = "disk space"
	free, err := partition.FreeBytes(c.DataDir)
	switch {
	case err != nil:
		add(checkWarn, name, "cannot measure free space in DATA_DIR=%s: %v (MIN_FREE_DISK_BYTES is not enforced)", c.DataDir, err)
	case c.MinFreeDiskBytes > 0 && free < uint64(c.MinFreeDiskBytes):
		add(checkWarn, name, "%d bytes free in DATA_DIR=%s, below MIN_FREE_DISK_BYTES=%d: the agent would refuse produce", free, c.DataDir, c.MinFreeDiskBytes)
	case c.MinFreeDiskBytes > 0 && c.MinFreeDiskBytes < c.MaxUnflushedBytes:
		add(checkWarn, name, "MIN_FREE_DISK_BYTES=%d is below MAX_UNFLUSHED_BYTES=%d: a Raft snapshot of a full backlog may not fit in the headroom", c.MinFreeDiskBytes, c.MaxUnflushedBytes)
	default:
		add(checkOK, name, "%d bytes free in DATA_DIR=%s (MIN_FREE_DISK_BYTES=%d)", free, c.DataDir, c.MinFreeDiskBytes)
	}
}
