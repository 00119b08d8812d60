#!/usr/bin/env python3
"""Collect, describe and check the shared-library closure of the device bundle (see docs/device-check.md).

    bundle.py collect  STAGE                 copy every library STAGE's binaries need (but glibc and CUDA)
    bundle.py manifest STAGE [--key ...]     print MANIFEST.json (files, hashes, ELF needs) for STAGE
    bundle.py verify   STAGE                 exit 1, naming each problem, unless STAGE matches its manifest
                                             and every ELF need is met inside STAGE or by glibc / CUDA

STAGE is the bundle root (``bin/``, ``lib/``, ...). Only the standard library is used: the device's Python
runs ``verify`` too. ``collect`` uses ``ldd``; the other two read ELF files with ``readelf`` (binutils).
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# glibc's own libraries: tied to the loader of the machine the bundle runs on, so never shipped.
GLIBC_LIBS = frozenset({
    'libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', 'libresolv.so.2',
    'libutil.so.1', 'libanl.so.1', 'ld-linux-x86-64.so.2', 'linux-vdso.so.1',
})
# CUDA's libraries: the device has its own (the driver's libcuda, PyTorch's nvidia-* wheels for the rest).
CUDA_LIBS = frozenset({
    'libcuda.so.1', 'libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13', 'libcurand.so.10',
})
EXTERNAL_LIBS = GLIBC_LIBS | CUDA_LIBS
# RPATHs the bundle's own binaries are linked with (build-bundle.sh: CMAKE_INSTALL_RPATH).
BUNDLE_RPATH = '$ORIGIN:$ORIGIN/../lib'
MANIFEST = 'MANIFEST.json'

_LDD_LINE = re.compile(r'^\s*(\S+)\s+=>\s+(not found|\S+)')
_GLIBC_VERSION = re.compile(r'\bGLIBC_(\d+(?:\.\d+)+)\b')


def is_elf(path):
    """True for a regular file starting with the ELF magic."""
    if not path.is_file() or path.is_symlink():
        return False
    with open(path, 'rb') as f:
        return f.read(4) == b'\x7fELF'


def elf_files(stage):
    """The ELF files under ``stage`` (regular files, not symlinks), sorted by relative path."""
    return sorted(p for p in Path(stage).rglob('*') if is_elf(p))


def readelf(args, path):
    """stdout of ``readelf args path``; raises RuntimeError naming the file on failure."""
    result = subprocess.run(['readelf', '-W', *args, str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f'readelf {" ".join(args)} {path} failed: {result.stderr.strip()}')
    return result.stdout


def dynamic_info(path):
    """``(needed sonames, rpath or None, runpath or None, soname or None)`` of an ELF file."""
    needed, rpath, runpath, soname = [], None, None, None
    for line in readelf(['-d'], path).splitlines():
        value = re.search(r'\[(.*)\]', line)
        if not value:
            continue
        if '(NEEDED)' in line:
            needed.append(value.group(1))
        elif '(RPATH)' in line:
            rpath = value.group(1)
        elif '(RUNPATH)' in line:
            runpath = value.group(1)
        elif '(SONAME)' in line:
            soname = value.group(1)
    return needed, rpath, runpath, soname


def glibc_required(path):
    """Highest GLIBC_x.y symbol version ``path`` needs, as a tuple of ints (() when none)."""
    versions = [tuple(int(x) for x in v.split('.'))
                for v in _GLIBC_VERSION.findall(readelf(['-V'], path))]
    return max(versions, default=())


def ldd(path, env=None):
    """``{soname: resolved path or None}`` from ``ldd path`` (None: 'not found')."""
    result = subprocess.run(['ldd', str(path)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f'ldd {path} failed: {(result.stderr or result.stdout).strip()}')
    found = {}
    for line in result.stdout.splitlines():
        m = _LDD_LINE.match(line)
        if m:
            found[m.group(1)] = None if m.group(2) == 'not found' else m.group(2)
    return found


def collect(stage):
    """Copy into ``stage/lib`` every library that the ELF files under ``stage`` load, except glibc and CUDA.

    Repeats until nothing new is found (a collected library can need others). Strips debug symbols from the
    bundle's ELF files. Returns ``{soname: source path}`` of what was copied; raises RuntimeError when a
    needed library is not found on this machine.
    """
    stage = Path(stage)
    lib = stage / 'lib'
    lib.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != 'LD_LIBRARY_PATH'}
    copied = {}
    while True:
        new = {}
        for elf in elf_files(stage):
            for name, path in ldd(elf, env).items():
                if name in EXTERNAL_LIBS or (lib / name).exists() or name in new:
                    continue
                if path is None:
                    raise RuntimeError(f'{elf.relative_to(stage)} needs {name}, which this machine lacks')
                new[name] = path
        if not new:
            break
        for name, path in sorted(new.items()):
            shutil.copyfile(path, lib / name)
            os.chmod(lib / name, 0o755)
            copied[name] = str(Path(path).resolve())
    for elf in elf_files(stage):
        subprocess.run(['strip', '--strip-unneeded', str(elf)], check=True)
    return copied


def sha256(path):
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def describe(stage):
    """The manifest body of ``stage``: every file's size and hash, every ELF file's needs and RPATH."""
    stage = Path(stage)
    files, elves = {}, {}
    glibc = ()
    for p in sorted(stage.rglob('*')):
        rel = p.relative_to(stage).as_posix()
        if rel == MANIFEST or p.is_dir():
            continue
        if p.is_symlink():
            files[rel] = {'symlink': os.readlink(p)}
            continue
        files[rel] = {'size': p.stat().st_size, 'sha256': sha256(p)}
        if is_elf(p):
            needed, rpath, runpath, soname = dynamic_info(p)
            elves[rel] = {'needed': needed, 'rpath': rpath, 'runpath': runpath, 'soname': soname}
            glibc = max(glibc, glibc_required(p))
    external = sorted({n for e in elves.values() for n in e['needed'] if n in EXTERNAL_LIBS})
    return {'files': files, 'elf': elves, 'external_libs': external,
            'glibc_required': '.'.join(map(str, glibc))}


def closure_problems(stage, elves=None):
    """Reasons the ELF files under ``stage`` could fail to load on a machine with only glibc and CUDA.

    Every NEEDED library must be a file in ``stage/lib`` or one of EXTERNAL_LIBS; the bundle's binaries
    must carry BUNDLE_RPATH as DT_RPATH (RUNPATH would not cover the collected libraries' own needs), and
    a collected library may carry no RUNPATH but ``$ORIGIN`` (Debian's OpenBLAS libblas has that one).
    ``elves``: a precomputed ``describe(stage)['elf']``.
    """
    stage = Path(stage)
    if elves is None:
        elves = describe(stage)['elf']
    if not elves:
        return [f'{stage}: no ELF files']
    shipped = {p.name for p in (stage / 'lib').iterdir()} if (stage / 'lib').is_dir() else set()
    problems = []
    for rel, info in sorted(elves.items()):
        for name in info['needed']:
            if name not in shipped and name not in EXTERNAL_LIBS:
                problems.append(f'{rel} needs {name}: not in lib/ and neither glibc nor CUDA')
        # A RUNPATH hides the binaries' RPATH from this object's needs: only $ORIGIN (lib/ itself) will do.
        if info['runpath'] and not (rel.startswith('lib/') and info['runpath'] == '$ORIGIN'):
            problems.append(f'{rel} has RUNPATH {info["runpath"]}: it would not search the bundle')
        own = rel.startswith('bin/') or Path(rel).name.startswith('libcaffe')
        if own and info['rpath'] != BUNDLE_RPATH:
            problems.append(f'{rel} has RPATH {info["rpath"]!r}, expected {BUNDLE_RPATH!r}')
    return problems


def verify(stage):
    """Problems of an unpacked bundle: files that differ from its MANIFEST.json, then closure problems."""
    stage = Path(stage)
    manifest_path = stage / MANIFEST
    if not manifest_path.is_file():
        return [f'{manifest_path} is missing']
    manifest = json.loads(manifest_path.read_text())
    problems = []
    for rel, want in sorted(manifest['files'].items()):
        p = stage / rel
        if 'symlink' in want:
            if not p.is_symlink() or os.readlink(p) != want['symlink']:
                problems.append(f'{rel}: expected a symlink to {want["symlink"]}')
        elif not p.is_file():
            problems.append(f'{rel}: missing')
        elif p.stat().st_size != want['size'] or sha256(p) != want['sha256']:
            problems.append(f'{rel}: differs from {MANIFEST}')
    listed = set(manifest['files'])
    for p in sorted(stage.rglob('*')):
        rel = p.relative_to(stage).as_posix()
        if not p.is_dir() and rel != MANIFEST and rel not in listed:
            problems.append(f'{rel}: not in {MANIFEST}')
    return problems + closure_problems(stage, manifest['elf'])


def main(argv=None):
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    for name in ('collect', 'manifest', 'verify'):
        cmd = sub.add_parser(name)
        cmd.add_argument('stage', type=Path)
        if name == 'manifest':
            cmd.add_argument('--key', default='')
            cmd.add_argument('--nvcc', default='')
            cmd.add_argument('--arch', default='')
    args = parser.parse_args(argv)
    if not args.stage.is_dir():
        sys.exit(f'bundle.py: ERROR: {args.stage} is not a directory')
    if args.command == 'collect':
        try:
            copied = collect(args.stage)
        except RuntimeError as e:
            sys.exit(f'bundle.py: ERROR: {e}')
        for name, src in sorted(copied.items()):
            print(f'collected {name} <- {src}')
        problems = closure_problems(args.stage)
        for p in problems:
            print(f'bundle.py: ERROR: {p}', file=sys.stderr)
        print(f'==> {len(copied)} libraries collected; closure check: {len(problems)} problems')
        return 1 if problems else 0
    if args.command == 'manifest':
        body = describe(args.stage)
        body.update(key=args.key, nvcc=args.nvcc, arch=args.arch)
        json.dump(body, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write('\n')
        return 0
    problems = verify(args.stage)
    for p in problems:
        print(f'bundle.py: {args.stage}: {p}', file=sys.stderr)
    print(f'==> {args.stage}: {len(problems)} problems')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
