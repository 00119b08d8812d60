"""Fixtures of the tool and script tests: running a command in the repository root, a throw-away EXP_DIR."""

import os
import os.path as osp
import shutil
import subprocess

import pytest

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


@pytest.fixture
def run_in_repo():
    """``run(args, timeout=600)``: the command run in the repository root with Caffe's logging quiet; returns
    the CompletedProcess (output captured as text)."""
    def run(args, timeout=600):
        env = dict(os.environ, GLOG_minloglevel='2')
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return run


@pytest.fixture
def exp_dir(request):
    """A throw-away EXP_DIR under output/ named after the test (removed afterwards)."""
    name = f'pytest_{request.node.name}_{os.getpid()}'
    yield name
    shutil.rmtree(osp.join(ROOT, 'output', name), ignore_errors=True)
