"""Check a ``.caffemodel`` / ``.solverstate`` against a net before Caffe reads it.

Caffe copies weights by layer name and says nothing about layers it does not find: an empty file, an
interrupted download or a model of another net loads as "nothing", and the net runs on its random fillers.
A shape mismatch or a truncated file ends in a fatal ``CHECK`` (abort, exit 134). Everything here parses
the file with protobuf first and compares it with the net's parameter shapes, so a bad file is refused
with one message naming it, and what would be copied is known before any copy.

Words used below: a net layer is *matched* when the file holds its parameters with equal shapes;
*skipped* when the net has parameters for it and the file has no layer of that name (it keeps its filler
values: normal for fresh heads in training, an error at test time); a file layer with parameters the net
does not have is *ignored* (an ImageNet classifier's fc8, say).
"""

import os.path as osp
from collections import OrderedDict

import numpy as np

# Solver types whose Caffe state holds two history blobs per learnable parameter (the rest hold one).
_TWO_HISTORIES = ('AdaDelta', 'Adam')


class WeightsError(ValueError):
    """A model or solver-state file cannot be used with the net; the message names the file."""


def _caffe_pb2():
    """Caffe's generated protobuf module (imported late: pure-Python users need not have Caffe)."""
    from caffe.proto import caffe_pb2
    return caffe_pb2


def _read_message(path, message, what):
    """Parse the binary protobuf file ``path`` into ``message``; ``WeightsError`` when missing, empty or
    unparsable."""
    if not osp.exists(path):
        raise WeightsError(f'{what} {path}: file not found')
    if not osp.isfile(path):
        raise WeightsError(f'{what} {path}: not a regular file')
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise WeightsError(f'{what} {path}: the file is empty (0 bytes; an interrupted download or write?)')
    from google.protobuf.message import DecodeError
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        hint = ' (it looks like text: a prototxt?)' if data[:64].isascii() and b'\0' not in data[:64] else ''
        raise WeightsError(f'{what} {path}: cannot be parsed as a binary {message.DESCRIPTOR.name}{hint}; '
                           f'the file is truncated or not a Caffe file ({len(data)} bytes; {exc})') from None
    return message


def blob_shape(blob):
    """Shape of a ``BlobProto``: its ``shape`` field, or the legacy num/channels/height/width."""
    if blob.HasField('shape'):
        return tuple(int(d) for d in blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def _shapes_equal(file_shape, net_shape, legacy):
    """Caffe's ``Blob::ShapeEquals``: legacy 4-D shapes compare with the net shape padded with 1s."""
    if legacy:
        if len(net_shape) > 4:
            return False
        return tuple(file_shape) == (1,) * (4 - len(net_shape)) + tuple(net_shape)
    return tuple(file_shape) == tuple(net_shape)


def _model_layers(model):
    """``[(name, [BlobProto, ...])]`` of a NetParameter, current (``layer``) and V1 (``layers``) fields."""
    return [(layer.name, list(layer.blobs)) for layer in model.layer] + \
        [(layer.name, list(layer.blobs)) for layer in model.layers]


def net_shapes(net):
    """``OrderedDict`` layer name -> list of parameter shapes (tuples) of every layer of a ``caffe.Net``
    (layers without parameters map to ``[]``)."""
    return OrderedDict((name, [tuple(blob.data.shape) for blob in layer.blobs])
                       for name, layer in zip(net._layer_names, net.layers))


def learnable_shapes(net):
    """Shapes of a ``caffe.Net``'s learnable parameters in Caffe's order (layer order, then blob order),
    shared parameters counted once: the order of a solver state's history blobs."""
    seen, shapes = set(), []
    for layer in net.layers:
        for blob in layer.blobs:
            address = blob.data.__array_interface__['data'][0]
            if address in seen:  # a shared parameter (same memory as its owner)
                continue
            seen.add(address)
            shapes.append(tuple(blob.data.shape))
    return shapes


class WeightsReport:
    """What copying a model into a net would do: ``matched``, ``skipped`` and ``ignored`` layer names."""

    def __init__(self, path, matched, skipped, ignored):
        self.path, self.matched, self.skipped, self.ignored = path, matched, skipped, ignored

    def summary(self):
        """One line per category, for the log."""
        lines = [f'{self.path}: {len(self.matched)} layers loaded ({", ".join(self.matched)})']
        if self.skipped:
            lines.append(f'  not in the file, left at their fillers: {", ".join(self.skipped)}')
        if self.ignored:
            lines.append(f'  in the file but not in the net, ignored: {", ".join(self.ignored)}')
        return '\n'.join(lines)


def read_model(path, what='model'):
    """The layers ``[(name, [BlobProto, ...])]`` of the caffemodel ``path``, checked on their own: the file
    must exist, parse, hold layers and hold as many values in every blob as its shape says (else
    ``WeightsError`` naming the file)."""
    layers = _model_layers(_read_message(path, _caffe_pb2().NetParameter(), what))
    if not layers:
        raise WeightsError(f'{what} {path}: holds no layers (not a caffemodel, or truncated)')
    problems = []
    for name, blobs in layers:
        for k, blob in enumerate(blobs):
            expected = int(np.prod(blob_shape(blob), dtype=np.int64))
            count = len(blob.data) or len(blob.double_data)
            if count != expected:
                problems.append(f'layer {name!r} blob {k} holds {count} values for shape '
                                f'{list(blob_shape(blob))} (truncated or corrupt)')
    if problems:
        raise WeightsError(f'{what} {path} is damaged: ' + '; '.join(problems))
    return layers


def check_model(path, shapes, require_all=False, what='model'):
    """Compare the caffemodel ``path`` with a net's parameter ``shapes`` (see ``net_shapes``).

    Raises ``WeightsError`` (one message naming the file) when the file is missing, empty, unparsable or
    truncated (a blob holding fewer values than its shape), when it shares no parameter layer with the net,
    when a layer's blob count or shapes differ (every such layer is listed), and with ``require_all`` when
    any net layer would be skipped. Returns a ``WeightsReport``.
    """
    layers = read_model(path, what)
    problems = []
    provided = OrderedDict()
    for name, blobs in layers:
        provided.setdefault(name, blobs)
    matched, ignored = [], []
    for name, blobs in provided.items():
        if name not in shapes:
            if blobs:
                ignored.append(name)
            continue
        net_blob_shapes = shapes[name]
        if not net_blob_shapes and not blobs:
            continue
        if len(blobs) != len(net_blob_shapes):
            problems.append(f'layer {name!r} has {len(blobs)} parameter blobs in the file, '
                            f'{len(net_blob_shapes)} in the net')
            continue
        bad = [f'blob {k}: file {list(blob_shape(b))}, net {list(s)}' for k, (b, s)
               in enumerate(zip(blobs, net_blob_shapes))
               if not _shapes_equal(blob_shape(b), s, legacy=not b.HasField('shape'))]
        if bad:
            problems.append(f'layer {name!r} shape mismatch ({"; ".join(bad)})')
        else:
            matched.append(name)
    skipped = [name for name, s in shapes.items() if s and name not in provided]
    if problems:
        raise WeightsError(f'{what} {path} does not fit the net: ' + '; '.join(problems))
    if not matched:
        raise WeightsError(f'{what} {path} shares no parameter layer with the net (file layers: '
                           f'{", ".join(n for n, b in layers if b) or "none with parameters"}; net layers: '
                           f'{", ".join(n for n, s in shapes.items() if s)}): a model of another net?')
    if require_all and skipped:
        raise WeightsError(f'{what} {path} lacks layers {", ".join(skipped)} of the net: they would keep '
                           f'their random fillers (a model of another stage or net?)')
    return WeightsReport(path, matched, skipped, ignored)


def check_solverstate(path, shapes, history_shapes, solver_type='SGD', iteration=None):
    """Check the solver state ``path`` (binary SolverState) before ``solver.restore``.

    ``shapes``: the net's parameter shapes (``net_shapes``); ``history_shapes``: its learnable shapes
    (``learnable_shapes``); ``solver_type``: the solver's ``type``; ``iteration``: the expected ``iter``
    (e.g. the sidecar's), or None. The state's ``learned_net`` model must exist and provide every layer
    (``check_model`` with ``require_all``), and its history blobs must match the net's learnable
    parameters in number and shape. Returns the parsed SolverState; raises ``WeightsError``.
    """
    state = _read_message(path, _caffe_pb2().SolverState(), 'solver state')
    if not state.learned_net:
        raise WeightsError(f'solver state {path}: names no learned_net model (truncated or not a '
                           f'solver state)')
    if iteration is not None and state.iter != iteration:
        raise WeightsError(f'solver state {path} is at iteration {state.iter}, expected {iteration}')
    check_model(state.learned_net, shapes, require_all=True, what=f'solver state {path}: its learned_net')
    per_param = 2 if solver_type in _TWO_HISTORIES else 1
    expected = list(history_shapes) * per_param
    if len(state.history) != len(expected):
        raise WeightsError(f'solver state {path} holds {len(state.history)} history blobs, the net\'s '
                           f'{solver_type} solver needs {len(expected)}: a state of another net?')
    bad = [f'blob {k}: file {list(blob_shape(h))}, net {list(s)}'
           for k, (h, s) in enumerate(zip(state.history, expected))
           if not _shapes_equal(blob_shape(h), s, legacy=not h.HasField('shape'))]
    if bad:
        raise WeightsError(f'solver state {path}: history shapes differ from the net ({"; ".join(bad[:5])}'
                           f'{"; ..." if len(bad) > 5 else ""}): a state of another net?')
    return state
