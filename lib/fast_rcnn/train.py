"""Train a Faster R-CNN / Fast R-CNN / RPN net with Caffe's SGD solver.

Snapshots. Every ``cfg.TRAIN.SNAPSHOT_ITERS`` iterations and at the end two things are written:

* the user-facing model ``<output_dir>/<prefix>[_<infix>]_iter_<N>.caffemodel``. When the net has a
  ``bbox_pred`` layer trained on normalised targets, its weights are *unnormalised* in this file
  (W·std, b·std + mean per output) so that test code applies raw deltas;
* the training state under ``<output_dir>/train_state/``: Caffe's own snapshot (the normalised training
  weights ``…_iter_<N>.caffemodel`` and ``…_iter_<N>.solverstate``) plus a JSON sidecar
  ``…_iter_<N>.json`` holding the data layer's state (its image order, cursor and numpy's global RNG,
  which also drives RoI and anchor sampling), the target means/stds, the loss history and the
  user-facing model paths so far.

``train_net(..., resume=<solverstate>)`` restores all of it. Caffe's RNG (dropout masks) cannot be saved,
so it is reseeded with ``cfg.RNG_SEED + N`` before iteration N, in uninterrupted and resumed runs alike;
a run resumed from any snapshot therefore repeats the uninterrupted one bit for bit.

Every file is written under a temporary name and renamed when complete (``utils.fileio``); Caffe's own
snapshot goes to a private scratch folder first. The sidecar is written last, so a snapshot is complete
exactly when its sidecar is: a resume whose sidecar is missing or torn falls back to the newest complete
snapshot and says so. Before anything is restored the solver state and its model are checked against
the net (``fast_rcnn.weights``); a resumed run never rewrites the snapshot it resumed from.

SIGINT / SIGTERM during training finish the current iteration, write a snapshot and raise
``TrainingInterrupted`` (which names the solver state to resume from).

A non-finite loss stops training (``TrainingDivergedError`` naming the iteration, in Caffe's 0-based
numbering, and the last good snapshot); weights are checked to be finite before every snapshot.
"""

import glob
import json
import os
import os.path as osp
import re
import shutil
import signal
import tempfile
import threading
import time

import numpy as np

import caffe
from caffe.proto import caffe_pb2
from fast_rcnn.config import cfg
from fast_rcnn.models import BBOX_PRED_LAYER, read_solver, write_message
from fast_rcnn.weights import WeightsError, check_model, check_solverstate, learnable_shapes, net_shapes
import roi_data_layer.roidb as rdl_roidb
from utils.fileio import atomic_path, atomic_write, write_bytes_atomic, write_json_atomic
from utils.timer import format_eta

# Caffe snapshots (training weights + solverstate + sidecar) live in this sub-directory of output_dir.
TRAIN_STATE_DIR = 'train_state'
# Signals that stop training cleanly (snapshot first).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Keys every complete sidecar holds.
SIDECAR_KEYS = ('iteration', 'data_layer_state', 'bbox_means', 'bbox_stds', 'loss_history', 'model_paths')


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss or weights; the message names the iteration."""


class EmptyRoidbError(ValueError):
    """No training entry is left; the message says why."""


class TrainingInterrupted(Exception):
    """SIGINT / SIGTERM stopped training after a snapshot; ``solverstate`` resumes it."""

    def __init__(self, signum, iteration, solverstate, model_paths):
        self.signum, self.iteration, self.solverstate = signum, iteration, solverstate
        self.model_paths = list(model_paths)
        super().__init__(f'{signal.Signals(signum).name} received: training stopped after iteration '
                         f'{iteration}; snapshot {solverstate}')


def get_training_roidb(imdb):
    """The training roidb of ``imdb``: flipped copies appended when ``cfg.TRAIN.USE_FLIPPED``, prepared."""
    if cfg.TRAIN.USE_FLIPPED:
        print('Appending horizontally-flipped training examples...', flush=True)
        imdb.append_flipped_images()
    rdl_roidb.prepare_roidb(imdb)
    return imdb.roidb


def filter_roidb(roidb, fg_thresh, bg_thresh_hi, bg_thresh_lo):
    """Drop entries with no usable RoI: no foreground (max overlap ≥ ``fg_thresh``) and no background
    (max overlap in [``bg_thresh_lo``, ``bg_thresh_hi``); ``cfg.TRAIN``'s FG_THRESH, BG_THRESH_*).
    Returns a new list."""
    def is_valid(entry):
        overlaps = entry['max_overlaps']
        has_fg = np.any(overlaps >= fg_thresh)
        has_bg = np.any((overlaps < bg_thresh_hi) & (overlaps >= bg_thresh_lo))
        return has_fg or has_bg
    filtered = [entry for entry in roidb if is_valid(entry)]
    print(f'Filtered {len(roidb) - len(filtered)} roidb entries: {len(roidb)} -> {len(filtered)}', flush=True)
    if not roidb:
        raise EmptyRoidbError('the training roidb is empty: the image set lists no images')
    if not filtered:
        num_gt = sum(int(np.sum(entry['gt_classes'] > 0)) for entry in roidb)
        raise EmptyRoidbError(
            f'all {len(roidb)} training roidb entries were filtered out: none has a RoI with overlap >= '
            f'TRAIN.FG_THRESH ({fg_thresh}) or in [TRAIN.BG_THRESH_LO, TRAIN.BG_THRESH_HI) = '
            f'[{bg_thresh_lo}, {bg_thresh_hi}). The roidb holds {num_gt} ground-truth '
            f'boxes' + (' (no objects: check the annotations, the class list and TRAIN.USE_DIFFICULT)'
                        if num_gt == 0 else ' (check the proposals and the thresholds)'))
    return filtered


def run_prefix(solver_param):
    """``<prefix>[_<infix>]``: the solver's snapshot_prefix (base name) and ``cfg.TRAIN.SNAPSHOT_INFIX``."""
    infix = f'_{cfg.TRAIN.SNAPSHOT_INFIX}' if cfg.TRAIN.SNAPSHOT_INFIX else ''
    return osp.basename(solver_param.snapshot_prefix) + infix


def snapshot_name(solver_param, iteration):
    """Base name ``<prefix>[_<infix>]_iter_<N>`` of a snapshot."""
    return f'{run_prefix(solver_param)}_iter_{iteration}'


def _state_prefix(solver_param, output_dir):
    """Caffe's snapshot_prefix for the training state of this run (``output_dir/train_state/<prefix>``)."""
    return osp.join(output_dir, TRAIN_STATE_DIR, run_prefix(solver_param))


def _resolve_net_path(path, solver_prototxt):
    """A solver's ``train_net`` as an absolute path: relative paths are tried against the working
    directory, the solver's directory and ``cfg.ROOT_DIR`` (the released solvers use repo-relative ones)."""
    if osp.isabs(path):
        return path
    for base in (os.getcwd(), osp.dirname(osp.abspath(solver_prototxt)), cfg.ROOT_DIR):
        if osp.exists(osp.join(base, path)):
            return osp.abspath(osp.join(base, path))
    raise FileNotFoundError(f'{solver_prototxt}: train_net {path!r} not found')


def _write_run_solver(solver_prototxt, output_dir):
    """Copy ``solver_prototxt`` into the training-state directory for this run; return
    ``(path, param, scratch)``.

    The copy has an absolute ``train_net``, Caffe's own periodic snapshots switched off (snapshots are
    driven from here) and ``snapshot_prefix`` pointing into ``scratch``, a new private folder inside the
    training-state directory where Caffe writes its snapshot before it is moved into place (Caffe writes
    in place and records the model's path in the solver state). ``param`` is the original SolverParameter.
    """
    param = read_solver(solver_prototxt)
    if not param.HasField('train_net'):
        raise ValueError(f'{solver_prototxt}: the solver needs a train_net entry')
    run_param = read_solver(solver_prototxt)
    run_param.train_net = _resolve_net_path(param.train_net, solver_prototxt)
    run_param.snapshot = 0
    state_prefix = _state_prefix(param, output_dir)
    os.makedirs(osp.dirname(state_prefix), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix='.snapshot-', dir=osp.dirname(state_prefix))
    run_param.snapshot_prefix = osp.join(scratch, osp.basename(state_prefix))
    path = state_prefix + '_solver.prototxt'
    write_message(run_param, path)
    return path, param, scratch


def read_sidecar(path, iteration=None):
    """The sidecar dict at ``path``, or ``(None, reason)`` when it is missing, torn or not for
    ``iteration``; returns ``(sidecar, None)`` when usable."""
    if not osp.isfile(path):
        return None, 'missing'
    try:
        with open(path, encoding='utf-8') as f:
            sidecar = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f'unreadable ({exc})'
    if not isinstance(sidecar, dict) or any(key not in sidecar for key in SIDECAR_KEYS):
        return None, f'incomplete (needs keys {", ".join(SIDECAR_KEYS)})'
    if iteration is not None and sidecar['iteration'] != iteration:
        return None, f'for iteration {sidecar["iteration"]}, not {iteration}'
    return sidecar, None


_ITER_RE = re.compile(r'_iter_(\d+)\.solverstate$')


def snapshot_iteration(solverstate):
    """The iteration in a solver state's name ``…_iter_<N>.solverstate``, or None."""
    match = _ITER_RE.search(osp.basename(solverstate))
    return int(match.group(1)) if match else None


def complete_snapshots(state_dir, prefix):
    """``[(iteration, solverstate)]`` of the snapshots ``<prefix>_iter_<N>`` in ``state_dir`` whose sidecar
    is usable, newest first (the solver states themselves are checked by the caller)."""
    found = []
    for path in glob.glob(osp.join(state_dir, f'{glob.escape(prefix)}_iter_*.solverstate')):
        iteration = snapshot_iteration(path)
        if iteration is not None and read_sidecar(osp.splitext(path)[0] + '.json', iteration)[0]:
            found.append((iteration, path))
    return sorted(found, reverse=True)


def _to_json(state):
    """A dict of numpy arrays / scalars (the data layer's state) as JSON-serialisable lists and numbers."""
    return {key: np.asarray(value).tolist() for key, value in state.items()}


def unnormalize_bbox_params(weights, biases, means, stds):
    """Fold target normalisation into ``bbox_pred``: returns ``(W·std, b·std + mean)``.

    ``weights``: 4K×D, ``biases``: 4K; ``means``/``stds``: K×4 (row k = class k's (dx, dy, dw, dh)), so
    output 4k + c is scaled by ``stds[k, c]``. The returned layer predicts raw deltas.
    """
    stds_flat = np.asarray(stds, dtype=np.float64).ravel()
    means_flat = np.asarray(means, dtype=np.float64).ravel()
    return weights * stds_flat[:, np.newaxis], biases * stds_flat + means_flat


def _bbox_normalization(roidb, num_outputs):
    """Means and stds (K×4) of the regression targets this run trains on, or ``(None, None)``.

    End-to-end (``cfg.TRAIN.HAS_RPN``): the precomputed ``cfg.TRAIN.BBOX_NORMALIZE_*`` tiled over the K
    classes (the proposal-target layer normalises with them). Fast R-CNN: what
    ``add_bbox_regression_targets`` normalised with (it also writes the targets into the roidb), None when
    ``cfg.TRAIN.BBOX_NORMALIZE_TARGETS`` is false.
    ``num_outputs``: bbox_pred's output count 4K, or None when the net has no bbox_pred.
    """
    if not cfg.TRAIN.BBOX_REG:
        return None, None
    if cfg.TRAIN.HAS_RPN:
        if num_outputs is None or not cfg.TRAIN.BBOX_NORMALIZE_TARGETS:
            return None, None
        if not cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED:
            raise ValueError('end-to-end training normalises targets with precomputed statistics only: '
                             'set TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED true')
        num_classes = num_outputs // 4
        return (np.tile(np.asarray(cfg.TRAIN.BBOX_NORMALIZE_MEANS, dtype=np.float64), (num_classes, 1)),
                np.tile(np.asarray(cfg.TRAIN.BBOX_NORMALIZE_STDS, dtype=np.float64), (num_classes, 1)))
    print('Computing bounding-box regression targets...', flush=True)
    precomputed = ((cfg.TRAIN.BBOX_NORMALIZE_MEANS, cfg.TRAIN.BBOX_NORMALIZE_STDS)
                   if cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED else None)
    folded = rdl_roidb.add_bbox_regression_targets(roidb, cfg.TRAIN.BBOX_THRESH,
                                                   cfg.TRAIN.BBOX_NORMALIZE_TARGETS, precomputed)
    if folded is None:
        return None, None
    return np.asarray(folded[0], dtype=np.float64), np.asarray(folded[1], dtype=np.float64)


class SolverWrapper:
    """Caffe's SGDSolver plus the Faster R-CNN snapshot, resume and divergence logic (see module doc)."""

    def __init__(self, solver_prototxt, roidb, output_dir, pretrained_model=None, resume=None):
        """Build the solver, load ``pretrained_model`` (by layer name) or ``resume`` (a .solverstate
        written by this class), and hand ``roidb`` to the data layer (the net's first layer).

        Both files are checked against the net first (``WeightsError``); for ``pretrained_model`` the
        layers loaded and those left at their fillers are printed."""
        self.output_dir = output_dir
        run_solver, self.solver_param, self._scratch = _write_run_solver(solver_prototxt, output_dir)
        try:
            self._setup(run_solver, roidb, pretrained_model, resume)
        except BaseException:
            self.close()
            raise

    def _setup(self, run_solver, roidb, pretrained_model, resume):
        """The body of ``__init__``."""
        self.solver = caffe.SGDSolver(run_solver)
        net = self.solver.net
        num_outputs = net.params[BBOX_PRED_LAYER][1].data.size if BBOX_PRED_LAYER in net.params else None
        self.bbox_means, self.bbox_stds = _bbox_normalization(roidb, num_outputs)
        if self.bbox_means is not None and num_outputs is not None \
                and self.bbox_means.size != num_outputs:
            raise ValueError(f'{BBOX_PRED_LAYER} has {num_outputs} outputs but the roidb has '
                             f'{self.bbox_means.shape[0]} classes (4 deltas each)')
        self.loss_history = []  # (iteration, total loss, {output: value})
        self.model_paths = []
        self.resumed_iter = self.resumed_from = None
        self._stop_signal = None
        if pretrained_model is not None and resume is None:
            report = check_model(pretrained_model, net_shapes(net), what='pretrained model')
            print(f'Loading pretrained model weights from {report.summary()}', flush=True)
            net.copy_from(pretrained_model)
        net.layers[0].set_roidb(roidb)
        if resume is not None:
            self._restore(resume)

    def close(self):
        """Remove the scratch folder of Caffe's snapshots."""
        shutil.rmtree(self._scratch, ignore_errors=True)

    # ------------------------------------------------------------------ snapshots
    def _scales_bbox_pred(self):
        """True when the saved user-facing model needs bbox_pred unnormalised."""
        return self.bbox_means is not None and BBOX_PRED_LAYER in self.solver.net.params

    def _check_finite_weights(self):
        """Raise ``TrainingDivergedError`` when any parameter is non-finite."""
        for name, blobs in self.solver.net.params.items():
            for blob in blobs:
                if not np.all(np.isfinite(blob.data)):
                    raise TrainingDivergedError(
                        f'non-finite weights in layer {name!r} at iteration {self.solver.iter}; training '
                        f'stopped, nothing saved. Last good snapshot: {self._last_snapshot()}')

    def _last_snapshot(self):
        """The latest user-facing model path, or 'none'."""
        return self.model_paths[-1] if self.model_paths else 'none'

    def _save_net(self, path):
        """``net.save`` to ``path`` through a temporary name (atomic)."""
        with atomic_path(path) as temp:
            self.solver.net.save(temp)

    def snapshot(self):
        """Write the user-facing model (unnormalised bbox_pred) and the training state; return the path."""
        self._check_finite_weights()
        net = self.solver.net
        iteration = self.solver.iter
        if iteration == self.resumed_iter:
            raise RuntimeError(f'snapshot at iteration {iteration} would overwrite the snapshot this run '
                               f'resumed from')
        model_path = osp.join(self.output_dir, snapshot_name(self.solver_param, iteration) + '.caffemodel')
        # A sidecar left by an earlier run at this iteration must not vouch for the files replaced below.
        if osp.exists(self._state_path(iteration, '.json')):
            os.remove(self._state_path(iteration, '.json'))
        if self._scales_bbox_pred():
            weights = net.params[BBOX_PRED_LAYER][0].data.copy()
            biases = net.params[BBOX_PRED_LAYER][1].data.copy()
            scaled_w, scaled_b = unnormalize_bbox_params(weights, biases, self.bbox_means, self.bbox_stds)
            net.params[BBOX_PRED_LAYER][0].data[...] = scaled_w
            net.params[BBOX_PRED_LAYER][1].data[...] = scaled_b
            try:
                self._save_net(model_path)
            finally:
                # Training goes on with the normalised weights.
                net.params[BBOX_PRED_LAYER][0].data[...] = weights
                net.params[BBOX_PRED_LAYER][1].data[...] = biases
        else:
            self._save_net(model_path)
        print(f'Wrote snapshot to: {model_path}', flush=True)
        if model_path not in self.model_paths:
            self.model_paths.append(model_path)
        self._snapshot_state(iteration)
        self._write_sidecar(iteration)
        return model_path

    def _snapshot_state(self, iteration):
        """Caffe's snapshot (training weights + solver state), written in the scratch folder, moved into
        the training-state directory: the model renamed, the state rewritten to name the moved model."""
        self.solver.snapshot()
        prefix = self._scratch_prefix()
        scratch_model = f'{prefix}_iter_{iteration}.caffemodel'
        scratch_state = f'{prefix}_iter_{iteration}.solverstate'
        final_model = self._state_path(iteration, '.caffemodel')
        with atomic_path(final_model) as temp:
            shutil.move(scratch_model, temp)
        state = caffe_pb2.SolverState()
        with open(scratch_state, 'rb') as f:
            state.ParseFromString(f.read())
        state.learned_net = final_model
        write_bytes_atomic(self._state_path(iteration, '.solverstate'), state.SerializeToString())
        os.remove(scratch_state)

    def _scratch_prefix(self):
        """Caffe's snapshot prefix in the scratch folder."""
        return osp.join(self._scratch, run_prefix(self.solver_param))

    def _state_path(self, iteration, ext):
        """Path of a training-state file for ``iteration`` with extension ``ext``."""
        return f'{_state_prefix(self.solver_param, self.output_dir)}_iter_{iteration}{ext}'

    def _write_sidecar(self, iteration):
        """Write the JSON sidecar of the training state at ``iteration`` (last: it marks the snapshot
        complete)."""
        data_layer = self.solver.net.layers[0]
        sidecar = {
            'iteration': iteration,
            'data_layer_state': _to_json(data_layer.get_state()),
            'bbox_means': None if self.bbox_means is None else self.bbox_means.tolist(),
            'bbox_stds': None if self.bbox_stds is None else self.bbox_stds.tolist(),
            'loss_history': self.loss_history,
            'model_paths': self.model_paths,
        }
        write_json_atomic(self._state_path(iteration, '.json'), sidecar)

    def _check_state(self, solverstate, iteration):
        """``check_solverstate`` against this solver's net."""
        net = self.solver.net
        solver_type = self.solver_param.type if self.solver_param.HasField('type') else 'SGD'
        return check_solverstate(solverstate, net_shapes(net), learnable_shapes(net), solver_type, iteration)

    def _choose_snapshot(self, solverstate):
        """``(solverstate, sidecar)`` to resume from: ``solverstate`` when its sidecar is usable, else the
        newest complete snapshot in the same folder (said on stdout). Raises ``WeightsError`` when the
        solver state does not fit the net, ``FileNotFoundError`` when no complete snapshot exists."""
        if not osp.isfile(solverstate):
            raise FileNotFoundError(f'resume: solver state not found: {solverstate}')
        sidecar_path = osp.splitext(solverstate)[0] + '.json'
        sidecar, reason = read_sidecar(sidecar_path, snapshot_iteration(solverstate))
        if sidecar is not None:
            self._check_state(solverstate, sidecar['iteration'])
            return solverstate, sidecar
        prefix = _ITER_RE.sub('', osp.basename(solverstate))
        for iteration, candidate in complete_snapshots(osp.dirname(osp.abspath(solverstate)), prefix):
            try:
                self._check_state(candidate, iteration)
            except WeightsError as exc:
                print(f'resume: skipping {candidate}: {exc}', flush=True)
                continue
            print(f'resume: the sidecar {sidecar_path} of {solverstate} is {reason}, so that snapshot is '
                  f'incomplete; falling back to the newest complete snapshot {candidate} (iteration '
                  f'{iteration})', flush=True)
            return candidate, read_sidecar(osp.splitext(candidate)[0] + '.json', iteration)[0]
        raise FileNotFoundError(f'resume: the sidecar {sidecar_path} of {solverstate} is {reason}, and no '
                                f'complete snapshot is left in {osp.dirname(osp.abspath(solverstate))}')

    def _restore(self, solverstate):
        """Restore solver, data layer, RNGs, normalisation and history from a training-state snapshot,
        after checking it (see ``_choose_snapshot``)."""
        solverstate, sidecar = self._choose_snapshot(solverstate)
        print(f'Resuming from {solverstate}', flush=True)
        self.solver.restore(solverstate)
        if sidecar['iteration'] != self.solver.iter:
            raise ValueError(f'{solverstate} restored iteration {self.solver.iter}, its sidecar says '
                             f'{sidecar["iteration"]}')
        self.solver.net.layers[0].set_state(sidecar['data_layer_state'])
        if sidecar['bbox_means'] is not None:
            self.bbox_means = np.array(sidecar['bbox_means'])
            self.bbox_stds = np.array(sidecar['bbox_stds'])
        self.loss_history = [tuple(entry) for entry in sidecar['loss_history']]
        self.model_paths = list(sidecar['model_paths'])
        self.resumed_iter, self.resumed_from = self.solver.iter, solverstate

    # ------------------------------------------------------------------ training
    def _losses(self):
        """``(total, {output: value})`` of the last forward pass: the net's loss outputs, weighted."""
        net = self.solver.net
        weights = net.blob_loss_weights
        values = {name: float(net.blobs[name].data.sum()) for name in net.outputs if weights[name] != 0}
        return sum(weights[name] * v for name, v in values.items()), values

    def train_model(self, max_iters):
        """Step the solver up to ``max_iters`` (total, counting resumed iterations); return model paths.

        SIGINT / SIGTERM (main thread only) are caught while training: see ``TrainingInterrupted``."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                handlers[signum] = signal.signal(signum, self._on_signal)
        try:
            return self._train_loop(max_iters)
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            # The loss curve is wanted after a divergence, too.
            self.plot_losses()

    def _on_signal(self, signum, frame):
        """Remember the first stop signal; the loop acts on it after the current iteration."""
        del frame
        if self._stop_signal is None:
            self._stop_signal = signum
            print(f'{signal.Signals(signum).name} received: stopping after the current iteration '
                  f'(snapshot first)', flush=True)

    def _train_loop(self, max_iters):
        """The body of ``train_model``."""
        display = max(1, self.solver_param.display or 20)
        # A resumed run's starting point is already a snapshot: never written again.
        last_snapshot_iter = -1 if self.resumed_iter is None else self.resumed_iter
        timer_start, timer_iters = time.perf_counter(), 0
        while self.solver.iter < max_iters and self._stop_signal is None:
            iteration = self.solver.iter
            # Every iteration is a resume point (see module doc).
            caffe.set_random_seed(cfg.RNG_SEED + iteration)
            self.solver.step(1)
            total, values = self._losses()
            if not np.isfinite(total):
                raise TrainingDivergedError(
                    f'loss is {total} at iteration {iteration} ({values}); training stopped. '
                    f'Last good snapshot: {self._last_snapshot()}')
            self.loss_history.append((iteration, total, values))
            timer_iters += 1
            if self.solver.iter % display == 0 or self.solver.iter == max_iters:
                self._print_progress(iteration, min(display, timer_iters),
                                     (time.perf_counter() - timer_start) / timer_iters, max_iters)
            if cfg.TRAIN.SNAPSHOT_ITERS > 0 and self.solver.iter % cfg.TRAIN.SNAPSHOT_ITERS == 0:
                last_snapshot_iter = self.solver.iter
                self.snapshot()
        if last_snapshot_iter != self.solver.iter:
            self.snapshot()
        if self._stop_signal is not None:
            state = self.resumed_from if self.solver.iter == self.resumed_iter \
                else self._state_path(self.solver.iter, '.solverstate')
            raise TrainingInterrupted(self._stop_signal, self.solver.iter, state, self.model_paths)
        return list(self.model_paths)

    def _print_progress(self, iteration, window, per_iter, max_iters):
        """Print the losses averaged over the last ``window`` iterations, the learning rate, s/iter, ETA."""
        recent = self.loss_history[-window:]
        total = np.mean([entry[1] for entry in recent])
        parts = ', '.join(f'{name} {np.mean([entry[2][name] for entry in recent]):.4f}'
                          for name in recent[-1][2])
        print(f'Iteration {iteration}, loss = {total:.4f} ({parts}; mean of {len(recent)}), '
              f'lr = {self.solver.lr:g}, {per_iter:.3f}s/iter, '
              f'ETA {format_eta(per_iter * (max_iters - self.solver.iter))}', flush=True)

    def plot_losses(self):
        """Write ``<output_dir>/<prefix>[_<infix>]_loss.png``: total and per-output losses vs iteration,
        as moving averages over 1/50 of the run (raw total in the background)."""
        if not self.loss_history:
            return None
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        iters = np.array([entry[0] for entry in self.loss_history])
        window = max(1, len(iters) // 50)

        def smooth(values):
            return np.convolve(values, np.ones(window) / window, mode='valid')

        totals = np.array([entry[1] for entry in self.loss_history])
        fig, ax = plt.subplots(figsize=(8, 5))
        ax.plot(iters, totals, color='0.8', linewidth=0.5)
        ax.plot(iters[window - 1:], smooth(totals), label='total', linewidth=1.5)
        for name in self.loss_history[-1][2]:
            values = np.array([entry[2].get(name, np.nan) for entry in self.loss_history])
            ax.plot(iters[window - 1:], smooth(values), label=name, linewidth=1)
        ax.set_xlabel('iteration')
        ax.set_ylabel(f'loss (moving average of {window})')
        ax.set_yscale('log')
        ax.legend()
        ax.grid(True, alpha=0.3)
        path = osp.join(self.output_dir, f'{run_prefix(self.solver_param)}_loss.png')
        with atomic_write(path, 'wb') as f:
            fig.savefig(f, dpi=100, format='png')
        plt.close(fig)
        print(f'Wrote loss curve to {path}', flush=True)
        return path


def train_net(solver_prototxt, roidb, output_dir, pretrained_model=None, max_iters=40000, resume=None):
    """Train a net; returns the list of saved user-facing model paths (the last one is the final model).

    Seeds numpy and Caffe with ``cfg.RNG_SEED`` before building the solver (so fillers and data order are
    reproducible). Entries without usable RoIs are filtered out first (none left: ``ValueError`` saying
    why). ``resume``: a ``.solverstate`` under ``<output_dir>/train_state/`` to continue from. Raises
    ``TrainingDivergedError``, ``TrainingInterrupted`` (a stop signal; a snapshot was written) or
    ``fast_rcnn.weights.WeightsError`` (``pretrained_model`` / ``resume`` do not fit the net).
    """
    np.random.seed(cfg.RNG_SEED)
    caffe.set_random_seed(cfg.RNG_SEED)
    roidb = filter_roidb(roidb, cfg.TRAIN.FG_THRESH, cfg.TRAIN.BG_THRESH_HI, cfg.TRAIN.BG_THRESH_LO)
    sw = SolverWrapper(solver_prototxt, roidb, output_dir, pretrained_model=pretrained_model, resume=resume)
    print('Solving...', flush=True)
    try:
        model_paths = sw.train_model(max_iters)
    except TrainingInterrupted as exc:
        stopped = TrainingInterrupted(exc.signum, exc.iteration, exc.solverstate, exc.model_paths)
    except TrainingDivergedError as exc:
        stopped = TrainingDivergedError(str(exc))
    else:
        print('done solving', flush=True)
        return model_paths
    finally:
        sw.close()
    # Re-raised without the training frames: they would keep the solver (and its Python layers) alive
    # until interpreter shutdown, where pycaffe cannot destroy it safely.
    del sw
    raise stopped
