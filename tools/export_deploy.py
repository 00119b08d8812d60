#!/usr/bin/env python3
"""Export a trained Faster R-CNN for another engine: a deploy prototxt, the weights and their settings.

Writes into ``--out``: ``deploy.prototxt`` (for ``--target opencv`` our Python proposal layer becomes
OpenCV dnn's ``Proposal`` layer carrying the anchor and top-N / NMS settings; for ``--target caffe`` the
test net as it is), ``model.caffemodel`` (the test net's parameters; ``bbox_pred`` is already
unnormalised in our saved models), ``labels.txt``, ``deploy.json`` (class names, pixel means, test scale
and max size, proposal and post-processing settings, what the target cannot express) and ``README.md``.

Settings OpenCV's layer cannot express are refused (anchors it would build differently, the RPN ablation
switches) or reported (``RPN_MIN_SIZE``: OpenCV keeps boxes of any size); ``--strict`` refuses those too.
``--measure IMDB`` runs the imdb through our Caffe with the configured settings and through the exported
net in OpenCV, and records both mAPs and the per-image agreement in deploy.json.

Example (the embedded dataset):
    .venv/bin/python tools/export_deploy.py --cpu --cfg experiments/cfgs/synth.yml --imdb synth_test \\
        --def models/synth/TINY/faster_rcnn_end2end/test.prototxt \\
        --net output/faster_rcnn_end2end/synth_trainval/tiny_faster_rcnn_iter_3000.caffemodel \\
        --out output/deploy/tiny_opencv --measure synth_test
"""

import argparse
import json
import os
import os.path as osp

import cv2

import _init_paths  # noqa: F401
import caffe
from _common import add_common_args, add_net_args, adapt_to_imdb, apply_config, fail, init_caffe, \
    require_imdb, require_net_files
from fast_rcnn import deploy
from fast_rcnn.config import cfg
from fast_rcnn.test import test_net

FILES = {'prototxt': 'deploy.prototxt', 'model': 'model.caffemodel', 'labels': 'labels.txt',
         'readme': 'README.md'}


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_net_args(parser, 'test net definition (with the Python proposal layer)', 'trained model weights')
    parser.add_argument('--imdb', dest='imdb_name', required=True,
                        help='imdb whose class list the model was trained with (e.g. synth_test)')
    parser.add_argument('--out', required=True, help='export directory (created)')
    parser.add_argument('--target', choices=('opencv', 'caffe'), default='opencv', help='engine [opencv]')
    parser.add_argument('--strict', action='store_true',
                        help='refuse settings the target ignores (RPN_MIN_SIZE > 0) instead of reporting '
                             'them')
    parser.add_argument('--measure', metavar='IMDB', default=None,
                        help='evaluate this imdb on our Caffe (configured settings) and on the export '
                             '(OpenCV) and record both mAPs')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """Write the export; returns the manifest dict."""
    args = parse_args(argv)
    apply_config(args)
    require_net_files(args)
    cfg.TEST.HAS_RPN = True
    imdb = require_imdb(args.imdb_name)
    measure_imdb = require_imdb(args.measure) if args.measure else None
    if measure_imdb is not None and args.target != 'opencv':
        fail('--measure compares our Caffe with OpenCV: it needs --target opencv')
    os.makedirs(args.out, exist_ok=True)
    adapted = adapt_to_imdb(args.prototxt, imdb.num_classes, args.out, prefix='caffe_')
    net_param = deploy.read_net_text(adapted)
    try:
        settings = deploy.proposal_settings(net_param, cfg.TEST, args.prototxt)
        refusals, reports = deploy.opencv_limitations(settings) if args.target == 'opencv' else ([], [])
        if refusals or (args.strict and reports):
            fail(f'{args.prototxt}: OpenCV\'s Proposal layer cannot express: '
                 + '; '.join(refusals + reports))
        text = deploy.opencv_deploy_text(net_param, settings, args.prototxt) if args.target == 'opencv' \
            else open(adapted, encoding='utf-8').read()
        outputs = deploy.opencv_output_layers(net_param, args.prototxt) if args.target == 'opencv' else None
    except ValueError as exc:
        fail(str(exc))
    for line in reports:
        print(f'note: {line}', flush=True)

    init_caffe()
    paths = {role: osp.join(args.out, name) for role, name in FILES.items()}
    # Loading the test net checks that the weights fit it; saving keeps exactly its parameters.
    caffe.Net(adapted, caffe.TEST, weights=args.caffemodel).save(paths['model'])
    with open(paths['prototxt'], 'w', encoding='utf-8') as f:
        f.write(text)
    if args.target == 'opencv':
        cv2.dnn.readNetFromCaffe(paths['prototxt'], paths['model'])  # fails here, not at the user's
    with open(paths['labels'], 'w', encoding='utf-8') as f:
        f.write(''.join(f'{name}\n' for name in imdb.classes))
    manifest = deploy.export_manifest(imdb.classes, cfg.TEST, cfg.PIXEL_MEANS, settings, args.target,
                                      FILES, reports, opencv_outputs=outputs,
                                      opencv_fusion=(not deploy.needs_fusion_off(net_param)
                                                     if args.target == 'opencv' else None))
    if measure_imdb is not None:
        manifest['measured'] = measure(adapted, args.caffemodel, paths, measure_imdb)
    with open(osp.join(args.out, deploy.MANIFEST_NAME), 'w', encoding='utf-8') as f:
        json.dump(manifest, f, indent=1)
    with open(paths['readme'], 'w', encoding='utf-8') as f:
        f.write(deploy.readme_text(manifest))
    print(f'Wrote {args.target} export to {args.out}', flush=True)
    return manifest


def measure(caffe_prototxt, caffe_weights, paths, imdb):
    """mAP of ``imdb`` on our Caffe (configured settings) and on the OpenCV export, and their agreement."""
    ours = caffe.Net(caffe_prototxt, caffe.TEST, weights=caffe_weights)
    ours.name = 'caffe_' + osp.splitext(osp.basename(caffe_weights))[0]
    theirs = deploy.OpenCVNet(paths['prototxt'], paths['model'], name='opencv_export')
    max_per_image, thresh = cfg.TEST.MAX_PER_IMAGE, cfg.TEST.SCORE_THRESH
    boxes_ours, map_ours = test_net(ours, imdb, max_per_image=max_per_image, thresh=thresh)
    boxes_theirs, map_theirs = test_net(theirs, imdb, max_per_image=max_per_image, thresh=thresh)
    parity = deploy.parity_summary(boxes_ours, boxes_theirs)
    result = {'imdb': imdb.name, 'mAP_caffe_configured': round(float(map_ours), 4),
              'mAP_opencv_export': round(float(map_theirs), 4),
              'images_top10_iou_ge_0.99': f'{parity["images_ok"]}/{parity["images"]}',
              'detections_caffe': parity['detections_a'], 'detections_opencv': parity['detections_b']}
    print('measured: ' + ', '.join(f'{k} {v}' for k, v in result.items()), flush=True)
    return result


if __name__ == '__main__':
    main()
