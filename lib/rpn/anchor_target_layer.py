"""Caffe Python layer producing the RPN's training targets (labels, regression targets, loss weights).

prototxt: ``module: 'rpn.anchor_target_layer' layer: 'AnchorTargetLayer'``,
``param_str: "'feat_stride': 16"`` plus optional ``'scales': [8, 16, 32]``, ``'ratios': [0.5, 1, 2]``,
``'allowed_border': 0``.
Bottoms: rpn_cls_score (1×2A×H×W, only its H, W are used), gt_boxes (G×5, scaled image pixels, class in
column 4), im_info (1×3: height, width, scale), data (unused; kept for the released prototxts).
Tops: rpn_labels (1×1×(A·H)×W), rpn_bbox_targets, rpn_bbox_inside_weights, rpn_bbox_outside_weights
(each 1×4A×H×W). The logic lives in ``rpn.anchor_target``; this layer reads ``cfg`` and lays out blobs.
"""

import caffe
import yaml

from fast_rcnn.config import cfg
from rpn.anchor_target import anchor_target_blobs, anchor_targets
from rpn.generate_anchors import anchors_from_layer_params, shifted_anchors


class AnchorTargetLayer(caffe.Layer):
    """Assigns anchors to ground-truth boxes and samples the RPN minibatch (no backward)."""

    def setup(self, bottom, top):
        """Parse param_str and give the tops their shapes for the current feature map size."""
        layer_params = yaml.safe_load(self.param_str) or {}
        self._feat_stride = layer_params['feat_stride']
        self._allowed_border = layer_params.get('allowed_border', 0)
        self._anchors = anchors_from_layer_params(layer_params)
        self._num_anchors = self._anchors.shape[0]

        height, width = bottom[0].data.shape[-2:]
        top[0].reshape(1, 1, self._num_anchors * height, width)
        for i in range(1, 4):
            top[i].reshape(1, 4 * self._num_anchors, height, width)

    def forward(self, bottom, top):
        """Compute the targets of the current image (one image per batch)."""
        if bottom[0].data.shape[0] != 1:
            raise ValueError('AnchorTargetLayer supports one image per batch')
        height, width = bottom[0].data.shape[-2:]
        gt_boxes = bottom[1].data
        im_height, im_width = bottom[2].data[0, :2]

        all_anchors = shifted_anchors(self._anchors, height, width, self._feat_stride)
        per_anchor = anchor_targets(
            all_anchors, gt_boxes, im_height, im_width, self._allowed_border,
            positive_overlap=cfg.TRAIN.RPN_POSITIVE_OVERLAP,
            negative_overlap=cfg.TRAIN.RPN_NEGATIVE_OVERLAP,
            clobber_positives=cfg.TRAIN.RPN_CLOBBER_POSITIVES,
            batch_size=cfg.TRAIN.RPN_BATCHSIZE,
            fg_fraction=cfg.TRAIN.RPN_FG_FRACTION,
            bbox_inside_weights=cfg.TRAIN.RPN_BBOX_INSIDE_WEIGHTS,
            positive_weight=cfg.TRAIN.RPN_POSITIVE_WEIGHT)
        blobs = anchor_target_blobs(*per_anchor, height, width, self._num_anchors)
        for i, values in enumerate(blobs):
            top[i].reshape(*values.shape)
            top[i].data[...] = values

    def backward(self, top, propagate_down, bottom):
        """Targets are constants: nothing flows back."""

    def reshape(self, bottom, top):
        """Shapes are set in forward (they follow the feature map)."""
