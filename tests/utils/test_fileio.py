"""utils.fileio: atomic result files and the output-directory lock."""

import os
import subprocess
import sys
import textwrap

import pytest

from utils.fileio import DirectoryLock, LockedError, atomic_path, atomic_write, write_json_atomic, \
    write_text_atomic

LIB = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'lib'))


def test_atomic_write_replaces_only_when_complete(tmp_path):
    path = tmp_path / 'result.txt'
    write_text_atomic(str(path), 'old\n')
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_write(str(path), 'w') as f:
            f.write('half of the new')
            raise RuntimeError('disk full')
    assert path.read_text() == 'old\n'
    assert sorted(os.listdir(tmp_path)) == ['result.txt']  # the temporary file is gone too
    write_json_atomic(str(path), {'a': 1})
    assert path.read_text() == '{"a": 1}'
    assert sorted(os.listdir(tmp_path)) == ['result.txt']


def test_temporary_names_are_unique_and_in_the_target_folder(tmp_path):
    path = str(tmp_path / 'model.caffemodel')
    with atomic_write(path) as a, atomic_write(path) as b:
        temps = os.listdir(tmp_path)
        assert len(temps) == 2 and all(t.startswith('.model.caffemodel.') for t in temps)
        a.write(b'A')
        b.write(b'B')
    with open(path, 'rb') as f:
        assert f.read() == b'A'  # the writer that finished last wins, whole
    assert os.listdir(tmp_path) == ['model.caffemodel']


def test_atomic_path_for_writers_that_want_a_name(tmp_path):
    path = tmp_path / 'net.caffemodel'
    with atomic_path(str(path)) as temp:
        assert not path.exists()
        with open(temp, 'wb') as f:
            f.write(b'weights')
    assert path.read_bytes() == b'weights'
    with pytest.raises(OSError, match='left no data'):
        with atomic_path(str(tmp_path / 'empty.caffemodel')):
            pass  # a writer that wrote nothing must not produce an empty model
    assert sorted(os.listdir(tmp_path)) == ['net.caffemodel']


def test_a_killed_writer_leaves_the_old_file(tmp_path):
    path = tmp_path / 'state.json'
    path.write_text('{"iteration": 3}')
    code = textwrap.dedent(f'''
        import os, sys
        sys.path.insert(0, {LIB!r})
        from utils.fileio import atomic_write
        with atomic_write({str(path)!r}, 'w') as f:
            f.write('{{"iteration": ')
            f.flush()
            os.kill(os.getpid(), 9)
    ''')
    proc = subprocess.run([sys.executable, '-c', code])
    assert proc.returncode == -9
    assert path.read_text() == '{"iteration": 3}'


def test_second_lock_on_a_directory_names_the_holder(tmp_path):
    out = tmp_path / 'out'
    with DirectoryLock(str(out)):
        code = textwrap.dedent(f'''
            import sys
            sys.path.insert(0, {LIB!r})
            from utils.fileio import DirectoryLock
            DirectoryLock({str(out)!r}).acquire()
        ''')
        proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
        assert proc.returncode == 1
        assert f'is in use by another run (pid {os.getpid()}' in proc.stderr
        assert 'LockedError' in proc.stderr
        with pytest.raises(LockedError):  # a second lock in the same process is refused too
            DirectoryLock(str(out)).acquire()
    DirectoryLock(str(out)).acquire().release()  # released: free again


def test_the_lock_dies_with_its_process(tmp_path):
    out = tmp_path / 'out'
    code = textwrap.dedent(f'''
        import os, sys
        sys.path.insert(0, {LIB!r})
        from utils.fileio import DirectoryLock
        DirectoryLock({str(out)!r}).acquire()
        os.kill(os.getpid(), 9)
    ''')
    assert subprocess.run([sys.executable, '-c', code]).returncode == -9
    assert (out / '.lock').exists()  # a stale lock file ...
    DirectoryLock(str(out)).acquire().release()  # ... does not block
