"""The initial model of a net that has no ImageNet model (TINY): seeded random, or pre-trained.

The model holds what an ImageNet classifier would contribute to a detector, the shared convs and fc6/fc7,
drawn with He (MSRA) initialisation for ReLU nets (weights N(0, 2 / fan_in), zero biases). The RPN and the
cls_score / bbox_pred layers are left out, so the training nets' own fillers initialise them, as they do
when starting from a real ImageNet model. Both stage-1 nets of the alternating optimisation (and the
end-to-end net) start from this file.

Pre-training (``write_init_model(..., pretrain_imdb=...)``; the synth scripts give ``synth_trainval``) is
the analogue of ImageNet pre-training: the He-initialised shared convs and fc6/fc7 learn a classification
task on crops of the training split's ground-truth objects (each box widened by a random context factor,
jittered and resized to a fixed square), labelled with their class, plus random background crops that
overlap no object much, labelled as an extra class. The classification net is the detector's own backbone
(same layer names and shapes: shared convs with BatchNorm + Scale, ``roi_pool5`` over the whole crop,
fc6, fc7) with a throw-away classifier on top, trained with SGD. Only the imdb given is read. Given the
seed, the result is the same on every run (numpy and Caffe are both seeded).

Boxes are ``[x1, y1, x2, y2]``, 0-based, pixel-inclusive.
"""

import dataclasses
import os.path as osp
import shutil
import tempfile
import time

import cv2
import numpy as np
from google.protobuf import text_format

import caffe
from caffe.proto import caffe_pb2
from fast_rcnn.models import BBOX_PRED_LAYER, CLS_SCORE_LAYER, RPN_LAYER_PREFIX, read_net, write_message
from utils.cython_bbox import bbox_overlaps
from utils.fileio import write_bytes_atomic
from utils.image import read_image

# The throw-away classifier's layers are named with this prefix (and dropped with the detector's head).
PRETRAIN_PREFIX = 'pretrain_'
# Layers of a detector that an ImageNet classifier does not provide.
DETECTOR_ONLY_PREFIXES = (RPN_LAYER_PREFIX, CLS_SCORE_LAYER, BBOX_PRED_LAYER, PRETRAIN_PREFIX)
# Layers drawn here; others (BatchNorm, Scale) keep the values their layer sets up (identity transforms).
WEIGHTED_TYPES = ('Convolution', 'InnerProduct')
# A background crop overlaps every object with IoU below this.
BACKGROUND_MAX_IOU = 0.3
# Tries for a background window before an object crop is taken instead (crowded images).
BACKGROUND_TRIES = 50


@dataclasses.dataclass(frozen=True)
class PretrainSettings:
    """Pre-training: ``iters`` SGD iterations of ``batch`` crops of ``crop`` × ``crop`` pixels, a
    ``bg_fraction`` share of them background; step policy (×0.1 after three quarters of the iterations)."""
    iters: int = 2000
    crop: int = 96
    batch: int = 64
    bg_fraction: float = 0.25
    base_lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 0.0005
    clip_gradients: float = 10.0


def he_init(net, rng):
    """Fill the conv and fc layers of ``net`` in place: weights N(0, 2/fan_in), biases 0.

    ``fan_in`` is the product of a weight blob's dimensions after the first (inputs × kernel area).
    Layers are filled in net order, so the result depends only on ``rng``'s seed and the architecture.
    """
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type not in WEIGHTED_TYPES:
            continue
        weights = net.params[name][0].data
        fan_in = int(np.prod(weights.shape[1:]))
        weights[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=weights.shape)
        for blob in net.params[name][1:]:
            blob.data[...] = 0


def scale_to_unit_input(net, data):
    """Divide the first conv's weights of pycaffe ``net`` by the standard deviation of the input blob
    ``data``: He weights assume unit-variance inputs (without this a random net's objectness saturates)."""
    first = next(name for name, layer in zip(net._layer_names, net.layers) if layer.type == 'Convolution')
    net.params[first][0].data[...] /= float(data.std())


def drop_layers(src, dst, prefixes):
    """Write to ``dst`` (atomically) the caffemodel ``src`` without the layers whose names start with
    ``prefixes``; return the names of the kept layers that hold parameters."""
    model = caffe_pb2.NetParameter()
    with open(src, 'rb') as f:
        model.ParseFromString(f.read())
    kept = [layer for layer in model.layer if not layer.name.startswith(prefixes)]
    del model.layer[:]
    model.layer.extend(kept)
    write_bytes_atomic(dst, model.SerializeToString())
    return [layer.name for layer in kept if layer.blobs]


def _layer(text):
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def classification_net(detector, num_classes, batch, crop):
    """A training NetParameter: the backbone of the ``detector`` test net (a NetParameter) from ``conv1``
    to ``fc7``, on ``batch`` crops of ``crop`` × ``crop`` pixels (inputs ``data``, ``rois`` and ``label``),
    then a softmax classifier over ``num_classes`` (object classes + background), ``pretrain_cls``.
    Every backbone layer learns (the detector's frozen early convs too); RoI pooling reads ``conv5``."""
    net = caffe_pb2.NetParameter()
    net.name = 'pretrain'
    net.layer.add().CopyFrom(_layer(
        f'name: "input" type: "Input" top: "data" top: "rois" top: "label" '
        f'input_param {{ shape {{ dim: {batch} dim: 3 dim: {crop} dim: {crop} }} '
        f'shape {{ dim: {batch} dim: 5 }} shape {{ dim: {batch} }} }}'))
    keep = False
    for layer in detector.layer:
        keep = keep or layer.name == 'conv1'
        if not keep or layer.name.startswith((RPN_LAYER_PREFIX, 'proposal')) or layer.type == 'Python':
            continue
        if layer.name in (CLS_SCORE_LAYER, BBOX_PRED_LAYER):
            break
        new = net.layer.add()
        new.CopyFrom(layer)
        for p in new.param:
            if p.lr_mult == 0 and new.type != 'BatchNorm':
                p.lr_mult = 1
        if new.type == 'ROIPooling':
            del new.bottom[:]
            new.bottom.extend(['conv5', 'rois'])
    net.layer.add().CopyFrom(_layer(
        f'name: "{PRETRAIN_PREFIX}cls" type: "InnerProduct" bottom: "fc7" '
        f'top: "{PRETRAIN_PREFIX}cls" inner_product_param {{ num_output: {num_classes} '
        'weight_filler { type: "gaussian" std: 0.01 } }'))
    net.layer.add().CopyFrom(_layer(
        f'name: "{PRETRAIN_PREFIX}loss" type: "SoftmaxWithLoss" bottom: "{PRETRAIN_PREFIX}cls" '
        f'bottom: "label" top: "{PRETRAIN_PREFIX}loss"'))
    net.layer.add().CopyFrom(_layer(
        f'name: "{PRETRAIN_PREFIX}acc" type: "Accuracy" bottom: "{PRETRAIN_PREFIX}cls" bottom: "label" '
        f'top: "{PRETRAIN_PREFIX}acc"'))
    return net


def pretrain_solver(train_net, settings, snapshot_prefix):
    """The SolverParameter of a pre-training run of ``train_net`` (a path) with ``settings``."""
    solver = caffe_pb2.SolverParameter()
    solver.train_net = train_net
    solver.base_lr = settings.base_lr
    solver.lr_policy = 'step'
    solver.gamma = 0.1
    solver.stepsize = max(1, settings.iters * 3 // 4)
    solver.momentum = settings.momentum
    solver.weight_decay = settings.weight_decay
    solver.clip_gradients = settings.clip_gradients
    solver.max_iter = settings.iters
    solver.display = 0
    solver.snapshot = 0
    solver.snapshot_prefix = snapshot_prefix
    return solver


class CropSampler:
    """Random labelled crops of an imdb's images: ground-truth objects (label = class) with context,
    and background windows (label = ``imdb.num_classes``) with IoU < ``BACKGROUND_MAX_IOU`` with every
    object. ``pixel_means``: the BGR means subtracted from each crop (``cfg.PIXEL_MEANS``)."""

    def __init__(self, imdb, crop, rng, pixel_means, bg_fraction=0.25):
        self.crop, self.rng, self.bg_fraction = crop, rng, bg_fraction
        self.pixel_means = np.asarray(pixel_means, dtype=np.float64).reshape(1, 1, 3)
        self.bg_label = imdb.num_classes
        roidb = imdb.gt_roidb()
        self.images = [read_image(imdb.image_path_at(i)) for i in range(imdb.num_images)]
        self.boxes = [r['boxes'].astype(np.float64) for r in roidb]
        self.labels = [r['gt_classes'] for r in roidb]
        self.objects = [(i, j) for i, r in enumerate(roidb) for j in range(len(r['gt_classes']))]
        if not self.objects:
            raise ValueError(f'{imdb.name}: no objects to pre-train on')

    def _resize(self, img, x1, y1, x2, y2, flip):
        """The window (may cross the border: padded with the mean colour) resized to crop × crop."""
        h, w = img.shape[:2]
        x1, y1, x2, y2 = (int(round(v)) for v in (x1, y1, x2, y2))
        pad = max(0, -x1, -y1, x2 - w + 1, y2 - h + 1)
        if pad:
            img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                     value=self.pixel_means.ravel().tolist())
        win = img[y1 + pad:y2 + pad + 1, x1 + pad:x2 + pad + 1]
        out = cv2.resize(win, (self.crop, self.crop), interpolation=cv2.INTER_LINEAR)
        return out[:, ::-1] if flip else out

    def object_crop(self):
        """An object's square window with 1.1-1.8× context and ±10 % centre jitter, randomly flipped."""
        i, j = self.objects[self.rng.integers(len(self.objects))]
        x1, y1, x2, y2 = self.boxes[i][j]
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        side = max(bw, bh) * self.rng.uniform(1.1, 1.8)
        cx = (x1 + x2) / 2 + self.rng.uniform(-0.1, 0.1) * bw
        cy = (y1 + y2) / 2 + self.rng.uniform(-0.1, 0.1) * bh
        img = self._resize(self.images[i], cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2,
                           self.rng.random() < 0.5)
        return img, self.labels[i][j]

    def background_crop(self):
        """A square window of 20 px to 0.6 × the shorter side overlapping no object much."""
        for _ in range(BACKGROUND_TRIES):
            i = self.rng.integers(len(self.images))
            h, w = self.images[i].shape[:2]
            side = self.rng.uniform(20, 0.6 * min(h, w))
            x1, y1 = self.rng.uniform(0, w - side), self.rng.uniform(0, h - side)
            box = np.array([x1, y1, x1 + side - 1, y1 + side - 1])
            if len(self.boxes[i]) == 0 or bbox_overlaps(box[None], self.boxes[i]).max() < BACKGROUND_MAX_IOU:
                return self._resize(self.images[i], *box, self.rng.random() < 0.5), self.bg_label
        return self.object_crop()

    def batch(self, n):
        """``n`` crops as an n×3×crop×crop float32 blob (BGR minus the pixel means) and n float32 labels."""
        data = np.empty((n, 3, self.crop, self.crop), np.float32)
        labels = np.empty(n, np.float32)
        means = self.pixel_means.astype(np.float32)
        for k in range(n):
            use_background = self.rng.random() < self.bg_fraction
            img, label = self.background_crop() if use_background else self.object_crop()
            data[k] = (img.astype(np.float32) - means).transpose(2, 0, 1)
            labels[k] = label
        return data, labels


def pretrain(imdb, detector_prototxt, init_model, work, settings, seed, pixel_means):
    """Classification pre-training of the backbone of ``detector_prototxt`` on crops of ``imdb``, starting
    from the caffemodel ``init_model``; the net and solver definitions go to the folder ``work``. Returns
    the trained Caffe net (its solver's)."""
    start = time.time()
    sampler = CropSampler(imdb, settings.crop, np.random.default_rng(seed), pixel_means, settings.bg_fraction)
    print(f'Pre-training on {len(sampler.objects)} objects of {imdb.name} ({imdb.num_images} images) '
          f'+ background crops, {settings.crop} px, batch {settings.batch}, {settings.iters} iterations',
          flush=True)
    net_path, solver_path = osp.join(work, 'train.pt'), osp.join(work, 'solver.pt')
    write_message(classification_net(read_net(detector_prototxt), imdb.num_classes + 1, settings.batch,
                                     settings.crop), net_path)
    write_message(pretrain_solver(net_path, settings, osp.join(work, 'pretrain')), solver_path)
    # The classifier's Gaussian filler draws from Caffe's generator: seeded, the run is repeatable.
    caffe.set_random_seed(seed)
    solver = caffe.SGDSolver(solver_path)
    solver.net.copy_from(init_model)
    net = solver.net
    net.blobs['rois'].data[...] = [[k, 0, 0, settings.crop - 1, settings.crop - 1]
                                   for k in range(settings.batch)]
    losses, accs = [], []
    for it in range(1, settings.iters + 1):
        data, labels = sampler.batch(settings.batch)
        net.blobs['data'].data[...] = data
        net.blobs['label'].data[...] = labels
        solver.step(1)
        losses.append(float(net.blobs[f'{PRETRAIN_PREFIX}loss'].data))
        accs.append(float(net.blobs[f'{PRETRAIN_PREFIX}acc'].data))
        if it % 50 == 0 or it == settings.iters:
            print(f'pretrain iter {it}: loss {np.mean(losses[-50:]):.3f}, accuracy {np.mean(accs[-50:]):.3f} '
                  f'({time.time() - start:.0f} s)', flush=True)
    print(f'Pre-training took {time.time() - start:.1f} s', flush=True)
    return net


def write_init_model(prototxt, out, seed, pixel_means, pretrain_imdb=None, settings=PretrainSettings()):
    """Write the initial model of the test net ``prototxt`` to ``out``: He-initialised with ``seed``, then
    pre-trained on ``pretrain_imdb`` (an imdb) when given, without the detector-only layers.

    ``out`` is written once, atomically, when everything has completed: an interrupted run (a kill, an
    error) leaves no model behind, so callers that reuse an existing file never pick up a half-made one.
    Returns the names of the layers with parameters that ``out`` holds.
    """
    caffe.set_mode_cpu()
    net = caffe.Net(prototxt, caffe.TEST)
    he_init(net, np.random.default_rng(seed))
    work = tempfile.mkdtemp(prefix='init_model_')
    try:
        model = osp.join(work, 'he_init.caffemodel')
        net.save(model)
        if pretrain_imdb is not None:
            trained = osp.join(work, 'pretrained.caffemodel')
            pretrain(pretrain_imdb, prototxt, model, work, settings, seed, pixel_means).save(trained)
            model = trained
        return drop_layers(model, out, DETECTOR_ONLY_PREFIXES)
    finally:
        shutil.rmtree(work, ignore_errors=True)
