package s3seg

import (
	"strconv"
	"strings"
	"time"
)

// commitByMarker introduces the commit-by time in a segment key.
const commitByMarker = "-cb"

// ObjectKeyCommitBy is ObjectKey for an object that must be committed by
// the cluster time commitBy (unix ms, > 0):
//
//	segments/<yyyy>/<mm>/<dd>/<node>-<epoch>-<16 hex digits>-cb<commitBy>.seg
//
// Garbage collection reads the time back with KeyCommitBy, without reading
// the object: an unreferenced object is deleted only once the cluster clock
// has passed it (partition.OrphanDeletable).
func ObjectKeyCommitBy(nodeID string, epoch uint64, commitBy int64) string {
	k := ObjectKeyAt(nodeID, epoch, time.Now())
	return strings.TrimSuffix(k, ".seg") + commitByMarker + strconv.FormatInt(commitBy, 10) + ".seg"
}

// KeyCommitBy returns the commit-by time written into a segment key by
// ObjectKeyCommitBy, or 0 when the key has none (keys of older versions,
// or keys not made by this package).
func KeyCommitBy(key string) int64 {
	base := key[strings.LastIndexByte(key, '/')+1:]
	name, ok := strings.CutSuffix(base, ".seg")
	if !ok {
		return 0
	}
	i := strings.LastIndex(name, commitByMarker)
	if i < 0 {
		return 0
	}
	digits := name[i+len(commitByMarker):]
	if digits == "" || digits[0] < '0' || digits[0] > '9' {
		return 0
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v <= 0 {
		return 0
	}
	return v
}
