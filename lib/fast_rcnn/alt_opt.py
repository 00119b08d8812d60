"""Model surgery of the 4-step alternating optimisation (the paper's steps; the released file names).

Paper step → released stage name: 1 → stage-1 RPN, 2 → stage-1 Fast R-CNN, 3 → stage-2 RPN (shared convs
frozen, initialised from step 2), 4 → stage-2 Fast R-CNN (shared convs frozen, initialised from step 3).
The final model holds the shared convs, the step-3 RPN and the step-4 head, copied by layer name.
"""

import glob
import os.path as osp

import numpy as np

from fast_rcnn.models import RELEASED_ALT_OPT_ITERS, RPN_LAYER_PREFIX, read_solver

# Solver files of the four training stages (glob patterns: the VOC ones carry their schedule in the name).
STAGE_SOLVERS = ('stage1_rpn_solver*.pt', 'stage1_fast_rcnn_solver*.pt',
                 'stage2_rpn_solver*.pt', 'stage2_fast_rcnn_solver*.pt')


def stage_solvers(net_dir):
    """The four stage solvers in ``net_dir`` (a net's ``faster_rcnn_alt_opt`` folder), in stage order.

    Raises ValueError naming the folder and pattern when a stage has no solver or several.
    """
    solvers = []
    for pattern in STAGE_SOLVERS:
        matches = sorted(glob.glob(osp.join(net_dir, pattern)))
        if len(matches) != 1:
            raise ValueError(f'expected one solver {pattern} in {net_dir}, found {len(matches) or "none"}')
        solvers.append(matches[0])
    return solvers


def stage_max_iters(solvers, overrides=None):
    """Iterations per stage: ``overrides`` if given, else each solver's max_iter, else the released ones."""
    if overrides is not None:
        return list(overrides)
    iters = []
    for solver, released in zip(solvers, RELEASED_ALT_OPT_ITERS):
        param = read_solver(solver)
        iters.append(param.max_iter if param.HasField('max_iter') else released)
    return iters


def rpn_layer_names(net):
    """Names of the RPN's parameter layers (``RPN_LAYER_PREFIX``*) of a pycaffe ``net``, in net order."""
    return [name for name in net.params if name.startswith(RPN_LAYER_PREFIX)]


def shared_layer_names(net):
    """Names of the parameter layers before the RPN: the shared convs (with their Scale layers).

    BatchNorm layers are left out: their blobs are running statistics that Caffe updates in every training
    forward pass, frozen or not, and are not parameters of the model.
    """
    names = list(net.params)
    rpn = rpn_layer_names(net)
    if not rpn:
        raise ValueError(f'net {net.name!r} has no {RPN_LAYER_PREFIX}* layer')
    first_rpn = min(names.index(name) for name in rpn)
    types = {name: layer.type for name, layer in zip(net._layer_names, net.layers)}
    return [name for name in names[:first_rpn] if types[name] != 'BatchNorm']


def merge_final_model(net, rpn_net, rpn_source='the RPN model', detector_source='the detector model'):
    """Copy the RPN layers of ``rpn_net`` (step 3) into ``net`` (holding step 4) in place.

    Both nets have the same definition. The shared convs are frozen in steps 3 and 4, so both must hold
    identical copies; anything else means the stages were not chained correctly and raises ``ValueError``
    naming the layer and the two sources. Returns ``(shared layer names, RPN layer names)``.
    """
    rpn_layers = rpn_layer_names(net)
    for name in rpn_layers:
        for dst, src in zip(net.params[name], rpn_net.params[name]):
            dst.data[...] = src.data
    shared = shared_layer_names(net)
    for name in shared:
        for a, b in zip(net.params[name], rpn_net.params[name]):
            if not np.array_equal(a.data, b.data):
                raise ValueError(f'shared layer {name} differs between {rpn_source} and {detector_source}; '
                                 'step 4 must keep the step-3 convs frozen')
    return shared, rpn_layers
