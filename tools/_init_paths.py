"""Make the toolkit importable from the tools (the only sys.path handling of the project's scripts).

``make`` installs a .pth into the virtual environment that puts ``lib/`` and pycaffe on the path; this
module adds ``lib/`` for runs outside that environment and stops with a clear message when pycaffe is not
importable.
"""

import os.path as osp
import sys

ROOT_DIR = osp.abspath(osp.join(osp.dirname(__file__), '..'))
LIB_DIR = osp.join(ROOT_DIR, 'lib')

if LIB_DIR not in sys.path:
    sys.path.insert(0, LIB_DIR)

try:
    import caffe  # noqa: F401  (imported to fail early with a useful message)
except ImportError as exc:
    sys.exit(f'Cannot import caffe ({exc}). Build it with `make` in {ROOT_DIR} and run the tools with '
             f'{osp.join(ROOT_DIR, ".venv", "bin", "python")} (run make; use .venv/bin/python).')
