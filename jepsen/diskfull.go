package main

import "strconv"

// The disk-full class runs every agent on its own small filesystem, sized
// like the report that found agents crashing on a full disk (48 MB), with
// settings that fit it: a free-space floor, WAL segments small enough to
// be freed after a flush, and an unflushed backlog bound well inside the
// disk (a Raft snapshot carries the whole backlog).
const (
	smallDiskBytes   = 48 << 20
	smallDiskMinFree = 8 << 20
)

func diskFullEnv() []string {
	return []string{
		"MIN_FREE_DISK_BYTES=" + strconv.Itoa(smallDiskMinFree),
		"WAL_SEGMENT_BYTES=" + strconv.Itoa(1<<20),
		"MAX_UNFLUSHED_BYTES=" + strconv.Itoa(8<<20),
	}
}
