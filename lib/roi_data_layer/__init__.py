"""Training data for Caffe: roidb preparation, minibatch sampling and the ``RoIDataLayer``."""
