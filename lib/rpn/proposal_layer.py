"""Caffe Python layer turning RPN outputs into object proposals (RoIs).

prototxt: ``module: 'rpn.proposal_layer' layer: 'ProposalLayer'``, ``param_str: "'feat_stride': 16"`` plus
optional ``'scales'`` / ``'ratios'`` (as in ``AnchorTargetLayer``).
Bottoms: rpn_cls_prob_reshape (1×2A×H×W; channels A..2A−1 are the object probabilities), rpn_bbox_pred
(1×4A×H×W, channel 4a + k), im_info (1×3: height, width, scale).
Tops: rois (R×5, ``[0, x1, y1, x2, y2]`` in scaled-image pixels), optional scores (R×1).
Settings come from ``cfg.TRAIN`` or ``cfg.TEST`` by the net's phase; the Table 1 ablations
(``cfg.TEST.RPN_USE_NMS / RPN_USE_CLS / RPN_USE_REG``) apply to TEST nets only. The proposals are treated
as constants in end-to-end training: no backward, as released.
"""

import caffe
import numpy as np
import yaml

from fast_rcnn.config import cfg
from fast_rcnn.nms_wrapper import nms_gpu_id
from rpn.generate_anchors import anchors_from_layer_params, shifted_anchors
from rpn.proposal import generate_proposals


class ProposalLayer(caffe.Layer):
    """Decodes the anchors with the predicted deltas and keeps the best non-overlapping boxes."""

    def setup(self, bottom, top):
        """Parse param_str; give the tops a placeholder shape (the RoI count is known only in forward)."""
        layer_params = yaml.safe_load(self.param_str) or {}
        self._feat_stride = layer_params['feat_stride']
        self._anchors = anchors_from_layer_params(layer_params)
        self._num_anchors = self._anchors.shape[0]
        top[0].reshape(1, 5)
        if len(top) > 1:
            top[1].reshape(1, 1)

    @property
    def anchors(self):
        """The A×4 reference anchors (scaled-input pixels, centred on the first cell)."""
        return self._anchors

    @property
    def feat_stride(self):
        """Pixels of the scaled input per feature-map cell."""
        return self._feat_stride

    def forward(self, bottom, top):
        """Proposals of the current image (one image per batch)."""
        if bottom[0].data.shape[0] != 1:
            raise ValueError('ProposalLayer supports one image per batch')
        settings = cfg.TRAIN if self.phase == caffe.TRAIN else cfg.TEST
        is_test = self.phase == caffe.TEST
        im_height, im_width, im_scale = bottom[2].data[0, :3]
        height, width = bottom[0].data.shape[-2:]

        # (1, C, H, W) -> rows in (h, w, a) order, matching shifted_anchors.
        scores = bottom[0].data[:, self._num_anchors:, :, :].transpose(0, 2, 3, 1).reshape(-1)
        bbox_deltas = bottom[1].data.transpose(0, 2, 3, 1).reshape(-1, 4)
        all_anchors = shifted_anchors(self._anchors, height, width, self._feat_stride)

        boxes, scores = generate_proposals(
            all_anchors, bbox_deltas, scores, im_height, im_width,
            min_size=settings.RPN_MIN_SIZE * im_scale,
            pre_nms_top_n=settings.RPN_PRE_NMS_TOP_N,
            post_nms_top_n=settings.RPN_POST_NMS_TOP_N,
            nms_thresh=settings.RPN_NMS_THRESH,
            use_reg=cfg.TEST.RPN_USE_REG or not is_test,
            use_cls=cfg.TEST.RPN_USE_CLS or not is_test,
            use_nms=cfg.TEST.RPN_USE_NMS or not is_test,
            seed=cfg.RNG_SEED, nms_gpu_id=nms_gpu_id(cfg))

        # Single-image batches: the batch index column is 0.
        rois = np.hstack([np.zeros((boxes.shape[0], 1), dtype=np.float32), boxes])
        top[0].reshape(*rois.shape)
        top[0].data[...] = rois
        if len(top) > 1:
            top[1].reshape(scores.shape[0], 1)
            top[1].data[...] = scores[:, np.newaxis]

    def backward(self, top, propagate_down, bottom):
        """No gradient through the proposals (released end-to-end training ignores it)."""

    def reshape(self, bottom, top):
        """Shapes are set in forward."""
