"""fast_rcnn.weights: caffemodels and solver states checked against a net before Caffe reads them.

The files are built with caffe_pb2 directly; the "net" is its parameter shapes, as ``net_shapes`` returns.
"""

from collections import OrderedDict

import numpy as np
import pytest

caffe_pb2 = pytest.importorskip('caffe.proto.caffe_pb2')

from fast_rcnn.weights import WeightsError, check_model, check_solverstate  # noqa: E402

NET = OrderedDict([('data', []), ('conv1', [(4, 3, 3, 3), (4,)]), ('relu1', []),
                   ('fc6', [(10, 36), (10,)]), ('cls_score', [(3, 10), (3,)])])


def blob(shape, legacy=False, fill=0.5, count=None):
    b = caffe_pb2.BlobProto()
    if legacy:
        padded = (1,) * (4 - len(shape)) + tuple(shape)
        b.num, b.channels, b.height, b.width = padded
    else:
        b.shape.dim.extend(shape)
    n = int(np.prod(shape)) if count is None else count
    b.data.extend([fill] * n)
    return b


def model(layers, legacy=False):
    """A NetParameter with ``layers``: {name: [shapes]}."""
    net = caffe_pb2.NetParameter()
    net.name = 'test'
    for name, shapes in layers.items():
        layer = net.layers.add() if legacy else net.layer.add()
        layer.name = name
        if not legacy:
            layer.type = 'InnerProduct'
        layer.blobs.extend([blob(s, legacy) for s in shapes])
    return net


def write(path, message):
    path.write_bytes(message.SerializeToString())
    return str(path)


def test_a_complete_model_reports_matched_layers(tmp_path):
    path = write(tmp_path / 'full.caffemodel', model({k: v for k, v in NET.items() if v}))
    report = check_model(path, NET, require_all=True)
    assert (report.matched, report.skipped, report.ignored) == (['conv1', 'fc6', 'cls_score'], [], [])


def test_fresh_heads_are_skipped_in_training_and_an_error_at_test_time(tmp_path):
    # An ImageNet-style model: backbone + its own classifier (fc8), no cls_score.
    path = write(tmp_path / 'imagenet.caffemodel', model({'conv1': NET['conv1'], 'fc6': NET['fc6'],
                                                          'fc8': [(1000, 10), (1000,)]}))
    report = check_model(path, NET)
    assert (report.matched, report.skipped, report.ignored) == (['conv1', 'fc6'], ['cls_score'], ['fc8'])
    assert 'left at their fillers: cls_score' in report.summary()
    with pytest.raises(WeightsError, match=f'{path} lacks layers cls_score of the net'):
        check_model(path, NET, require_all=True)


def test_legacy_v1_shapes_compare_like_caffe(tmp_path):
    path = write(tmp_path / 'v1.caffemodel', model({k: v for k, v in NET.items() if v}, legacy=True))
    assert check_model(path, NET, require_all=True).matched == ['conv1', 'fc6', 'cls_score']


def test_empty_file(tmp_path):
    path = tmp_path / 'empty.caffemodel'
    path.write_bytes(b'')
    with pytest.raises(WeightsError, match=f'^model {path}: the file is empty'):
        check_model(str(path), NET)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(WeightsError, match='file not found'):
        check_model(str(tmp_path / 'nope.caffemodel'), NET)
    with pytest.raises(WeightsError, match='not a regular file'):
        check_model(str(tmp_path), NET)


def test_every_truncation_is_refused(tmp_path):
    data = model({k: v for k, v in NET.items() if v}).SerializeToString()
    path = tmp_path / 'cut.caffemodel'
    for cut in range(1, len(data), 7):
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError, match=str(path)):
            check_model(str(path), NET, require_all=True)


def test_a_blob_short_of_its_shape_is_truncation(tmp_path):
    net = model({'conv1': NET['conv1']})
    del net.layer[0].blobs[0].data[-5:]
    path = write(tmp_path / 'short.caffemodel', net)
    with pytest.raises(WeightsError, match=r"layer 'conv1' blob 0 holds 103 values for shape \[4, 3, 3, 3\]"):
        check_model(path, NET)


def test_text_and_garbage_are_unparsable(tmp_path):
    text = tmp_path / 'net.prototxt'
    text.write_text('name: "ZF"\nlayer { name: "conv1" type: "Convolution" }\n')
    with pytest.raises(WeightsError, match='cannot be parsed as a binary NetParameter .*a prototxt'):
        check_model(str(text), NET)
    junk = tmp_path / 'junk.caffemodel'
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(WeightsError, match=str(junk)):
        check_model(str(junk), NET)


def test_a_model_of_another_net_shares_no_layer(tmp_path):
    path = write(tmp_path / 'other.caffemodel', model({'conv1_1': [(64, 3, 3, 3), (64,)]}))
    with pytest.raises(WeightsError, match=f'{path} shares no parameter layer with the net .*conv1_1'):
        check_model(path, NET)


def test_shape_mismatches_are_named_by_layer(tmp_path):
    path = write(tmp_path / 'mismatch.caffemodel',
                 model({'conv1': [(8, 3, 3, 3), (8,)], 'fc6': NET['fc6'], 'cls_score': [(21, 10), (21,)]}))
    with pytest.raises(WeightsError) as info:
        check_model(path, NET)
    message = str(info.value)
    assert "layer 'conv1' shape mismatch (blob 0: file [8, 3, 3, 3], net [4, 3, 3, 3]; blob 1" in message
    assert "layer 'cls_score' shape mismatch" in message and 'fc6' not in message
    blobs = write(tmp_path / 'blobs.caffemodel', model({'conv1': [(4, 3, 3, 3)], 'fc6': NET['fc6']}))
    with pytest.raises(WeightsError, match="layer 'conv1' has 1 parameter blobs in the file, 2 in the net"):
        check_model(blobs, NET)


def solverstate(learned_net, shapes, iteration=6):
    state = caffe_pb2.SolverState()
    state.iter = iteration
    state.learned_net = learned_net
    state.history.extend([blob(s, fill=0.0) for s in shapes])
    return state


HISTORY = [s for shapes in NET.values() for s in shapes]


def test_a_matching_solverstate_passes(tmp_path):
    learned = write(tmp_path / 'train_iter_6.caffemodel', model({k: v for k, v in NET.items() if v}))
    path = write(tmp_path / 'train_iter_6.solverstate', solverstate(learned, HISTORY))
    assert check_solverstate(path, NET, HISTORY, iteration=6).iter == 6
    with pytest.raises(WeightsError, match='is at iteration 6, expected 9'):
        check_solverstate(path, NET, HISTORY, iteration=9)
    with pytest.raises(WeightsError, match='holds 6 history blobs, the net\'s Adam solver needs 12'):
        check_solverstate(path, NET, HISTORY, solver_type='Adam')


def test_bad_solverstates_are_refused_before_restore(tmp_path):
    learned = write(tmp_path / 'train_iter_6.caffemodel', model({k: v for k, v in NET.items() if v}))
    good = solverstate(learned, HISTORY).SerializeToString()
    path = tmp_path / 'train_iter_6.solverstate'
    path.write_bytes(b'')
    with pytest.raises(WeightsError, match='solver state .*: the file is empty'):
        check_solverstate(str(path), NET, HISTORY)
    path.write_bytes(good[:len(good) // 2])
    with pytest.raises(WeightsError, match=f'solver state {path}: cannot be parsed'):
        check_solverstate(str(path), NET, HISTORY)
    # A state of another net: history count, then shapes.
    write(path, solverstate(learned, HISTORY[:4]))
    with pytest.raises(WeightsError, match='holds 4 history blobs, the net\'s SGD solver needs 6'):
        check_solverstate(str(path), NET, HISTORY)
    write(path, solverstate(learned, [(5, 3, 3, 3)] + HISTORY[1:]))
    with pytest.raises(WeightsError, match=r'history shapes differ .*blob 0: file \[5, 3, 3, 3\]'):
        check_solverstate(str(path), NET, HISTORY)
    # Its model missing or of another net.
    write(path, solverstate(str(tmp_path / 'gone.caffemodel'), HISTORY))
    with pytest.raises(WeightsError, match=f'solver state {path}: its learned_net .*gone.caffemodel: file'):
        check_solverstate(str(path), NET, HISTORY)
    other = write(tmp_path / 'other.caffemodel', model({'conv1': NET['conv1']}))
    write(path, solverstate(other, HISTORY))
    with pytest.raises(WeightsError, match='lacks layers fc6, cls_score'):
        check_solverstate(str(path), NET, HISTORY)
    # A caffemodel given as the solver state.
    with pytest.raises(WeightsError, match='names no learned_net'):
        check_solverstate(learned, NET, HISTORY)
