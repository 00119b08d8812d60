"""Small shared helpers: box overlaps (compiled ``utils.cython_bbox``), blobs and timing."""
