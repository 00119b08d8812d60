"""models/make_prototxts.py: every committed net and solver is exactly what the generator writes.

The generator writes into a temporary directory and each file is compared byte for byte with the committed
one; the committed method directories hold no file the generator does not write.
"""

import filecmp
import glob
import importlib.util
import os.path as osp

import pytest

pytest.importorskip('caffe')  # the synth family is rendered through caffe_pb2

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
