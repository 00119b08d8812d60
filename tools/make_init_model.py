#!/usr/bin/env python3
"""Write the initial model of a net that has no ImageNet model (TINY): seeded random, or pre-trained.

The model holds what an ImageNet classifier would contribute to a detector, the shared convs and fc6/fc7,
drawn with He (MSRA) initialisation for ReLU nets (weights N(0, 2 / fan_in), zero biases). The RPN and the
cls_score / bbox_pred layers are left out, so the training nets' own fillers initialise them, as they do
when starting from a real ImageNet model. Both stage-1 nets of the alternating optimisation (and the
end-to-end net) start from this file.

With ``--pretrain-imdb`` (the synth scripts pass ``synth_trainval``) the He-initialised shared convs and
fc6/fc7 are then pre-trained on a classification task, the analogue of ImageNet pre-training: crops of
the training split's ground-truth objects (each box widened by a random context factor, jittered and
resized to a fixed square), labelled with their class, plus random background crops that overlap no
object much, labelled as an extra class. The classification net is the detector's own backbone (same
layer names and shapes: shared convs with BatchNorm + Scale, ``roi_pool5`` over the whole crop, fc6,
fc7) with a throw-away classifier on top, trained with SGD for ``--pretrain-iters`` iterations. Only the
imdb given is read (the scripts give the trainval split, never the test split).

``--out`` is written once, atomically, when everything (pre-training included) has completed: an
interrupted run (a kill, SIGINT / SIGTERM, an error) leaves no model behind, so scripts that reuse an
existing file never pick up a half-made one.
"""

import argparse
import os.path as osp
import shutil
import signal
import sys
import tempfile
import time

import cv2
import numpy as np
from google.protobuf import text_format

import _init_paths  # noqa: F401
import caffe
from caffe.proto import caffe_pb2
from fast_rcnn.config import cfg
from utils.cython_bbox import bbox_overlaps
from utils.fileio import write_bytes_atomic
from utils.image import read_image

# Layers of a detector that an ImageNet classifier does not provide.
DETECTOR_ONLY_PREFIXES = ('rpn', 'cls_score', 'bbox_pred', 'pretrain_')
# Layers drawn here; others (BatchNorm, Scale) keep the values their layer sets up (identity transforms).
WEIGHTED_TYPES = ('Convolution', 'InnerProduct')


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--def', dest='prototxt', required=True,
                        help='a test net of the architecture (e.g. models/synth/TINY/faster_rcnn_alt_opt/'
                             'faster_rcnn_test.pt)')
    parser.add_argument('--out', required=True, help='caffemodel to write')
    parser.add_argument('--seed', type=int, default=cfg.RNG_SEED, help='random seed [cfg.RNG_SEED]')
    parser.add_argument('--pretrain-imdb', default=None,
                        help='pre-train on crops of this imdb (the training split only; default: none, the '
                             'model stays random)')
    parser.add_argument('--pretrain-iters', type=int, default=2000, help='pre-training SGD iterations [2000]')
    parser.add_argument('--crop', type=int, default=96, help='crop side in pixels [96]')
    parser.add_argument('--batch', type=int, default=64, help='crops per iteration [64]')
    return parser.parse_args(argv)


def he_init(net, rng):
    """Fill the conv and fc layers of ``net`` in place: weights N(0, 2/fan_in), biases 0.

    ``fan_in`` is the product of a weight blob's dimensions after the first (inputs × kernel area).
    Layers are filled in net order, so the result depends only on the seed and the architecture.
    """
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type not in WEIGHTED_TYPES:
            continue
        weights = net.params[name][0].data
        fan_in = int(np.prod(weights.shape[1:]))
        weights[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=weights.shape)
        for blob in net.params[name][1:]:
            blob.data[...] = 0


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


def classification_net(test_prototxt, num_classes, batch, crop):
    """Text of a training net: the detector's backbone up to fc7 on ``batch`` crops, then a softmax
    classifier over ``num_classes`` (object classes + background) named ``pretrain_cls``."""
    det = caffe_pb2.NetParameter()
    with open(test_prototxt) as f:
        text_format.Merge(f.read(), det)
    net = caffe_pb2.NetParameter()
    net.name = 'pretrain'
    net.layer.add().CopyFrom(text_format.Parse(
        f'name: "input" type: "Input" top: "data" top: "rois" top: "label" '
        f'input_param {{ shape {{ dim: {batch} dim: 3 dim: {crop} dim: {crop} }} '
        f'shape {{ dim: {batch} dim: 5 }} shape {{ dim: {batch} }} }}', caffe_pb2.LayerParameter()))
    keep = False
    for layer in det.layer:
        if layer.name == 'conv1':
            keep = True
        if not keep:
            continue
        if layer.name.startswith(('rpn', 'proposal')) or layer.type == 'Python':
            continue
        if layer.name in ('cls_score', 'bbox_pred'):
            break
        new = net.layer.add()
        new.CopyFrom(layer)
        for p in new.param:  # every backbone layer learns here
            if p.lr_mult == 0 and new.type != 'BatchNorm':
                p.lr_mult = 1
        if new.type == 'ROIPooling':
            del new.bottom[:]
            new.bottom.extend(['conv5', 'rois'])
    net.layer.add().CopyFrom(text_format.Parse(
        f'name: "pretrain_cls" type: "InnerProduct" bottom: "fc7" top: "pretrain_cls" '
        f'inner_product_param {{ num_output: {num_classes} weight_filler {{ type: "gaussian" std: 0.01 }} }}',
        caffe_pb2.LayerParameter()))
    net.layer.add().CopyFrom(text_format.Parse(
        'name: "pretrain_loss" type: "SoftmaxWithLoss" bottom: "pretrain_cls" bottom: "label" '
        'top: "pretrain_loss"', caffe_pb2.LayerParameter()))
    net.layer.add().CopyFrom(text_format.Parse(
        'name: "pretrain_acc" type: "Accuracy" bottom: "pretrain_cls" bottom: "label" top: "pretrain_acc"',
        caffe_pb2.LayerParameter()))
    return text_format.MessageToString(net)


class CropSampler:
    """Random labelled crops of an imdb's images: ground-truth objects (label = class) with context,
    and background windows (label = num_classes) with IoU < 0.3 with every object."""

    def __init__(self, imdb, crop, rng, bg_fraction=0.25):
        self.crop, self.rng, self.bg_fraction = crop, rng, bg_fraction
        self.bg_label = imdb.num_classes
        roidb = imdb.gt_roidb()
        self.images = [read_image(imdb.image_path_at(i)) for i in range(imdb.num_images)]
        self.boxes = [r['boxes'].astype(np.float64) for r in roidb]
        self.labels = [r['gt_classes'] for r in roidb]
        self.objects = [(i, j) for i, r in enumerate(roidb) for j in range(len(r['gt_classes']))]

    def _resize(self, img, x1, y1, x2, y2, flip):
        """The window (may cross the border: padded with the mean colour) resized to crop x crop."""
        h, w = img.shape[:2]
        x1, y1, x2, y2 = (int(round(v)) for v in (x1, y1, x2, y2))
        pad = max(0, -x1, -y1, x2 - w + 1, y2 - h + 1)
        if pad:
            img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                     value=cfg.PIXEL_MEANS.ravel().tolist())
        win = img[y1 + pad:y2 + pad + 1, x1 + pad:x2 + pad + 1]
        out = cv2.resize(win, (self.crop, self.crop), interpolation=cv2.INTER_LINEAR)
        return out[:, ::-1] if flip else out

    def object_crop(self):
        i, j = self.objects[self.rng.integers(len(self.objects))]
        x1, y1, x2, y2 = self.boxes[i][j]
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        side = max(bw, bh) * self.rng.uniform(1.1, 1.8)  # square window with context
        cx = (x1 + x2) / 2 + self.rng.uniform(-0.1, 0.1) * bw
        cy = (y1 + y2) / 2 + self.rng.uniform(-0.1, 0.1) * bh
        img = self._resize(self.images[i], cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2,
                           self.rng.random() < 0.5)
        return img, self.labels[i][j]

    def background_crop(self):
        for _ in range(50):
            i = self.rng.integers(len(self.images))
            h, w = self.images[i].shape[:2]
            side = self.rng.uniform(20, 0.6 * min(h, w))
            x1, y1 = self.rng.uniform(0, w - side), self.rng.uniform(0, h - side)
            box = np.array([x1, y1, x1 + side - 1, y1 + side - 1])
            if len(self.boxes[i]) == 0 or bbox_overlaps(box[None], self.boxes[i]).max() < 0.3:
                return self._resize(self.images[i], *box, self.rng.random() < 0.5), self.bg_label
        return self.object_crop()

    def batch(self, n):
        """``n`` crops as a (n, 3, crop, crop) float blob (BGR minus the pixel means) and their labels."""
        data = np.empty((n, 3, self.crop, self.crop), np.float32)
        labels = np.empty(n, np.float32)
        for k in range(n):
            use_background = self.rng.random() < self.bg_fraction
            img, label = self.background_crop() if use_background else self.object_crop()
            data[k] = (img.astype(np.float32) - cfg.PIXEL_MEANS.astype(np.float32)).transpose(2, 0, 1)
            labels[k] = label
        return data, labels


def pretrain(args, init_model, work):
    """Classification pre-training of the backbone, starting from ``init_model``: returns the trained net.
    Its net and solver definitions go to the folder ``work``."""
    from datasets.factory import get_imdb
    start = time.time()
    imdb = get_imdb(args.pretrain_imdb)
    rng = np.random.default_rng(args.seed)
    sampler = CropSampler(imdb, args.crop, rng)
    print(f'Pre-training on {len(sampler.objects)} objects of {imdb.name} ({imdb.num_images} images) '
          f'+ background crops, {args.crop} px, batch {args.batch}, {args.pretrain_iters} iterations',
          flush=True)
    net_path = osp.join(work, 'train.pt')
    with open(net_path, 'w') as f:
        f.write(classification_net(args.prototxt, imdb.num_classes + 1, args.batch, args.crop))
    solver_param = caffe_pb2.SolverParameter()
    solver_param.train_net = net_path
    solver_param.base_lr = 0.02
    solver_param.lr_policy = 'step'
    solver_param.gamma = 0.1
    solver_param.stepsize = max(1, args.pretrain_iters * 3 // 4)
    solver_param.momentum = 0.9
    solver_param.weight_decay = 0.0005
    solver_param.clip_gradients = 10.0
    solver_param.max_iter = args.pretrain_iters
    solver_param.display = 0
    solver_param.snapshot = 0
    solver_param.snapshot_prefix = osp.join(work, 'pretrain')
    solver_path = osp.join(work, 'solver.pt')
    with open(solver_path, 'w') as f:
        f.write(text_format.MessageToString(solver_param))
    solver = caffe.SGDSolver(solver_path)
    solver.net.copy_from(init_model)
    net = solver.net
    net.blobs['rois'].data[...] = [[k, 0, 0, args.crop - 1, args.crop - 1] for k in range(args.batch)]
    losses, accs = [], []
    for it in range(1, args.pretrain_iters + 1):
        data, labels = sampler.batch(args.batch)
        net.blobs['data'].data[...] = data
        net.blobs['label'].data[...] = labels
        solver.step(1)
        losses.append(float(net.blobs['pretrain_loss'].data))
        accs.append(float(net.blobs['pretrain_acc'].data))
        if it % 50 == 0 or it == args.pretrain_iters:
            print(f'pretrain iter {it}: loss {np.mean(losses[-50:]):.3f}, accuracy {np.mean(accs[-50:]):.3f} '
                  f'({time.time() - start:.0f} s)', flush=True)
    print(f'Pre-training took {time.time() - start:.1f} s', flush=True)
    return net


def main(argv=None):
    """Write the initial model (only once it is complete; see module doc)."""
    args = parse_args(argv)
    # SIGTERM unwinds like an error (SystemExit), so the scratch folder is removed and --out never written.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    caffe.set_mode_cpu()
    net = caffe.Net(args.prototxt, caffe.TEST)
    he_init(net, np.random.default_rng(args.seed))
    work = tempfile.mkdtemp(prefix='init_model_')
    try:
        model = osp.join(work, 'he_init.caffemodel')
        net.save(model)
        if args.pretrain_imdb:
            trained = osp.join(work, 'pretrained.caffemodel')
            pretrain(args, model, work).save(trained)
            model = trained
        layers = drop_layers(model, args.out, DETECTOR_ONLY_PREFIXES)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f'Wrote {args.out} (seed {args.seed}; pre-trained on {args.pretrain_imdb or "nothing"}; '
          f'layers {", ".join(layers)})', flush=True)


if __name__ == '__main__':
    main()
