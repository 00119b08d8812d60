"""Region Proposal Network: anchors, anchor targets, proposals and proposal targets (Caffe Python layers)."""
