"""Build the compiled extensions of ``lib/`` in place.

    cd lib && ../.venv/bin/python setup.py build_ext --inplace

Always builds ``utils.cython_bbox`` and ``nms.cpu_nms``. Builds ``nms.gpu_nms`` (CUDA) when nvcc
is found: ``$CUDAHOME`` (or ``$CUDA_HOME``), else nvcc on ``PATH``, else ``/usr/local/cuda``.
A CUDA home given through the environment must contain ``bin/nvcc``; if nvcc is found but the
CUDA compile fails, the build fails. A summary line says what was built and why GPU NMS was
skipped, if it was.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# sm_75 (Turing) and newer as SASS, plus compute_75 PTX so newer GPUs can JIT it.
NVCC_GENCODE = [
    '-gencode', 'arch=compute_75,code=sm_75',
    '-gencode', 'arch=compute_90,code=sm_90',
    '-gencode', 'arch=compute_75,code=compute_75',
]
# Contraction into FMA would change float rounding; NMS must match bit for bit across builds.
HOST_CFLAGS = ['-ffp-contract=off']


def find_cuda():
    """Locate the CUDA toolkit.

    Returns ``(cuda_home, None)`` with cuda_home a Path holding ``bin/nvcc``, or
    ``(None, reason)`` when none is found. Exits with an error when ``CUDAHOME``/``CUDA_HOME``
    names a directory without ``bin/nvcc`` (an explicit request that cannot be honoured).
    ``CAFFE_VARIANT=cpu`` (exported by ``make``, e.g. ``make CPU_ONLY=1``) skips CUDA so a machine with a
    broken toolkit can still build CPU-only.
    """
    if os.environ.get('CAFFE_VARIANT') == 'cpu':
        return None, 'CAFFE_VARIANT=cpu (a CPU-only build was asked for)'
    for var in ('CUDAHOME', 'CUDA_HOME'):
        home = os.environ.get(var)
        if home:
            if not (Path(home) / 'bin' / 'nvcc').is_file():
                sys.exit(f'error: {var}={home} but {home}/bin/nvcc does not exist')
            return Path(home), None
    nvcc = shutil.which('nvcc')
    if nvcc:
        return Path(nvcc).resolve().parent.parent, None
    default = Path('/usr/local/cuda')
    if (default / 'bin' / 'nvcc').is_file():
        return default, None
    return None, 'no nvcc (CUDAHOME/CUDA_HOME unset, nvcc not on PATH, no /usr/local/cuda/bin/nvcc)'


def cuda_lib_dir(cuda_home):
    """Directory holding libcudart for ``cuda_home`` (``lib64`` on Linux toolkits)."""
    for name in ('lib64', 'lib'):
        if (cuda_home / name).is_dir():
            return cuda_home / name
    sys.exit(f'error: no lib64/ or lib/ directory under CUDA home {cuda_home}')


class BuildExtWithNvcc(build_ext):
    """``build_ext`` that compiles ``.cu`` sources with nvcc and prints a summary at the end."""

    cuda_home = None
    gpu_skip_reason = None

    def build_extension(self, ext):
        """Compile the extension's ``.cu`` files with nvcc, link them in, then build as usual."""
        cu_sources = [s for s in ext.sources if s.endswith('.cu')]
        if cu_sources:
            ext.sources = [s for s in ext.sources if not s.endswith('.cu')]
            ext.extra_objects = [self.nvcc_compile(s, ext.depends) for s in cu_sources]
        super().build_extension(ext)

    def nvcc_compile(self, source, depends):
        """Compile one ``.cu`` file to a position-independent object in build_temp; return its path.

        Recompiles only when the object is older than the source or its dependencies (or with
        --force). Any nvcc failure aborts the whole build with a non-zero exit.
        """
        obj_name = Path(source).with_suffix('.o').as_posix().replace('/', '_')
        obj = Path(self.build_temp) / obj_name
        inputs = [Path(source)] + [Path(d) for d in depends]
        if not self.force and obj.exists() and all(
                obj.stat().st_mtime >= p.stat().st_mtime for p in inputs):
            return str(obj)
        obj.parent.mkdir(parents=True, exist_ok=True)
        nvcc = str(self.cuda_home / 'bin' / 'nvcc')
        cmd = [nvcc, '-O3', *NVCC_GENCODE, '-Xcompiler', '-fPIC', '-c', source, '-o', str(obj)]
        print(f'nvcc: compiling {source}', flush=True)
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout)
            sys.exit(f'error: CUDA compile of {source} failed (nvcc exit {result.returncode});\n'
                     f'command: {" ".join(cmd)}')
        return str(obj)

    def run(self):
        super().run()
        built = ', '.join(ext.name for ext in self.extensions)
        print(f'built extensions: {built}')
        if self.gpu_skip_reason:
            print(f'GPU NMS (nms.gpu_nms) skipped: {self.gpu_skip_reason}')
        else:
            print(f'GPU NMS built with {self.cuda_home}/bin/nvcc')


def make_extensions(cuda_home):
    """The Extension list: CPU extensions always, ``nms.gpu_nms`` when ``cuda_home`` is given."""
    extensions = [
        Extension('utils.cython_bbox', ['utils/bbox.pyx'], extra_compile_args=HOST_CFLAGS),
        Extension('nms.cpu_nms', ['nms/cpu_nms.pyx'], extra_compile_args=HOST_CFLAGS),
    ]
    if cuda_home is not None:
        lib_dir = str(cuda_lib_dir(cuda_home))
        extensions.append(Extension(
            'nms.gpu_nms',
            ['nms/nms_kernel.cu', 'nms/gpu_nms.pyx'],
            language='c++',
            include_dirs=['nms', str(cuda_home / 'include')],
            depends=['nms/gpu_nms.hpp'],
            library_dirs=[lib_dir],
            libraries=['cudart'],
            runtime_library_dirs=[lib_dir],
            extra_compile_args=HOST_CFLAGS,
        ))
    return extensions


def main():
    """Run setuptools from ``lib/`` (paths above are relative to it)."""
    os.chdir(Path(__file__).resolve().parent)
    cuda_home, skip_reason = find_cuda()
    BuildExtWithNvcc.cuda_home = cuda_home
    BuildExtWithNvcc.gpu_skip_reason = skip_reason
    # Quiet unless the user asked for -v: the per-file compiler lines are noise in `make` logs.
    args = sys.argv[1:]
    if not any(a in ('-v', '--verbose') for a in args):
        args = ['--quiet'] + args
    setup(
        name='faster_rcnn_lib',
        ext_modules=cythonize(make_extensions(cuda_home), quiet=True,
                              compiler_directives={'language_level': 3}),
        cmdclass={'build_ext': BuildExtWithNvcc},
        script_args=args,
    )


if __name__ == '__main__':
    main()
