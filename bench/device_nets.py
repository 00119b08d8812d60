#!/usr/bin/env python3
"""Derive the Python-free nets the device check times (Table 4 of the paper), from our end-to-end nets.

    .venv/bin/python bench/device_nets.py OUT_DIR      (needs pycaffe: run `make` first)

For ZF and VGG-16 (models/pascal_voc/<NET>/faster_rcnn_end2end/), writes to OUT_DIR:
  <net>_conv.prototxt    test net up to the proposal layer: shared convs + RPN head, at 600x1000
  <net>_region.prototxt  test net after the proposal layer: RoI pooling ... cls_prob / bbox_pred, with the
                         conv feature map and ROIS_PER_IMAGE RoIs as inputs
  <net>_train.prototxt   the end-to-end train net with its Python layers (data, anchor targets, proposals,
                         proposal targets) replaced by Input blobs of the shapes those layers give
  nets.json              per net: file, phase, and which layers form the RPN head (to split the conv time)
The device's `caffe` has no Python layer, so the Python steps are timed apart (bench/device_check.py).
Input blobs are zero-filled by Caffe: timing does not depend on the values, except RoI pooling's bin sizes.
Each net is built with pycaffe here (CPU) so a net that Caffe would reject never reaches the device.
"""

import json
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
NETS = {'zf': 'ZF', 'vgg16': 'VGG16'}
# The paper's Table 4 setting: one 600x1000 image (short side 600, long side 1000), 300 proposals.
IMAGE_SHAPE = (1, 3, 600, 1000)
ROIS_PER_IMAGE = 300


def _pb():
    """caffe_pb2 and text_format (imported late: the module's docstring and paths work without Caffe)."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    return caffe_pb2, text_format


def read_net(path):
    """NetParameter of a prototxt file."""
    caffe_pb2, text_format = _pb()
    net = caffe_pb2.NetParameter()
    with open(path) as f:
        text_format.Merge(f.read(), net)
    return net


def input_layer(name, shapes):
    """An Input layer with one top per ``(blob, shape)`` of ``shapes``."""
    caffe_pb2, _ = _pb()
    layer = caffe_pb2.LayerParameter(name=name, type='Input')
    for blob, shape in shapes:
        layer.top.append(blob)
        layer.input_param.shape.add().dim.extend(int(d) for d in shape)
    return layer


def _new_net(src, suffix, inputs):
    """A NetParameter named after ``src`` with an Input layer for ``inputs`` and no layers yet."""
    caffe_pb2, _ = _pb()
    net = caffe_pb2.NetParameter(name=f'{src.name}_{suffix}')
    net.layer.append(input_layer('input', inputs))
    return net


def _copy_available(src_layers, net, available):
    """Append each non-Python layer of ``src_layers`` whose bottoms are all ``available``; return names."""
    kept = []
    for layer in src_layers:
        if layer.type == 'Python' or not set(layer.bottom) <= available:
            continue
        net.layer.add().CopyFrom(layer)
        available.update(layer.top)
        kept.append(layer.name)
    return kept


def _proposal_index(test_net):
    """Index of the test net's one Python layer (the proposal layer) among its layers."""
    python = [i for i, layer in enumerate(test_net.layer) if layer.type == 'Python']
    if len(python) != 1:
        raise ValueError(f'{test_net.name}: expected one Python (proposal) layer in the test net, found '
                         f'{len(python)}')
    return python[0]


def conv_net(test_net, image_shape=IMAGE_SHAPE):
    """Shared convs + RPN head of ``test_net``: every layer computable from ``data`` alone."""
    net = _new_net(test_net, 'conv', [('data', image_shape)])
    kept = _copy_available(test_net.layer[:_proposal_index(test_net)], net, {'data'})
    if not kept:
        raise ValueError(f'{test_net.name}: no layer computes from data')
    return net


def region_net(test_net, feature_blob, feature_shape, num_rois=ROIS_PER_IMAGE):
    """The layers after the proposal layer, fed by ``feature_blob`` and ``num_rois`` RoIs (R x 5)."""
    net = _new_net(test_net, 'region', [(feature_blob, feature_shape), ('rois', (num_rois, 5))])
    kept = _copy_available(test_net.layer[_proposal_index(test_net) + 1:], net, {feature_blob, 'rois'})
    if not kept:
        raise ValueError(f'{test_net.name}: nothing after the proposal layer uses {feature_blob} and rois')
    return net


def train_net(train, top_shapes):
    """``train`` with its Python layers replaced by Input layers; ``top_shapes``: blob -> shape.

    Only the tops some non-Python layer consumes become inputs (gt_boxes, im_info and rpn_rois only feed
    Python layers). Raises ValueError when a needed top has no shape in ``top_shapes``.
    """
    consumed = {b for layer in train.layer if layer.type != 'Python' for b in layer.bottom}
    caffe_pb2, _ = _pb()
    net = caffe_pb2.NetParameter(name=f'{train.name}_train_no_python')
    for layer in train.layer:
        if layer.type != 'Python':
            net.layer.add().CopyFrom(layer)
            continue
        tops = [t for t in layer.top if t in consumed]
        missing = [t for t in tops if t not in top_shapes]
        if missing:
            raise ValueError(f'{train.name}: no shape for {missing} (tops of Python layer {layer.name})')
        if tops:
            net.layer.append(input_layer(f'input_{layer.name}', [(t, top_shapes[t]) for t in tops]))
    return net


def conv_layer(net, name):
    """The LayerParameter called ``name``; ValueError when absent."""
    for layer in net.layer:
        if layer.name == name:
            return layer
    raise ValueError(f'{net.name}: no layer {name}')


def train_top_shapes(train, feature_height, feature_width, image_shape=IMAGE_SHAPE):
    """Shapes our Python layers give their tops for one image of ``image_shape`` (lib/rpn, roi_data_layer)."""
    from fast_rcnn.config import cfg
    anchors = conv_layer(train, 'rpn_cls_score').convolution_param.num_output // 2
    classes = conv_layer(train, 'cls_score').inner_product_param.num_output
    rois = cfg.TRAIN.BATCH_SIZE
    rpn_box = (1, 4 * anchors, feature_height, feature_width)
    return {
        'data': image_shape, 'im_info': (1, 3), 'gt_boxes': (1, 5),
        'rpn_labels': (1, 1, anchors * feature_height, feature_width),
        'rpn_bbox_targets': rpn_box, 'rpn_bbox_inside_weights': rpn_box, 'rpn_bbox_outside_weights': rpn_box,
        'rois': (rois, 5), 'labels': (rois,), 'bbox_targets': (rois, 4 * classes),
        'bbox_inside_weights': (rois, 4 * classes), 'bbox_outside_weights': (rois, 4 * classes),
    }


def write_net(net, path):
    """Write ``net`` as prototxt with a provenance header."""
    _, text_format = _pb()
    with open(path, 'w') as f:
        f.write('# Derived by bench/device_nets.py from models/pascal_voc: regenerate, do not edit.\n')
        f.write(text_format.MessageToString(net))


def build(path, phase):
    """A pycaffe Net of ``path`` (CPU), which checks the net is valid and gives every blob's shape."""
    import caffe
    caffe.set_mode_cpu()
    return caffe.Net(path, phase)


def derive_all(out_dir, nets=NETS, image_shape=IMAGE_SHAPE, num_rois=ROIS_PER_IMAGE):
    """Write every derived net of ``nets`` (key -> models/pascal_voc dir) to ``out_dir``; return nets.json."""
    import caffe
    os.makedirs(out_dir, exist_ok=True)
    description = {'image_shape': list(image_shape), 'rois_per_image': num_rois, 'nets': {}}
    for key, dirname in nets.items():
        src = osp.join(REPO, 'models', 'pascal_voc', dirname, 'faster_rcnn_end2end')
        test = read_net(osp.join(src, 'test.prototxt'))
        train = read_net(osp.join(src, 'train.prototxt'))
        feature_blob = conv_layer(test, 'rpn_conv/3x3').bottom[0]

        conv = conv_net(test, image_shape)
        conv_path = osp.join(out_dir, f'{key}_conv.prototxt')
        write_net(conv, conv_path)
        feature_shape = build(conv_path, caffe.TEST).blobs[feature_blob].data.shape

        region = region_net(test, feature_blob, feature_shape, num_rois)
        region_path = osp.join(out_dir, f'{key}_region.prototxt')
        write_net(region, region_path)
        build(region_path, caffe.TEST)

        shapes = train_top_shapes(train, feature_shape[2], feature_shape[3], image_shape)
        train_path = osp.join(out_dir, f'{key}_train.prototxt')
        write_net(train_net(train, shapes), train_path)
        build(train_path, caffe.TRAIN)

        rpn = [layer.name for layer in conv.layer if layer.name.startswith('rpn')]
        description['nets'][key] = {
            'feature_blob': feature_blob, 'feature_shape': list(feature_shape),
            'conv': {'file': osp.basename(conv_path), 'phase': 'TEST', 'rpn_layers': rpn},
            'region': {'file': osp.basename(region_path), 'phase': 'TEST'},
            'train': {'file': osp.basename(train_path), 'phase': 'TRAIN'},
        }
        print(f'{key}: conv {len(conv.layer)} layers (feature {feature_blob} {tuple(feature_shape)}), '
              f'region {len(region.layer)} layers, train {len(train.layer)} -> '
              f'{sum(1 for _ in read_net(train_path).layer)} layers')
    with open(osp.join(out_dir, 'nets.json'), 'w') as f:
        json.dump(description, f, indent=1, sort_keys=True)
    return description


def main(argv):
    """Command-line entry point."""
    if len(argv) != 1:
        sys.exit(__doc__)
    os.environ.setdefault('GLOG_minloglevel', '2')
    sys.path.insert(0, osp.join(REPO, 'lib'))
    derive_all(argv[0])


if __name__ == '__main__':
    main(sys.argv[1:])
