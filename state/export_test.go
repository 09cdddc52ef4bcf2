package state

// SetFoldBytes makes a changelog of n bytes start a fold, instead of
// MemTableSize, so that tests fold often.
func SetFoldBytes(o *Options, n int64) { o.foldBytes = n }

// AppendDelete appends a deletion of key to rec.
func AppendDelete(rec, key []byte) []byte { return appendDeltaWrite(rec, key, nil, true) }
