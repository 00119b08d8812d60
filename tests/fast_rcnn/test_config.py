"""The one configuration object (fast_rcnn.config)."""

import os

import numpy as np
import pytest

from fast_rcnn.config import cfg, cfg_from_file, cfg_from_list, get_output_dir


def test_released_defaults():
    assert cfg.TRAIN.SCALES == (600,) and cfg.TRAIN.MAX_SIZE == 1000
    assert (cfg.TRAIN.IMS_PER_BATCH, cfg.TRAIN.BATCH_SIZE, cfg.TRAIN.FG_FRACTION) == (2, 128, 0.25)
    assert (cfg.TRAIN.FG_THRESH, cfg.TRAIN.BG_THRESH_HI, cfg.TRAIN.BG_THRESH_LO) == (0.5, 0.5, 0.1)
    assert (cfg.TRAIN.RPN_POSITIVE_OVERLAP, cfg.TRAIN.RPN_NEGATIVE_OVERLAP) == (0.7, 0.3)
    assert (cfg.TRAIN.RPN_BATCHSIZE, cfg.TRAIN.RPN_FG_FRACTION) == (256, 0.5)
    assert (cfg.TRAIN.RPN_PRE_NMS_TOP_N, cfg.TRAIN.RPN_POST_NMS_TOP_N) == (12000, 2000)
    assert (cfg.TEST.RPN_PRE_NMS_TOP_N, cfg.TEST.RPN_POST_NMS_TOP_N) == (6000, 300)
    assert cfg.TRAIN.RPN_NMS_THRESH == cfg.TEST.RPN_NMS_THRESH == 0.7
    assert cfg.TRAIN.RPN_MIN_SIZE == cfg.TEST.RPN_MIN_SIZE == 16
    assert cfg.TRAIN.RPN_POSITIVE_WEIGHT == -1.0 and cfg.TRAIN.RPN_CLOBBER_POSITIVES is False
    assert cfg.TRAIN.BBOX_NORMALIZE_STDS == (0.1, 0.1, 0.2, 0.2)
    assert cfg.TEST.NMS == 0.3 and cfg.TEST.SCORE_THRESH == 0.05 and cfg.TEST.MAX_PER_IMAGE == 100
    assert (cfg.TEST.RPN_USE_NMS, cfg.TEST.RPN_USE_CLS, cfg.TEST.RPN_USE_REG) == (True, True, True)
    np.testing.assert_array_equal(cfg.PIXEL_MEANS, [[[102.9801, 115.9465, 122.7717]]])
    assert cfg.RNG_SEED == 3


def test_cfg_from_list_coerces_to_the_default_types(saved_cfg):
    cfg_from_list(['TRAIN.SCALES', '(480, 576)', 'TRAIN.HAS_RPN', 'true', 'TRAIN.BATCH_SIZE', '64',
                   'TEST.NMS', '0.4', 'EXP_DIR', 'ablation', 'TRAIN.RPN_POSITIVE_WEIGHT', '1',
                   'PIXEL_MEANS', '[1, 2, 3]', 'TEST.RPN_PRE_NMS_TOP_N', '-1'])
    assert cfg.TRAIN.SCALES == (480, 576) and cfg.TRAIN.HAS_RPN is True
    assert cfg.TRAIN.BATCH_SIZE == 64 and isinstance(cfg.TRAIN.BATCH_SIZE, int)
    assert cfg.TEST.NMS == 0.4 and cfg.EXP_DIR == 'ablation' and cfg.TEST.RPN_PRE_NMS_TOP_N == -1
    assert cfg.TRAIN.RPN_POSITIVE_WEIGHT == 1.0 and isinstance(cfg.TRAIN.RPN_POSITIVE_WEIGHT, float)
    assert cfg.PIXEL_MEANS.shape == (1, 1, 3) and cfg.PIXEL_MEANS.dtype == np.float64
    np.testing.assert_array_equal(cfg.PIXEL_MEANS, [[[1, 2, 3]]])


def test_cfg_from_list_rejects_bad_input(saved_cfg):
    with pytest.raises(KeyError, match='TRAIN.NO_SUCH_KEY'):
        cfg_from_list(['TRAIN.NO_SUCH_KEY', '1'])
    with pytest.raises(KeyError, match='NOPE'):
        cfg_from_list(['NOPE.SCALES', '1'])
    with pytest.raises(ValueError, match='odd number'):
        cfg_from_list(['TRAIN.SCALES'])
    with pytest.raises(TypeError, match='expected an integer'):
        cfg_from_list(['TRAIN.BATCH_SIZE', '1.5'])
    with pytest.raises(TypeError, match='expected a bool'):
        cfg_from_list(['TRAIN.HAS_RPN', '1'])
    with pytest.raises(ValueError, match='expected 3 values'):
        cfg_from_list(['PIXEL_MEANS', '[1, 2]'])
    assert cfg.TRAIN.BATCH_SIZE == 128 and cfg.TRAIN.HAS_RPN is False


def test_cfg_from_file_merges_yaml(saved_cfg, tmp_path):
    path = tmp_path / 'end2end.yml'
    path.write_text('EXP_DIR: faster_rcnn_end2end\nTRAIN:\n  HAS_RPN: True\n  IMS_PER_BATCH: 1\n'
                    '  BBOX_NORMALIZE_TARGETS_PRECOMPUTED: True\n  RPN_POSITIVE_OVERLAP: 0.7\n'
                    '  RPN_BATCHSIZE: 256\n  PROPOSAL_METHOD: gt\n  BG_THRESH_LO: 0.0\n  SCALES: [500]\n'
                    'TEST:\n  HAS_RPN: True\n', encoding='utf-8')
    cfg_from_file(str(path))
    assert cfg.EXP_DIR == 'faster_rcnn_end2end' and cfg.TRAIN.HAS_RPN and cfg.TEST.HAS_RPN
    assert cfg.TRAIN.IMS_PER_BATCH == 1 and cfg.TRAIN.BG_THRESH_LO == 0.0 and cfg.TRAIN.SCALES == (500,)
    assert cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED is True
    assert cfg.TRAIN.BATCH_SIZE == 128          # untouched keys keep their defaults


def test_cfg_from_file_rejects_unknown_keys_sections_and_non_mappings(saved_cfg, tmp_path):
    unknown = tmp_path / 'unknown.yml'
    unknown.write_text('TRAIN:\n  NOT_A_KEY: 1\n', encoding='utf-8')
    with pytest.raises(KeyError, match='TRAIN.NOT_A_KEY'):
        cfg_from_file(str(unknown))
    section = tmp_path / 'section.yml'
    section.write_text('TRAIN: 3\n', encoding='utf-8')
    with pytest.raises(TypeError, match='section'):
        cfg_from_file(str(section))
    listing = tmp_path / 'list.yml'
    listing.write_text('- 1\n- 2\n', encoding='utf-8')
    with pytest.raises(TypeError, match='mapping'):
        cfg_from_file(str(listing))
    empty = tmp_path / 'empty.yml'
    empty.write_text('', encoding='utf-8')
    cfg_from_file(str(empty))
    assert cfg.TRAIN.SCALES == (600,)


def test_get_output_dir(saved_cfg, tmp_path):
    cfg.ROOT_DIR = str(tmp_path)
    cfg.EXP_DIR = 'exp'
    out = get_output_dir('voc_2007_trainval')
    assert out == os.path.join(str(tmp_path), 'output', 'exp', 'voc_2007_trainval') and os.path.isdir(out)
    net_out = get_output_dir('voc_2007_test', 'VGG16')
    assert net_out == os.path.join(str(tmp_path), 'output', 'exp', 'voc_2007_test', 'VGG16')
    assert os.path.isdir(net_out)
