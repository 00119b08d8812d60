"""models/make_prototxts.py: every committed net and solver is exactly what the generator writes.

The generator writes into a temporary directory and each file is compared byte for byte with the committed
one; the committed method directories hold no file the generator does not write.
"""

import filecmp
import glob
import importlib.util
import os.path as osp

import pytest
import yaml

pytest.importorskip('caffe')  # the synth family is rendered through caffe_pb2

from fast_rcnn.models import read_net  # noqa: E402
from rpn.generate_anchors import generate_anchors  # noqa: E402

MODELS_DIR = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', 'models'))


def load_generator():
    """Import models/make_prototxts.py (a script, not a package, hence loaded from its path)."""
    spec = importlib.util.spec_from_file_location('make_prototxts', osp.join(MODELS_DIR, 'make_prototxts.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def generator():
    return load_generator()


@pytest.fixture(scope='module')
def generated(generator, tmp_path_factory):
    """Root of a fresh generator run."""
    root = str(tmp_path_factory.mktemp('models'))
    generator.main(['--out', root])
    return root


def _committed_files(generator):
    """Paths (relative to models/) of every file in the families' method directories."""
    return {osp.relpath(path, MODELS_DIR) for family in generator.FAMILIES
            for path in glob.glob(osp.join(MODELS_DIR, family.dirname, '*', '*', '*'))}


def test_every_committed_file_is_generated(generator, generated):
    written = {osp.relpath(path, generated) for path in glob.glob(osp.join(generated, '*', '*', '*', '*'))}
    assert written == set(generator.all_files())
    assert _committed_files(generator) == written


def test_committed_files_are_byte_identical(generator, generated):
    stale = [rel for rel in sorted(generator.all_files())
             if not filecmp.cmp(osp.join(MODELS_DIR, rel), osp.join(generated, rel), shallow=False)]
    assert stale == [], f'stale (rerun models/make_prototxts.py): {stale}'



def test_every_file_starts_with_the_header(generator):
    for rel, text in generator.all_files().items():
        assert text.splitlines()[0] == \
            '# Written by models/make_prototxts.py: edit that script and rerun it, not this file.', rel


def test_anchor_counts_match_what_the_layers_generate(generator):
    """rpn_cls_score has 2A outputs for the A anchors the layers make from their param_str."""
    for family in generator.FAMILIES:
        for arch in family.archs:
            net = read_net(osp.join(MODELS_DIR, family.dirname, arch.dirname, 'faster_rcnn_end2end',
                                    'train.prototxt'))
            layers = {layer.name: layer for layer in net.layer}
            for name in ('rpn-data', 'proposal'):
                params = yaml.safe_load(layers[name].python_param.param_str)
                kwargs = {key: params[key] for key in ('scales', 'ratios') if key in params}
                num_anchors = len(generate_anchors(**kwargs))
                assert num_anchors == family.anchors.count, (family.dirname, arch.dirname, name)
            assert layers['rpn_cls_score'].convolution_param.num_output == 2 * family.anchors.count
    assert (generator.PASCAL_VOC.anchors.count, generator.COCO.anchors.count,
            generator.SYNTH.anchors.count) == (9, 12, 12)
