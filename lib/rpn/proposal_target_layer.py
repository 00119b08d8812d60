"""Caffe Python layer sampling RPN proposals into a Fast R-CNN minibatch with its targets (end-to-end).

prototxt: ``module: 'rpn.proposal_target_layer' layer: 'ProposalTargetLayer'``,
``param_str: "'num_classes': 21"``.
Bottoms: rpn_rois (R×5, batch index 0), gt_boxes (G×5, class in column 4).
Tops: rois (S×5), labels (S), bbox_targets, bbox_inside_weights, bbox_outside_weights (S×4K), with
S ≤ cfg.TRAIN.BATCH_SIZE (one image per batch). The logic lives in ``rpn.proposal_target``.
"""

import caffe
import numpy as np
import yaml

from fast_rcnn.config import cfg
from rpn.proposal_target import proposal_targets


class ProposalTargetLayer(caffe.Layer):
    """Assigns proposals to gt boxes, samples foreground/background RoIs, computes their targets."""

    def setup(self, bottom, top):
        """Parse param_str and give the tops placeholder shapes (S is known only in forward)."""
        layer_params = yaml.safe_load(self.param_str)
        self._num_classes = layer_params['num_classes']
        top[0].reshape(1, 5)
        top[1].reshape(1)
        for i in range(2, 5):
            top[i].reshape(1, 4 * self._num_classes)

    def forward(self, bottom, top):
        """Sample the RoIs of the current image."""
        rois_per_image = cfg.TRAIN.BATCH_SIZE
        if cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED:
            means, stds = cfg.TRAIN.BBOX_NORMALIZE_MEANS, cfg.TRAIN.BBOX_NORMALIZE_STDS
        else:
            means = stds = None
        blobs = proposal_targets(
            bottom[0].data, bottom[1].data, self._num_classes, rois_per_image,
            fg_rois_per_image=int(np.round(cfg.TRAIN.FG_FRACTION * rois_per_image)),
            fg_thresh=cfg.TRAIN.FG_THRESH, bg_thresh_hi=cfg.TRAIN.BG_THRESH_HI,
            bg_thresh_lo=cfg.TRAIN.BG_THRESH_LO, means=means, stds=stds,
            inside_weights=cfg.TRAIN.BBOX_INSIDE_WEIGHTS)
        for i, values in enumerate(blobs):
            top[i].reshape(*values.shape)
            top[i].data[...] = values

    def backward(self, top, propagate_down, bottom):
        """The sampled RoIs and targets are constants: nothing flows back."""

    def reshape(self, bottom, top):
        """Shapes are set in forward."""
