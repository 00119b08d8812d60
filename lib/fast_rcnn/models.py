"""Adapt the VOC network definitions to another class list.

The prototxts in ``models/pascal_voc/`` carry the VOC counts (21 classes, 84 box outputs). A dataset with
K classes (background included) needs ``cls_score`` with K outputs, ``bbox_pred`` with 4K outputs and every
Python layer's ``'num_classes'`` set to K. ``adapt_prototxt`` writes such a copy, so a custom class list never
needs hand edits; ``adapt_solver`` writes a solver that trains an adapted net.
"""

import re

from google.protobuf import text_format

from caffe.proto import caffe_pb2
from utils.fileio import write_text_atomic

# Layer names of the detection head (they must match released caffemodels, which load by name).
CLS_SCORE_LAYER = 'cls_score'
BBOX_PRED_LAYER = 'bbox_pred'
# Box regression outputs per class: (dx, dy, dw, dh).
BOX_DELTAS_PER_CLASS = 4
# Nets that pool RoIs are detectors and must have the head; RPN-only nets have none.
ROI_POOLING_TYPE = 'ROIPooling'
# The RPN's layers are the ones named rpn* (the released nets' rule; alt-opt copies them by this prefix).
RPN_LAYER_PREFIX = 'rpn'
# The released training lengths: alt-opt's four stages (RPN, Fast R-CNN, RPN, Fast R-CNN), end-to-end,
# and Fast R-CNN alone. Used when a solver names no max_iter.
RELEASED_ALT_OPT_ITERS = (80000, 40000, 80000, 40000)
RELEASED_END2END_ITERS = 70000
RELEASED_FAST_RCNN_ITERS = 40000


def released_max_iter(solver_param, end2end):
    """The solver's max_iter, else the released length of an end-to-end or a Fast R-CNN / RPN training."""
    if solver_param.HasField('max_iter'):
        return solver_param.max_iter
    return RELEASED_END2END_ITERS if end2end else RELEASED_FAST_RCNN_ITERS

# `'num_classes': 21` in the released YAML-ish param_str (quotes optional, either kind).
_NUM_CLASSES_RE = re.compile(r"""(?P<key>(?P<q>['"]?)num_classes(?P=q)\s*:\s*)(?P<value>\d+)""")


def read_net(path):
    """Parse a text-format NetParameter from ``path``."""
    return _read_message(path, caffe_pb2.NetParameter())


def read_solver(path):
    """Parse a text-format SolverParameter from ``path``."""
    return _read_message(path, caffe_pb2.SolverParameter())


def _read_message(path, message):
    """Merge the text-format file at ``path`` into ``message`` and return it."""
    with open(path, encoding='utf-8') as f:
        text_format.Merge(f.read(), message)
    return message


def write_message(message, path):
    """Write ``message`` to ``path`` in text format (atomically: concurrent readers see a whole file)."""
    write_text_atomic(path, text_format.MessageToString(message))


def rewrite_num_classes(param_str, num_classes):
    """Return ``param_str`` with its ``'num_classes'`` value replaced by ``num_classes``.

    The rest of the string (other keys, quoting, spacing) is kept as written.
    """
    return _NUM_CLASSES_RE.sub(lambda m: f'{m.group("key")}{num_classes}', param_str)


def _head_layers(net):
    """Return ``{name: layer}`` for the ``cls_score`` / ``bbox_pred`` layers present in ``net``."""
    return {layer.name: layer for layer in net.layer if layer.name in (CLS_SCORE_LAYER, BBOX_PRED_LAYER)}


def _is_detector(net):
    """True when ``net`` pools RoIs, i.e. it classifies regions and so needs the detection head."""
    return any(layer.type == ROI_POOLING_TYPE for layer in net.layer)


def _set_num_output(layer, num_output, source):
    """Set an InnerProduct ``layer``'s num_output; ``source`` names the prototxt in errors."""
    if layer.type != 'InnerProduct':
        raise ValueError(f'{source}: layer {layer.name!r} is a {layer.type} layer, expected InnerProduct')
    layer.inner_product_param.num_output = num_output


def adapt_net(net, num_classes, require_head=None, source='<net>'):
    """Set the class counts of NetParameter ``net`` in place for ``num_classes`` (background included).

    ``require_head``: True demands both ``cls_score`` and ``bbox_pred``; False accepts nets without them;
    None (default) demands them exactly for nets with a ROIPooling layer. A net holding only one of the two
    is always an error. ``source`` names the prototxt in error messages.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f'num_classes must be an int >= 2 (background + at least one class), '
                         f'got {num_classes!r}')
    head = _head_layers(net)
    if require_head is None:
        require_head = _is_detector(net)
    if (require_head or head) and len(head) != 2:
        missing = [name for name in (CLS_SCORE_LAYER, BBOX_PRED_LAYER) if name not in head]
        raise ValueError(f'{source}: no layer named {" or ".join(missing)}; cannot set the class count '
                         f'(a detection net needs both {CLS_SCORE_LAYER!r} and {BBOX_PRED_LAYER!r})')
    if head:
        _set_num_output(head[CLS_SCORE_LAYER], num_classes, source)
        _set_num_output(head[BBOX_PRED_LAYER], BOX_DELTAS_PER_CLASS * num_classes, source)
    for layer in net.layer:
        if layer.type == 'Python' and layer.python_param.param_str:
            layer.python_param.param_str = rewrite_num_classes(layer.python_param.param_str, num_classes)
    return net


def adapt_prototxt(src, dst, num_classes, require_head=None):
    """Write to ``dst`` a copy of the net prototxt ``src`` adapted to ``num_classes``; return ``dst``.

    ``cls_score`` gets ``num_classes`` outputs, ``bbox_pred`` 4·``num_classes``, and every Python layer's
    ``'num_classes'`` is rewritten. See ``adapt_net`` for ``require_head``.
    """
    net = adapt_net(read_net(src), num_classes, require_head=require_head, source=str(src))
    write_message(net, dst)
    return dst


def adapt_solver(src, dst, train_net_path, snapshot_prefix=None):
    """Write to ``dst`` a copy of solver ``src`` that trains ``train_net_path``; return ``dst``.

    Any ``net`` / ``train_net`` entry of ``src`` is replaced; ``snapshot_prefix`` is replaced when given.
    """
    solver = read_solver(src)
    solver.ClearField('net')
    solver.ClearField('net_param')
    solver.ClearField('train_net_param')
    solver.train_net = str(train_net_path)
    if snapshot_prefix is not None:
        solver.snapshot_prefix = str(snapshot_prefix)
    write_message(solver, dst)
    return dst
