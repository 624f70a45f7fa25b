package fsm

// Types shared by the produce/fetch path (partition) and the transports,
// which only import fsm.

// ProduceRecord is a record to produce. Partition < 0 means "let the
// partitioner choose" (by key, or spread when the key is null).
type ProduceRecord struct {
	Partition int32
	Record    Record
}

// RecordOffset is where a produced record landed.
type RecordOffset struct {
	Partition int32
	Offset    int64
}

// FetchedRecord is a stored record with its position.
type FetchedRecord struct {
	Partition int32
	Offset    int64
	Record
}

// FetchRequest asks for records of one partition starting at Offset.
type FetchRequest struct {
	Topic      string
	Partition  int32
	Offset     int64
	MaxRecords int
	MaxBytes   int
	WaitMs     int64 // long-poll: wait up to this long at the end of the log
}

// FetchResult is the answer to a FetchRequest.
type FetchResult struct {
	Records       []FetchedRecord
	NextOffset    int64
	HighWatermark int64
	LowWatermark  int64
}
