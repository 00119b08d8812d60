"""Caffe Python layer feeding training minibatches from a roidb.

prototxt: ``module: 'roi_data_layer.layer' layer: 'RoIDataLayer'``, ``param_str: "'num_classes': 21"``.
Tops, RPN mode (``cfg.TRAIN.HAS_RPN``, one image per batch): data, im_info (1×3: height, width, scale),
gt_boxes (G×5, scaled, class in column 4; G may be 0).
Tops, Fast R-CNN mode: data, rois (R×5), labels (R), and with ``cfg.TRAIN.BBOX_REG`` bbox_targets,
bbox_inside_weights, bbox_outside_weights (R×4K).
The driver calls ``set_roidb(roidb)`` (a prepared roidb) before the first forward.
"""

import caffe
import numpy as np
import yaml

from fast_rcnn.config import cfg
from roi_data_layer.minibatch import get_minibatch, shuffled_image_order


def _ims_per_batch():
    """Images per minibatch: always 1 when feeding an RPN, else ``cfg.TRAIN.IMS_PER_BATCH``."""
    return 1 if cfg.TRAIN.HAS_RPN else cfg.TRAIN.IMS_PER_BATCH


class RoIDataLayer(caffe.Layer):
    """Serves minibatches in a shuffled order; reshuffles when an epoch cannot fill another batch."""

    def setup(self, bottom, top):
        """Parse param_str, name the tops and give them shapes (refined in every forward)."""
        if cfg.TRAIN.USE_PREFETCH:
            raise ValueError('RoIDataLayer: TRAIN.USE_PREFETCH is not supported; set it to False')
        layer_params = yaml.safe_load(self.param_str)
        self._num_classes = layer_params['num_classes']
        self._roidb = None
        self._perm = None
        self._cur = 0

        max_scale = max(cfg.TRAIN.SCALES)
        if cfg.TRAIN.HAS_RPN:
            shapes = {'data': (1, 3, max_scale, cfg.TRAIN.MAX_SIZE), 'im_info': (1, 3), 'gt_boxes': (1, 5)}
        else:
            shapes = {'data': (_ims_per_batch(), 3, max_scale, cfg.TRAIN.MAX_SIZE),
                      'rois': (1, 5), 'labels': (1,)}
            if cfg.TRAIN.BBOX_REG:
                for name in ('bbox_targets', 'bbox_inside_weights', 'bbox_outside_weights'):
                    shapes[name] = (1, 4 * self._num_classes)
        if len(top) != len(shapes):
            raise ValueError(f'RoIDataLayer: the prototxt has {len(top)} tops, this mode produces '
                             f'{len(shapes)}: {", ".join(shapes)}')
        self._top_names = list(shapes)
        # (top blob vectors support indexing only: no slicing or iteration)
        for i, shape in enumerate(shapes.values()):
            top[i].reshape(*shape)

    def set_roidb(self, roidb):
        """Use ``roidb`` (prepared, with bbox targets in Fast R-CNN mode) and start a shuffled epoch."""
        self._roidb = roidb
        self._shuffle_roidb_inds()

    def get_state(self):
        """The data order's state, to resume training exactly where it stopped.

        Returns a dict of numpy arrays (savable with ``np.savez``): ``perm`` (the epoch's image order),
        ``cursor`` (position in it), and numpy's global RNG state (``rng_keys``, ``rng_pos``,
        ``rng_has_gauss``, ``rng_cached_gaussian``). The global RNG also drives scale choice and RoI/anchor
        sampling, so restoring it continues those draws too.
        """
        if self._perm is None:
            raise RuntimeError('RoIDataLayer.get_state: call set_roidb first')
        _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
        return {'perm': self._perm.copy(), 'cursor': np.array(self._cur),
                'rng_keys': keys.copy(), 'rng_pos': np.array(pos),
                'rng_has_gauss': np.array(has_gauss), 'rng_cached_gaussian': np.array(cached_gaussian)}

    def set_state(self, state):
        """Restore a ``get_state()`` dict (after ``set_roidb`` with the same roidb)."""
        perm = np.asarray(state['perm'], dtype=np.int64)
        if self._roidb is None or perm.shape != (len(self._roidb),):
            raise ValueError('RoIDataLayer.set_state: call set_roidb first, with the roidb the state was '
                             f'saved for ({perm.shape[0]} images)')
        self._perm = perm
        self._cur = int(state['cursor'])
        np.random.set_state(('MT19937', np.asarray(state['rng_keys'], dtype=np.uint32),
                             int(state['rng_pos']), int(state['rng_has_gauss']),
                             float(state['rng_cached_gaussian'])))

    def _shuffle_roidb_inds(self):
        """Draw a new image order and rewind the cursor."""
        self._perm = shuffled_image_order([entry['width'] for entry in self._roidb],
                                          [entry['height'] for entry in self._roidb],
                                          _ims_per_batch(), cfg.TRAIN.ASPECT_GROUPING)
        self._cur = 0

    def _get_next_minibatch_inds(self):
        """Indices of the next batch's images; reshuffles first when the epoch cannot fill a batch."""
        ims_per_batch = _ims_per_batch()
        # The released test (>=) also skips the epoch's last complete batch; '>' uses every full batch.
        if self._cur + ims_per_batch > len(self._roidb):
            self._shuffle_roidb_inds()
        db_inds = self._perm[self._cur:self._cur + ims_per_batch]
        self._cur += ims_per_batch
        return db_inds

    def forward(self, bottom, top):
        """Load the next minibatch into the tops."""
        if self._roidb is None:
            raise RuntimeError('RoIDataLayer: call set_roidb before the first forward')
        db_inds = self._get_next_minibatch_inds()
        blobs = get_minibatch([self._roidb[i] for i in db_inds], self._num_classes)
        for i, name in enumerate(self._top_names):
            values = blobs[name]
            top[i].reshape(*values.shape)
            top[i].data[...] = values

    def backward(self, top, propagate_down, bottom):
        """A data layer has no bottoms to propagate to."""

    def reshape(self, bottom, top):
        """Shapes are set in forward."""
