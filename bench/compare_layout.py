"""Compares the output roots of two runs over the same answers (e.g. two builds replaying one
corpus): the same files, and in each Parquet file the same schema, key-value metadata, row groups,
codec and encodings of every column chunk and rows (all but _run_id and _ingested_at, which name
the run); the rejects files the same lines. Usage: python compare_layout.py ROOT_A ROOT_B"""
import sys, os, pyarrow.parquet as pq, pyarrow as pa
a, b = sys.argv[1], sys.argv[2]
def files(root):
    out = []
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.relpath(os.path.join(d, f), root)
            if not p.startswith('_runs') and not p.startswith('_lease') and not p.startswith('_progress'):
                out.append(p)
    return sorted(out)
fa, fb = files(a), files(b)
assert fa == fb, (len(fa), len(fb), set(fa) ^ set(fb))
same_size = diff = 0
for p in fa:
    pa_, pb_ = os.path.join(a, p), os.path.join(b, p)
    if p.endswith('.ndjson'):
        la = [l.split('"run_id":')[1].split(',',1)[1] for l in open(pa_)]
        lb = [l.split('"run_id":')[1].split(',',1)[1] for l in open(pb_)]
        assert sorted(la) == sorted(lb), p  # lines in answer arrival order, which varies run to run
        continue
    ma, mb = pq.ParquetFile(pa_).metadata, pq.ParquetFile(pb_).metadata
    assert ma.num_rows == mb.num_rows and ma.num_row_groups == mb.num_row_groups, p
    assert ma.metadata == mb.metadata, p  # key-value metadata incl. ARROW:schema
    assert ma.created_by == mb.created_by, p
    for g in range(ma.num_row_groups):
        for c in range(ma.num_columns):
            ca, cb = ma.row_group(g).column(c), mb.row_group(g).column(c)
            assert (ca.path_in_schema, ca.compression, ca.encodings, ca.physical_type) == (cb.path_in_schema, cb.compression, cb.encodings, cb.physical_type), (p, ca.path_in_schema)
    ta = pq.read_table(pa_).drop_columns(['_run_id', '_ingested_at'])
    tb = pq.read_table(pb_).drop_columns(['_run_id', '_ingested_at'])
    assert ta.equals(tb), p
    if os.path.getsize(pa_) == os.path.getsize(pb_): same_size += 1
    else: diff += 1
print(f"{len(fa)} files compared: same schema, key-value metadata, row groups, codecs and encodings per column chunk, same rows (but _run_id/_ingested_at); {same_size} of the same size in bytes, {diff} not")
