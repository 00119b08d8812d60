#!/usr/bin/env python3
"""Write a seeded random initial model: the stand-in for an ImageNet model when there is none (TINY).

The model holds what an ImageNet classifier would contribute to a detector, the shared convs and fc6/fc7,
drawn with He (MSRA) initialisation for ReLU nets (weights N(0, 2 / fan_in), zero biases). The RPN and the
cls_score / bbox_pred layers are left out, so the training nets' own fillers initialise them, as they do
when starting from a real ImageNet model. Both stage-1 nets of the alternating optimisation (and the
end-to-end net) start from this file.
"""

import argparse
import os
import os.path as osp

import numpy as np

import _init_paths  # noqa: F401
import caffe
from caffe.proto import caffe_pb2
from fast_rcnn.config import cfg

# Layers of a detector that an ImageNet classifier does not provide.
DETECTOR_ONLY_PREFIXES = ('rpn', 'cls_score', 'bbox_pred')
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


def drop_layers(model_path, prefixes):
    """Rewrite the caffemodel at ``model_path`` without the layers whose names start with ``prefixes``."""
    model = caffe_pb2.NetParameter()
    with open(model_path, 'rb') as f:
        model.ParseFromString(f.read())
    kept = [layer for layer in model.layer if not layer.name.startswith(prefixes)]
    del model.layer[:]
    model.layer.extend(kept)
    with open(model_path, 'wb') as f:
        f.write(model.SerializeToString())
    return [layer.name for layer in kept if layer.blobs]


def main(argv=None):
    """Write the initial model."""
    args = parse_args(argv)
    caffe.set_mode_cpu()
    net = caffe.Net(args.prototxt, caffe.TEST)
    he_init(net, np.random.default_rng(args.seed))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    net.save(args.out)
    layers = drop_layers(args.out, DETECTOR_ONLY_PREFIXES)
    print(f'Wrote {args.out} (seed {args.seed}; layers {", ".join(layers)})', flush=True)


if __name__ == '__main__':
    main()
