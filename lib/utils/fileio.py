"""Result files that are complete or absent, and one run per output directory.

``atomic_write(path)`` / ``atomic_path(path)``: the data goes to a unique temporary name in the target's
folder (so the final rename never crosses a file system), is flushed and fsynced, and only then renamed
over ``path``; the folder is fsynced too, so the rename itself survives a power cut. A crash, a kill or a
full disk leaves ``path`` as it was (old content or absent) plus, at worst, a ``.<name>.*.tmp`` file.

``DirectoryLock(path)``: an exclusive, non-blocking ``flock`` on ``<path>/.lock`` holding the owner's pid;
the kernel drops it when the process dies, so a stale lock file never blocks a later run.
"""

import contextlib
import fcntl
import json
import os
import os.path as osp
import tempfile

# Name of the lock file inside a locked output directory.
LOCK_NAME = '.lock'


def _fsync_dir(folder):
    """fsync a directory so that a rename inside it is durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path):
    """A new, unique temporary file next to ``path``; returns ``(fd, temp_path)``."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)


def _commit(temp, path):
    """fsync ``temp`` (already closed), rename it to ``path`` and fsync the folder."""
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    _fsync_dir(osp.dirname(osp.abspath(path)))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path`` for a writer that wants a file name (Caffe's
    ``net.save``); on success it is fsynced and renamed to ``path``, on error removed.

    The writer must create the file at exactly the yielded name (it exists, empty, on entry).
    """
    fd, temp = _temp_name(path)
    os.close(fd)
    try:
        yield temp
        if not osp.isfile(temp) or osp.getsize(temp) == 0:
            raise OSError(f'writing {path}: the writer left no data in {temp}')
        _commit(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise


@contextlib.contextmanager
def atomic_write(path, mode='wb', encoding=None):
    """Yield a file object writing to a temporary name next to ``path``; see module doc.

    ``mode``: ``'wb'`` or ``'w'`` (text; ``encoding`` defaults to UTF-8).
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f'atomic_write: mode must be "wb" or "w", got {mode!r}')
    fd, temp = _temp_name(path)
    try:
        if mode == 'w':
            f = os.fdopen(fd, mode, encoding=encoding or 'utf-8')
        else:
            f = os.fdopen(fd, mode)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        _fsync_dir(osp.dirname(osp.abspath(path)))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_write(path, 'wb') as f:
        f.write(data)


def write_text_atomic(path, text):
    """Write ``text`` (str, UTF-8) to ``path`` atomically."""
    with atomic_write(path, 'w') as f:
        f.write(text)


def write_json_atomic(path, obj, **kwargs):
    """``json.dump(obj)`` to ``path`` atomically (``kwargs`` go to ``json.dump``)."""
    with atomic_write(path, 'w') as f:
        json.dump(obj, f, **kwargs)


class LockedError(RuntimeError):
    """Another live process holds the lock; the message names the directory and the holder's pid."""


class DirectoryLock:
    """Exclusive lock on directory ``path`` (created if missing) for this process's lifetime.

    ``acquire()`` raises ``LockedError`` at once when another process holds it. Use as a context manager
    or call ``release()``; the lock also goes away when the process exits, however it exits.
    """

    def __init__(self, path, what='output directory'):
        self.path = osp.abspath(path)
        self.what = what
        self._fd = None

    @property
    def lock_file(self):
        return osp.join(self.path, LOCK_NAME)

    def holder(self):
        """The pid recorded in the lock file (an int), or None when unreadable."""
        try:
            with open(self.lock_file, encoding='utf-8') as f:
                return int(f.read().strip() or 'x')
        except (OSError, ValueError):
            return None

    def acquire(self):
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = self.holder()
            raise LockedError(f'{self.what} {self.path} is in use by another run (pid '
                              f'{pid if pid is not None else "unknown"}, lock file {self.lock_file}); '
                              f'wait for it to finish or choose another EXP_DIR') from None
        os.ftruncate(fd, 0)
        os.write(fd, f'{os.getpid()}\n'.encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
