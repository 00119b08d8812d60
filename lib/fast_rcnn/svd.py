"""Truncated SVD of a detector's fully connected layers (Fast R-CNN, section 3.1; released compress_net).

A layer ``y = W x + b`` (W: out×in) becomes two: ``fc_L`` (``z = L x``, L = Σ_k V_kᵀ: k×in, no bias) and
``fc_U`` (``y = U_k z + b``, U_k: out×k), costing k·(in + out) multiply-adds per input instead of
in·out. For any input x the output changes by at most ``σ_{k+1} · ||x||₂`` (σ the singular values of W in
descending order; 0 when k = rank W): the spectral norm of W − U_k Σ_k V_kᵀ is σ_{k+1}.

The compressed net keeps every other layer; ``fc_U`` writes the original layer's top, so the layers after
it (ReLU, dropout, the next fc) are unchanged, and ``fc_L`` writes ``<name>_L``.
"""

import numpy as np

from caffe.proto import caffe_pb2

# The released compress_net's layer names: <fc>_L then <fc>_U.
LOWER_SUFFIX = '_L'
UPPER_SUFFIX = '_U'
# The released defaults for VGG-16 (fc6: 25088 -> 4096, fc7: 4096 -> 4096).
DEFAULT_RANKS = {'fc6': 1024, 'fc7': 256}


def truncated_svd(weights, rank):
    """Factor ``weights`` (out×in) at ``rank``.

    Returns ``(lower, upper, sigma)``: ``lower`` = Σ_k V_kᵀ (rank×in), ``upper`` = U_k (out×rank), both
    float32 (computed in float64), and ``sigma``: all singular values (float64, descending).
    Raises ValueError unless 1 ≤ rank ≤ min(out, in).
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f'weights must be a matrix (out x in), got shape {weights.shape}')
    if not 1 <= rank <= min(weights.shape):
        raise ValueError(f'rank {rank} is outside [1, {min(weights.shape)}] for weights of shape '
                         f'{weights.shape}')
    u, sigma, vt = np.linalg.svd(weights, full_matrices=False)
    lower = sigma[:rank, np.newaxis] * vt[:rank]
    return lower.astype(np.float32), u[:, :rank].astype(np.float32), sigma


def error_bound(sigma, rank):
    """σ_{k+1} for ``rank`` = k: the largest ||W x − U_k Σ_k V_kᵀ x||₂ / ||x||₂ (0 when k ≥ len(sigma))."""
    return float(sigma[rank]) if rank < len(sigma) else 0.0


def macs_saved(in_dim, out_dim, rank):
    """Multiply-adds per input: ``(full, compressed)`` = (in·out, rank·(in + out))."""
    return in_dim * out_dim, rank * (in_dim + out_dim)


def compress_net_param(net, ranks, source):
    """A copy of NetParameter ``net`` with every layer named in ``ranks`` (name → rank) split in two.

    Each named layer must be an InnerProduct layer on axis 1 with one bottom and one top. ``<name>_L``
    (num_output = rank, no bias) reads the bottom and writes ``<name>_L``; ``<name>_U`` (num_output as the
    original, bias as the original) reads ``<name>_L`` and writes the original top. ``source`` names the
    prototxt in errors. Ranks are checked against the weights by ``compress_weights``.
    """
    by_name = {layer.name: layer for layer in net.layer}
    for name, rank in ranks.items():
        layer = by_name.get(name)
        if layer is None:
            raise ValueError(f'{source}: no layer named {name!r} to compress')
        if layer.type != 'InnerProduct':
            raise ValueError(f'{source}: layer {name!r} is a {layer.type} layer, expected InnerProduct')
        if len(layer.bottom) != 1 or len(layer.top) != 1 or layer.inner_product_param.axis != 1:
            raise ValueError(f'{source}: layer {name!r} must have one bottom, one top and axis 1')
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f'rank of {name!r} must be a positive int, got {rank!r}')
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    for layer in net.layer:
        if layer.name not in ranks:
            out.layer.add().CopyFrom(layer)
            continue
        lower = out.layer.add()
        lower.CopyFrom(layer)
        lower.name = layer.name + LOWER_SUFFIX
        del lower.top[:]
        lower.top.append(layer.name + LOWER_SUFFIX)
        lower.inner_product_param.num_output = ranks[layer.name]
        lower.inner_product_param.bias_term = False
        lower.inner_product_param.ClearField('bias_filler')
        del lower.param[1:]
        upper = out.layer.add()
        upper.CopyFrom(layer)
        upper.name = layer.name + UPPER_SUFFIX
        del upper.bottom[:]
        upper.bottom.append(layer.name + LOWER_SUFFIX)
    return out


def compress_weights(full, compressed, ranks):
    """Fill the pycaffe net ``compressed`` (from ``compress_net_param``) from ``full``.

    Every parameter blob of ``full`` is copied by layer name; each layer in ``ranks`` is factored with
    ``truncated_svd`` into ``<name>_L`` / ``<name>_U`` (the bias goes to ``<name>_U``). Returns
    ``{name: {'rank', 'in', 'out', 'bound', 'sigma'}}`` with the error bound per unit input norm.
    Raises ValueError when a rank does not fit the layer's weights.
    """
    info = {}
    for name, blobs in full.params.items():
        if name in ranks:
            weights = blobs[0].data
            rank = ranks[name]
            if rank >= min(weights.shape):
                raise ValueError(f'rank {rank} of {name!r} saves nothing: its weights are {weights.shape[0]}x'
                                 f'{weights.shape[1]} (use a rank below {min(weights.shape)})')
            lower, upper, sigma = truncated_svd(weights, rank)
            compressed.params[name + LOWER_SUFFIX][0].data[...] = lower
            compressed.params[name + UPPER_SUFFIX][0].data[...] = upper
            if len(blobs) > 1:
                compressed.params[name + UPPER_SUFFIX][1].data[...] = blobs[1].data
            info[name] = {'rank': rank, 'in': int(weights.shape[1]), 'out': int(weights.shape[0]),
                          'bound': error_bound(sigma, rank), 'sigma': sigma}
            continue
        if name not in compressed.params:
            raise ValueError(f'compressed net lacks layer {name!r} of the full net')
        for src, dst in zip(blobs, compressed.params[name]):
            dst.data[...] = src.data
    missing = [name for name in ranks if name not in info]
    if missing:
        raise ValueError(f'full net has no parameters for {missing}')
    return info
