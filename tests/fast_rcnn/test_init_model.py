"""The initial model of the TINY net (fast_rcnn.init_model): He initialisation, the classification net,
the crop sampler and a short pre-training on synth_mini."""

import glob
import os.path as osp

import numpy as np
import pytest

caffe = pytest.importorskip('caffe')

from caffe.proto import caffe_pb2  # noqa: E402
from fast_rcnn import init_model  # noqa: E402
from fast_rcnn.config import cfg  # noqa: E402
from fast_rcnn.models import read_net  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TINY_TEST = osp.join(ROOT, 'models', 'synth', 'TINY', 'faster_rcnn_alt_opt', 'faster_rcnn_test.pt')
SMALL = init_model.PretrainSettings(iters=3, crop=48, batch=4)


def _synth_mini_trainval():
    from datasets.factory import get_imdb
    imdb = get_imdb('synth_mini_trainval')
    if not osp.isfile(imdb.image_path_at(0)):
        pytest.skip('the embedded dataset is not generated (make)')
    return imdb


def _layers(path):
    model = caffe_pb2.NetParameter()
    with open(path, 'rb') as f:
        model.ParseFromString(f.read())
    return {layer.name: [np.array(b.data) for b in layer.blobs] for layer in model.layer if layer.blobs}


def test_he_init_draws_fan_in_scaled_weights_and_zero_biases(caffe_cpu):
    net = caffe.Net(TINY_TEST, caffe.TEST)
    init_model.he_init(net, np.random.default_rng(0))
    weights, bias = net.params['conv2'][0].data, net.params['conv2'][1].data
    fan_in = int(np.prod(weights.shape[1:]))
    assert abs(weights.std() - np.sqrt(2.0 / fan_in)) < 0.02 * np.sqrt(2.0 / fan_in)
    assert abs(weights.mean()) < 0.05 * np.sqrt(2.0 / fan_in)
    assert not bias.any()
    again = caffe.Net(TINY_TEST, caffe.TEST)
    init_model.he_init(again, np.random.default_rng(0))
    np.testing.assert_array_equal(again.params['fc6'][0].data, net.params['fc6'][0].data)


def test_classification_net_is_the_backbone_with_a_learning_classifier():
    net = init_model.classification_net(read_net(TINY_TEST), num_classes=7, batch=4, crop=48)
    names = [layer.name for layer in net.layer]
    assert names[0] == 'input' and names[1] == 'conv1'
    assert names[-3:] == ['pretrain_cls', 'pretrain_loss', 'pretrain_acc']
    assert 'fc7' in names and not any(n.startswith(('rpn', 'proposal')) or n in ('cls_score', 'bbox_pred')
                                      for n in names)
    pool = next(layer for layer in net.layer if layer.type == 'ROIPooling')
    assert list(pool.bottom) == ['conv5', 'rois']
    for layer in net.layer:
        if layer.type != 'BatchNorm':
            assert all(p.lr_mult > 0 for p in layer.param), layer.name
    classifier = next(layer for layer in net.layer if layer.name == 'pretrain_cls')
    assert classifier.inner_product_param.num_output == 7
    shapes = [list(s.dim) for s in net.layer[0].input_param.shape]
    assert shapes == [[4, 3, 48, 48], [4, 5], [4]]


def test_pretrain_solver_steps_down_after_three_quarters():
    solver = init_model.pretrain_solver('train.pt', init_model.PretrainSettings(iters=2000), 'prefix')
    assert (solver.train_net, solver.max_iter, solver.stepsize, solver.lr_policy) == \
        ('train.pt', 2000, 1500, 'step')
    # float fields are float32 in the protobuf
    floats = [solver.base_lr, solver.gamma, solver.momentum, solver.weight_decay, solver.clip_gradients]
    np.testing.assert_array_equal(np.float32(floats), np.float32([0.02, 0.1, 0.9, 0.0005, 10.0]))
    assert init_model.pretrain_solver('t', init_model.PretrainSettings(iters=1), 'p').stepsize == 1


def test_crop_sampler_gives_mean_subtracted_crops_of_objects_and_background():
    imdb = _synth_mini_trainval()
    sampler = init_model.CropSampler(imdb, 32, np.random.default_rng(1), cfg.PIXEL_MEANS, bg_fraction=0.5)
    data, labels = sampler.batch(40)
    assert data.shape == (40, 3, 32, 32) and data.dtype == np.float32 and labels.shape == (40,)
    assert set(np.unique(labels)) <= set(range(1, imdb.num_classes + 1))
    assert (labels == imdb.num_classes).any() and (labels < imdb.num_classes).any()
    # BGR minus the means: a crop is never all non-negative
    assert data.min() < 0
    again = init_model.CropSampler(imdb, 32, np.random.default_rng(1), cfg.PIXEL_MEANS, bg_fraction=0.5)
    np.testing.assert_array_equal(again.batch(40)[0], data)


def test_pretrained_model_is_repeatable_and_holds_only_the_backbone(caffe_cpu, tmp_path, monkeypatch):
    imdb = _synth_mini_trainval()
    monkeypatch.setattr(init_model.tempfile, 'tempdir', str(tmp_path))
    outs = [str(tmp_path / f'init{k}.caffemodel') for k in range(2)]
    for out in outs:
        layers = init_model.write_init_model(TINY_TEST, out, 3, cfg.PIXEL_MEANS, imdb, SMALL)
    with open(outs[0], 'rb') as a, open(outs[1], 'rb') as b:
        assert a.read() == b.read()  # numpy and Caffe both seeded
    assert 'conv1' in layers and 'fc7' in layers
    assert not any(name.startswith(init_model.DETECTOR_ONLY_PREFIXES) for name in layers)
    assert sorted(_layers(outs[0])) == sorted(layers)
    assert glob.glob(str(tmp_path / 'init_model_*')) == []  # scratch removed
    # pre-training changed the He weights, and a detector net loads the file by name
    he = str(tmp_path / 'he.caffemodel')
    init_model.write_init_model(TINY_TEST, he, 3, cfg.PIXEL_MEANS)
    assert not np.array_equal(_layers(he)['conv1'][0], _layers(outs[0])['conv1'][0])
    net = caffe.Net(TINY_TEST, caffe.TEST)
    net.copy_from(outs[0])
    np.testing.assert_array_equal(net.params['fc7'][0].data, _layers(outs[0])['fc7'][0].reshape(
        net.params['fc7'][0].data.shape))


def test_a_failed_pretraining_writes_no_model(caffe_cpu, tmp_path, monkeypatch):
    imdb = _synth_mini_trainval()
    monkeypatch.setattr(init_model.tempfile, 'tempdir', str(tmp_path))

    def fail(*args):
        raise RuntimeError('stopped')
    monkeypatch.setattr(init_model, 'pretrain', fail)
    out = tmp_path / 'init.caffemodel'
    with pytest.raises(RuntimeError, match='stopped'):
        init_model.write_init_model(TINY_TEST, str(out), 3, cfg.PIXEL_MEANS, imdb, SMALL)
    assert not out.exists() and glob.glob(str(tmp_path / 'init_model_*')) == []
