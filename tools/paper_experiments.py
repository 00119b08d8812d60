#!/usr/bin/env python3
"""Compute every row of the paper's tables on one net and dataset, and write the report beside the paper's.

Run by ``experiments/scripts/paper_experiments.sh`` (which provides the initial model and the dataset's
config files). Each row reuses what another row trained: the alt-opt run is the main job's (its stages 1-2
are the "unshared" system, its final model the "shared" one), the Selective Search detector is trained once
for all its ablation rows, the end-to-end run at equal wall time is the end-to-end main job's. Training and
testing run as the usual tools in child processes. The trainings are independent of each other and run
``--jobs`` at a time first (on the CPU, one per core: a TINY training gains little from a second BLAS
thread, two trainings run nearly twice as fast); the tests then run one at a time, so that their timings
(Tables 2 and 4) have the machine to themselves. Every finished step is recorded under
``output/<EXP_DIR>/paper/steps/`` (atomically), so a rerun after a kill recomputes nothing that finished.
Rows and steps (``--only``) are listed in ``fast_rcnn.paper.ROWS``.
"""

import argparse
import functools
import glob
import json
import os
import os.path as osp
import platform
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import yaml

import _init_paths  # noqa: F401
from fast_rcnn.alt_opt import stage_max_iters, stage_solvers
from fast_rcnn.config import cfg, cfg_from_file, cfg_from_list
from fast_rcnn import paper
from fast_rcnn.models import RELEASED_ALT_OPT_ITERS, read_net, read_solver, released_max_iter
from utils.fileio import write_json_atomic
from utils.timer import format_eta

TOOLS_DIR = osp.dirname(osp.abspath(__file__))
CFG_DIR = osp.join(cfg.ROOT_DIR, 'experiments', 'cfgs')
ALT_OPT_CFG = osp.join(CFG_DIR, 'faster_rcnn_alt_opt.yml')
END2END_CFG = osp.join(CFG_DIR, 'faster_rcnn_end2end.yml')
FAST_RCNN_CFG = osp.join(CFG_DIR, 'fast_rcnn.yml')
# The main jobs' experiment directories (set by their configs): their models are reused.
ALT_OPT_EXP, END2END_EXP = 'faster_rcnn_alt_opt', 'faster_rcnn_end2end'
# RPN proposal variants of the Table 1 ablations: name -> cfg.TEST settings of the proposal layer.
RPN_VARIANTS = {
    'top100': {'TEST.RPN_POST_NMS_TOP_N': 100},
    'top300': {'TEST.RPN_POST_NMS_TOP_N': 300},
    'top1k': {'TEST.RPN_POST_NMS_TOP_N': 1000},
    # "top-ranked 6k RPN proposals (without NMS)"
    'nonms6k': {'TEST.RPN_USE_NMS': False, 'TEST.RPN_PRE_NMS_TOP_N': 6000, 'TEST.RPN_POST_NMS_TOP_N': 6000},
    # "the cls layer is removed (thus no NMS/ranking is used): N proposals sampled at random"
    'nocls100': {'TEST.RPN_USE_CLS': False, 'TEST.RPN_USE_NMS': False, 'TEST.RPN_PRE_NMS_TOP_N': -1,
                 'TEST.RPN_POST_NMS_TOP_N': 100},
    'nocls300': {'TEST.RPN_USE_CLS': False, 'TEST.RPN_USE_NMS': False, 'TEST.RPN_PRE_NMS_TOP_N': -1,
                 'TEST.RPN_POST_NMS_TOP_N': 300},
    'nocls1k': {'TEST.RPN_USE_CLS': False, 'TEST.RPN_USE_NMS': False, 'TEST.RPN_PRE_NMS_TOP_N': -1,
                'TEST.RPN_POST_NMS_TOP_N': 1000},
    # "the reg layer is removed (so the proposals become anchor boxes)"
    'noreg300': {'TEST.RPN_USE_REG': False, 'TEST.RPN_POST_NMS_TOP_N': 300},
    'noreg1k': {'TEST.RPN_USE_REG': False, 'TEST.RPN_POST_NMS_TOP_N': 1000},
    # Fig. 2: up to 2k proposals (no pre-NMS cut, as for training Fast R-CNN)
    'top2k': {'TEST.RPN_PRE_NMS_TOP_N': -1, 'TEST.RPN_POST_NMS_TOP_N': 2000},
}
# Table 1 rows of the SS-trained detector on stage-1 RPN proposals.
ABLATION_ROWS = {'t1_ss_rpn_100': 'top100', 't1_ss_rpn_300': 'top300', 't1_ss_rpn_1k': 'top1k',
                 't1_ss_rpn_nonms_6k': 'nonms6k', 't1_ss_rpn_nocls_100': 'nocls100',
                 't1_ss_rpn_nocls_300': 'nocls300', 't1_ss_rpn_nocls_1k': 'nocls1k',
                 't1_ss_rpn_noreg_300': 'noreg300', 't1_ss_rpn_noreg_1k': 'noreg1k'}
RECALL_COUNTS = (300, 1000, 2000)
RECALL_THRESHOLDS = np.arange(0.5, 0.951, 0.05)


def parse_args(argv=None):
    """Command-line options (the shell script fills most of them)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--net', required=True, help='ZF, VGG16 or TINY')
    parser.add_argument('--dataset', required=True, help='the scripts\' DATASET name (for the report)')
    parser.add_argument('--train-imdb', required=True)
    parser.add_argument('--test-imdb', required=True)
    parser.add_argument('--models-dir', required=True, help='models/pascal_voc or models/synth')
    parser.add_argument('--weights', required=True, help='initial (ImageNet) model')
    parser.add_argument('--larger-weights', default=None,
                        help='initial model of the larger backbone (VGG16) for the '
                             '"RPN, larger backbone" row')
    parser.add_argument('--device', default='cpu', help='cpu or a GPU id')
    parser.add_argument('--cfg', dest='cfg_files', action='append', default=[],
                        help='dataset config file(s), merged after each method\'s config')
    parser.add_argument('--alt-opt-iters', type=int, nargs=4, default=None)
    parser.add_argument('--iters', type=int, default=None,
                        help='iterations of every single-solver training (default: each solver\'s max_iter)')
    parser.add_argument('--jobs', type=int, default=None,
                        help='trainings to run at once, each child with cores / jobs BLAS threads (default: '
                             'the cores on the CPU, 1 on a GPU); each holds its own net in memory')
    parser.add_argument('--only', default=None,
                        help='comma-separated row ids or prefixes (e.g. t1_ss,t5); their dependencies '
                             'run too')
    parser.add_argument('--report-only', action='store_true',
                        help='compute nothing: write the report from the steps recorded so far (the others '
                             'say "not computed")')
    parser.add_argument('--set', dest='set_cfgs', default=[], nargs='+', help='config KEY VALUE pairs')
    return parser.parse_args(argv)


_SAY_LOCK = threading.Lock()


def say(text):
    """Print ``text`` as whole lines (concurrent steps print from several threads)."""
    with _SAY_LOCK:
        sys.stdout.write(text + '\n')
        sys.stdout.flush()


def repo_path(path):
    """``path`` relative to the repository root (how records name files, wherever the tool runs)."""
    return osp.relpath(osp.abspath(path), cfg.ROOT_DIR)


class NotComputed(Exception):
    """``--report-only`` met a step that has no record yet."""


class PaperRun:
    """The steps of one report; each step's result is a JSON-able dict, recorded once it finished."""

    def __init__(self, args):
        self.args = args
        for path in args.cfg_files:
            cfg_from_file(path)
        if args.set_cfgs:
            cfg_from_list(args.set_cfgs)
        # The main jobs' directories, unless the user names another EXP_DIR (then everything goes there).
        pairs = dict(zip(args.set_cfgs[0::2], args.set_cfgs[1::2]))
        self.base = pairs.get('EXP_DIR', ALT_OPT_EXP)
        self.alt_opt_exp = self.base
        self.end2end_exp = END2END_EXP if self.base == ALT_OPT_EXP else f'{self.base}/end2end'
        self.root = osp.join(cfg.ROOT_DIR, 'output', self.base, 'paper')
        self.steps_dir = osp.join(self.root, 'steps')
        self.logs_dir = osp.join(self.root, 'logs')
        os.makedirs(self.logs_dir, exist_ok=True)
        self.models = osp.join(cfg.ROOT_DIR, args.models_dir, args.net)
        self.device_args = ['--cpu'] if args.device in ('cpu', '-1') else ['--gpu', args.device]
        # BLAS threads of each child while trainings run concurrently (None: the library's default)
        self.threads = None
        self.started = time.perf_counter()

    # ---------------------------------------------------------------- bookkeeping
    def _step_path(self, name):
        return osp.join(self.steps_dir, f'{name}.json')

    def step(self, name, func, inputs=None):
        """The recorded result of step ``name``, computing it with ``func()`` when there is none.

        ``inputs``: what the result depends on beyond the step's name (e.g. the initial model), recorded with
        it; a record made from other inputs is never reused (the run stops and says which file to remove).
        """
        path = self._step_path(name)
        if osp.isfile(path):
            with open(path, encoding='utf-8') as f:
                record = json.load(f)
            recorded = record.get('inputs')
            if inputs and recorded is not None and recorded != inputs:
                raise SystemExit(f'[paper] step {name} was computed from {recorded}, this run asks for '
                                 f'{inputs}: remove {path} (and its outputs) to recompute it, or run with '
                                 'the same inputs')
            return record
        if self.args.report_only:
            raise NotComputed(name)
        say(f'[paper] step {name} starts ({format_eta(time.perf_counter() - self.started)} elapsed)')
        start = time.perf_counter()
        result = func()
        result.setdefault('seconds', time.perf_counter() - start)
        if inputs:
            result['inputs'] = inputs
        os.makedirs(osp.dirname(path), exist_ok=True)
        write_json_atomic(path, result, indent=2)
        say(f'[paper] step {name} done in {result["seconds"]:.1f} s')
        return result

    def tool(self, name, script, args, cfg_files, sets):
        """Run ``tools/<script>`` with the device, config files (then the dataset's) and ``--set`` pairs;
        its output goes to the terminal and to ``logs/<name>.txt``; a failure stops the report."""
        command = [sys.executable, osp.join(TOOLS_DIR, script), *args, *self.device_args]
        for path in list(cfg_files) + self.args.cfg_files:
            command += ['--cfg', path]
        pairs = list(self.args.set_cfgs)
        for key, value in sets.items():
            pairs += [key, str(value)]
        if pairs:
            command += ['--set', *pairs]
        log_path = osp.join(self.logs_dir, f'{name}.txt')
        say('[paper] ' + ' '.join(command))
        env = dict(os.environ)
        prefix = ''
        if self.threads:  # running beside other steps: own share of the cores, lines marked with the step
            env.update({var: str(self.threads) for var in
                        ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')})
            prefix = f'[{name}] '
        with open(log_path, 'w', encoding='utf-8') as log:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       cwd=cfg.ROOT_DIR, env=env)
            for line in process.stdout:
                say(prefix + line.rstrip('\n'))
                log.write(line)
            code = process.wait()
        if code != 0:
            raise SystemExit(f'[paper] step {name} failed (exit status {code}); its log: {log_path}')

    def output_dir(self, exp_dir, imdb_name, net_name=None):
        """``output/<exp_dir>/<imdb>[/<net_name>]`` as the tools compute it."""
        from datasets.factory import canonical_imdb_name  # path.yml:split -> <name>_<split>
        parts = [cfg.ROOT_DIR, 'output', exp_dir, canonical_imdb_name(imdb_name)]
        parts += [net_name] if net_name else []
        return osp.join(*parts)

    # ---------------------------------------------------------------- training
    def alt_opt(self, name='alt_opt', exp_dir=None, train_imdb=None):
        """An alt-opt run; by default the main job's (reused when its record exists), else trained here."""
        exp_dir = exp_dir or self.alt_opt_exp
        train_imdb = train_imdb or self.args.train_imdb

        def run():
            times = osp.join(self.output_dir(exp_dir, train_imdb), f'{self.args.net}_alt_opt_times.json')
            if not osp.isfile(times):
                args = ['--net_name', self.args.net, '--weights', self.args.weights, '--imdb', train_imdb]
                if self.args.alt_opt_iters:
                    args += ['--iters', *map(str, self.args.alt_opt_iters)]
                self.tool(name, 'train_faster_rcnn_alt_opt.py', args, [ALT_OPT_CFG], {'EXP_DIR': exp_dir})
            with open(times, encoding='utf-8') as f:
                record = json.load(f)
            return {'final': record['final_model'], 'stage_models': record['stage_models'],
                    'iters': record['max_iters'], 'train_seconds': sum(record['stage_seconds'].values()),
                    'loss_dir': osp.dirname(times), 'threads': self.threads}
        return self.step(name, run, {'weights': repo_path(self.args.weights)})

    def train_single(self, name, solver, exp_dir, cfg_file, sets, weights, iters=None, train_imdb=None):
        """A single-solver training (Fast R-CNN or end-to-end) whose final model is reused when present."""
        train_imdb = train_imdb or self.args.train_imdb

        def run():
            param = read_solver(solver)
            n = iters or self.args.iters or released_max_iter(param, end2end=cfg_file == END2END_CFG)
            out = self.output_dir(exp_dir, train_imdb)
            model = osp.join(out, f'{osp.basename(param.snapshot_prefix)}_iter_{n}.caffemodel')
            start = time.perf_counter()
            if not osp.isfile(model):
                self.tool(name, 'train_net.py', ['--solver', solver, '--weights', weights, '--imdb',
                                                 train_imdb, '--iters', str(n)],
                          [cfg_file], {'EXP_DIR': exp_dir, **sets})
            if not osp.isfile(model):
                raise SystemExit(f'[paper] {name}: training finished but {model} is missing')
            return {'model': model, 'iters': n, 'train_seconds': time.perf_counter() - start, 'loss_dir': out,
                    'threads': self.threads}
        return self.step(name, run, {'weights': repo_path(weights)})

    def alt_opt_iters(self):
        """The alt-opt stages' iterations, as the alt-opt tool will take them (known before it runs)."""
        net_dir = osp.join(self.models, 'faster_rcnn_alt_opt')
        try:
            return stage_max_iters(stage_solvers(net_dir), self.args.alt_opt_iters)
        except ValueError as error:
            raise SystemExit(f'[paper] {error}')

    def training(self, name):
        """The record of training step ``name`` (one of ``paper.TRAININGS``), trained when there is none."""
        if name == 'alt_opt':
            return self.alt_opt()
        if name.startswith('end2end_'):
            return self.end2end_model(name == 'end2end_released_ratio')
        method = name[len('fast_rcnn_'):]
        return self.fast_rcnn_model(method, self.dense_sets() if method == 'dense' else None)

    def trainings(self, rows):
        """The training steps ``rows`` need (``paper.TRAININGS`` order) and the functions that compute them.
        The SS / EB proposals of the training set, which the detectors need, are computed here first: SS
        uses every core itself, so it does not run beside the trainings."""
        wanted = {name for row in rows for name in paper.row_trainings(row)}
        for method in ('selective_search', 'edge_boxes'):
            if f'fast_rcnn_{method}' in wanted:
                self.external(method, self.args.train_imdb)
        return [(name, functools.partial(self.training, name)) for name in paper.TRAININGS if name in wanted]

    def train_concurrently(self, rows, jobs):
        """Run the trainings ``rows`` need that are not recorded yet, ``jobs`` at a time, each child with its
        share of the cores' BLAS threads (one at a time they run later, when a row needs them)."""
        if self.args.report_only:
            return
        tasks = [(name, f) for name, f in self.trainings(rows) if not osp.isfile(self._step_path(name))]
        jobs = min(jobs, len(tasks))
        if jobs < 2:
            return
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        say(f'[paper] {len(tasks)} trainings, {jobs} at a time with {self.threads} BLAS thread(s) each: '
            f'{", ".join(name for name, _ in tasks)}')
        try:
            paper.run_concurrently(tasks, jobs, say=lambda text: say(
                f'{text}; {format_eta(time.perf_counter() - self.started)} elapsed'))
        finally:
            self.threads = None

    def fast_rcnn_model(self, method, sets=None, name=None, train_imdb=None):
        """The Fast R-CNN detector trained on ``method`` proposals from the initial model."""
        name = name or f'fast_rcnn_{method}'
        if method in ('selective_search', 'edge_boxes'):  # the training set's proposals (a recorded step)
            self.external(method, train_imdb or self.args.train_imdb)
        return self.train_single(name, osp.join(self.models, 'fast_rcnn', 'solver.prototxt'),
                                 f'{self.base}/paper/{name}', FAST_RCNN_CFG,
                                 {'TRAIN.PROPOSAL_METHOD': method, **(sets or {})}, self.args.weights,
                                 train_imdb=train_imdb)

    def end2end_model(self, released_ratio):
        """End-to-end training: the main job's length (equal wall time) or the released ratio to alt-opt."""
        solver = osp.join(self.models, 'faster_rcnn_end2end', 'solver.prototxt')
        if not released_ratio:
            return self.train_single('end2end_equal_time', solver, self.end2end_exp, END2END_CFG, {},
                                     self.args.weights)
        iters = paper.released_ratio_iters(self.alt_opt_iters())
        return self.train_single('end2end_released_ratio', solver, f'{self.base}/paper/end2end_ratio',
                                 END2END_CFG, {}, self.args.weights, iters=iters)

    # ---------------------------------------------------------------- proposals
    def rpn_proposals(self, which, variant):
        """RPN proposals of the test set: ``which`` is 'stage1' (unshared RPN) or 'shared' (final model)."""
        def run():
            alt = self.alt_opt()
            model = alt['stage_models']['stage1_rpn'] if which == 'stage1' else alt['final']
            path = osp.join(self.root, 'proposals', f'{which}_rpn_{variant}.npz')
            os.makedirs(osp.dirname(path), exist_ok=True)
            self.tool(f'proposals_{which}_{variant}', 'rpn_generate.py',
                      ['--def', osp.join(self.models, 'faster_rcnn_alt_opt', 'rpn_test.pt'), '--net', model,
                       '--imdb', self.args.test_imdb, '--out', path],
                      [ALT_OPT_CFG], {'EXP_DIR': f'{self.base}/paper/proposals', **RPN_VARIANTS[variant]})
            return {'file': path}
        return self.step(f'proposals_{which}_{variant}', run)['file']

    def external(self, method, imdb_name):
        """SS / EB proposals of an imdb, computed here (cached) with the tools' settings, and the seconds
        per image they took."""
        def run():
            from datasets.factory import get_imdb
            from datasets.imdb import set_proposals
            from datasets import external_proposals as ext
            imdb = get_imdb(imdb_name)
            set_proposals(imdb, method, cfg.PROPOSALS, (cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE))
            mat = imdb.released_selective_search_file()
            if method == 'selective_search' and cfg.PROPOSALS.SS_SOURCE in ('auto', 'mat') and mat:
                return {'file': mat, 'seconds_per_image': None, 'source': 'released .mat'}
            path, _ = ext.imdb_proposals(imdb, method, osp.join(imdb.cache_path, 'proposals'),
                                         max_boxes=cfg.PROPOSALS.MAX_BOXES, min_size=cfg.PROPOSALS.MIN_SIZE,
                                         workers=cfg.PROPOSALS.WORKERS or None)
            summary = ext.proposal_summary(path)
            return {'file': path, 'seconds_per_image': summary['seconds_per_image'],
                    'boxes_per_image': summary['boxes_per_image'], 'source': f'OpenCV {ext.cv2.__version__}'}
        return self.step(f'{method}_{imdb_name}', run)

    def dense_sets(self):
        """``--set`` pairs making the dense windows the net's own anchors (scales, ratios, stride)."""
        net = read_net(osp.join(self.models, 'faster_rcnn_alt_opt', 'rpn_test.pt'))
        layer = next(layer for layer in net.layer if layer.python_param.module == 'rpn.proposal_layer')
        params = yaml.safe_load(layer.python_param.param_str) or {}
        return {'PROPOSALS.DENSE_SCALES': tuple(params.get('scales', (8, 16, 32))),
                'PROPOSALS.DENSE_RATIOS': tuple(params.get('ratios', (0.5, 1, 2))),
                'PROPOSALS.DENSE_STRIDE': params['feat_stride']}

    # ---------------------------------------------------------------- testing
    def test_row(self, row, prototxt, model, cfg_file, sets, proposals=None, extra=None):
        """Test ``model`` for ``row``; returns the row's result (mAP, per-class AP, timing)."""
        def run():
            exp_dir = f'{self.base}/paper/rows/{row}'
            args = ['--def', prototxt, '--net', model, '--imdb', self.args.test_imdb]
            if proposals:
                args += ['--proposals', proposals]
            self.tool(f'row_{row}', 'test_net.py', args, [cfg_file], {'EXP_DIR': exp_dir, **sets})
            out = self.output_dir(exp_dir, self.args.test_imdb, osp.splitext(osp.basename(model))[0])
            from datasets.factory import canonical_imdb_name
            with open(osp.join(out, f'{canonical_imdb_name(self.args.test_imdb)}_eval.json'),
                      encoding='utf-8') as f:
                evaluation = json.load(f)
            with open(osp.join(out, 'timing.json'), encoding='utf-8') as f:
                timing = json.load(f)
            return {'status': 'ok', 'map': evaluation['mAP'], 'ap': evaluation['ap'],
                    'metric': evaluation['metric'], 'timing': timing['ms_per_image'],
                    'regions_per_image': timing['regions_per_image'], 'model': model, **(extra or {})}
        return self.step(f'row_{row}', run)

    def optional(self, func):
        """``func()``, or None when ``--report-only`` finds it not computed."""
        try:
            return func()
        except NotComputed:
            return None

    def not_run(self, row, reason):
        """A row this run cannot compute, with the reason (never a number)."""
        return {'status': 'not run', 'reason': reason}

    def wanted_rows(self):
        """The row ids ``--only`` selects (all by default)."""
        only = [s.strip() for s in self.args.only.split(',')] if self.args.only else None
        wanted = [r for r in paper.ROWS if only is None or any(r.startswith(p) for p in only)]
        return [r for r in wanted if r not in paper.ALIASES]

    def rows(self):
        """Every row: ``{row id: result}``, computing what ``--only`` selects (all by default)."""
        wanted = self.wanted_rows()
        fast_test = osp.join(self.models, 'fast_rcnn', 'test.prototxt')
        rpn_sets = {'TEST.HAS_RPN': True}
        results = {}
        start = time.perf_counter()  # the ETA is of the rows: the concurrent trainings came before
        for k, row in enumerate(wanted, start=1):
            try:
                results[row] = self.row(row, fast_test, rpn_sets)
            except NotComputed as missing:
                results[row] = {'status': 'not computed', 'reason': f'step {missing} has not run yet'}
            now = time.perf_counter()
            say(f'[paper] row {k}/{len(wanted)} {row}: {paper.ROWS[row][2]} {paper.ROWS[row][3]} -> '
                f'{results[row].get("map", results[row].get("reason"))}; {format_eta(now - self.started)} '
                f'elapsed, ETA {format_eta((now - start) / k * (len(wanted) - k))}')
        return results

    def row(self, row, fast_test, rpn_sets):
        """Compute one row (and whatever it needs)."""
        rpn_file = {'TEST.PROPOSAL_METHOD': 'rpn'}
        if row == 't1_rpn_shared_300':
            alt = self.alt_opt()
            return self.test_row(row, osp.join(self.models, 'faster_rcnn_alt_opt', 'faster_rcnn_test.pt'),
                                 alt['final'], ALT_OPT_CFG, rpn_sets,
                                 extra={'train_iters': alt['iters'], 'train_seconds': alt['train_seconds']})
        if row == 't1_rpn_unshared_300':
            model = self.alt_opt()['stage_models']['stage1_fast_rcnn']
            return self.test_row(row, fast_test, model, FAST_RCNN_CFG, rpn_file,
                                 self.rpn_proposals('stage1', 'top300'))
        if row in ('t1_ss_ss', 't1_eb_eb'):
            method = 'selective_search' if row == 't1_ss_ss' else 'edge_boxes'
            test_props = self.external(method, self.args.test_imdb)
            model = self.training(f'fast_rcnn_{method}')['model']
            extra = {'external_proposal_ms': 1000 * (test_props['seconds_per_image'] or 0.0),
                     'proposal_source': test_props['source']}
            return self.test_row(row, fast_test, model, FAST_RCNN_CFG, {'TEST.PROPOSAL_METHOD': method},
                                 extra=extra)
        if row in ABLATION_ROWS:
            model = self.training('fast_rcnn_selective_search')['model']
            return self.test_row(row, fast_test, model, FAST_RCNN_CFG, rpn_file,
                                 self.rpn_proposals('stage1', ABLATION_ROWS[row]))
        if row == 't1_ss_rpn_large_300':
            return self.larger_backbone_row(row, fast_test)
        if row in ('t5_dense_1scale', 't5_dense_5scale'):
            model = self.training('fast_rcnn_dense')['model']
            sets = {'TEST.PROPOSAL_METHOD': 'dense', **self.dense_sets()}
            if row == 't5_dense_5scale':
                scales, max_size = paper.scaled_test_scales(cfg.TEST.SCALES[0], cfg.TEST.MAX_SIZE)
                sets.update({'TEST.SCALES': scales, 'TEST.MAX_SIZE': max_size})
            return self.test_row(row, fast_test, model, FAST_RCNN_CFG, sets)
        if row in ('joint_end2end_equal_time', 'joint_end2end_released_ratio'):
            trained = self.training('end2end_' + row[len('joint_end2end_'):])
            return self.test_row(row, osp.join(self.models, 'faster_rcnn_end2end', 'test.prototxt'),
                                 trained['model'], END2END_CFG, rpn_sets,
                                 extra={'train_iters': trained['iters'],
                                        'train_seconds': trained['train_seconds']})
        raise KeyError(f'no recipe for row {row}')

    def larger_backbone_row(self, row, fast_test):
        """RPN of VGG-16 (trained like the stage-1 RPN) feeding the SS detector, where that is possible."""
        if self.args.net != 'ZF' or not self.args.larger_weights:
            return self.not_run(row, f'needs a larger backbone than {self.args.net} with an initial model '
                                     '(VOC: NET ZF with data/imagenet_models/VGG16.v2.caffemodel)')
        vgg = osp.join(cfg.ROOT_DIR, self.args.models_dir, 'VGG16', 'faster_rcnn_alt_opt')
        solver = glob.glob(osp.join(vgg, 'stage1_rpn_solver*.pt'))[0]
        rpn = self.train_single('rpn_vgg16', solver, f'{self.base}/paper/rpn_vgg16', ALT_OPT_CFG,
                                {'TRAIN.HAS_RPN': True, 'TRAIN.BBOX_REG': False,
                                 'TRAIN.PROPOSAL_METHOD': 'gt', 'TRAIN.IMS_PER_BATCH': 1},
                                self.args.larger_weights,
                                iters=RELEASED_ALT_OPT_ITERS[0])

        def run():
            path = osp.join(self.root, 'proposals', 'vgg16_rpn_top300.npz')
            self.tool('proposals_vgg16_top300', 'rpn_generate.py',
                      ['--def', osp.join(vgg, 'rpn_test.pt'), '--net', rpn['model'], '--imdb',
                       self.args.test_imdb, '--out', path], [ALT_OPT_CFG],
                      {'EXP_DIR': f'{self.base}/paper/proposals', **RPN_VARIANTS['top300']})
            return {'file': path}
        props = self.step('proposals_vgg16_top300', run)['file']
        model = self.training('fast_rcnn_selective_search')['model']
        return self.test_row(row, fast_test, model, FAST_RCNN_CFG, {'TEST.PROPOSAL_METHOD': 'rpn'}, props)

    def table3(self):
        """VOC 2012 test (Table 3): the server's submission archives of the four rows, each trained on its
        set (12 = voc_2012_trainval, 07++12 = VOC 2007 trainval + test + VOC 2012 trainval)."""
        if self.args.dataset != 'pascal_voc_0712':
            return {'status': 'not run', 'reason': (
                'VOC 2012 test output is written for DATASET pascal_voc_0712 (needs the VOC 2012 test images)'
                if self.args.dataset.startswith('pascal_voc') else 'no evaluation server for this dataset')}
        fast_test = osp.join(self.models, 'fast_rcnn', 'test.prototxt')
        detector = osp.join(self.models, 'faster_rcnn_alt_opt', 'faster_rcnn_test.pt')
        archives = {}
        for key, train_imdb in paper.TABLE3_TRAIN.items():
            method, data = key
            tag = f'voc2012_{method.lower()}_{data.replace("+", "p")}'
            if method == 'SS':
                model = self.fast_rcnn_model('selective_search', name=f'fast_rcnn_ss_{tag}',
                                             train_imdb=train_imdb)['model']
                archives[f'{method} {data}'] = self.server_test(tag, fast_test, model, FAST_RCNN_CFG,
                                                                {'TEST.PROPOSAL_METHOD': 'selective_search'})
            else:
                final = self.alt_opt(f'alt_opt_{tag}', f'{self.base}/paper/{tag}', train_imdb)['final']
                archives[f'{method} {data}'] = self.server_test(tag, detector, final, ALT_OPT_CFG,
                                                                {'TEST.HAS_RPN': True})
        return {'status': 'ok', 'archives': archives}

    def server_test(self, tag, prototxt, model, cfg_file, sets):
        """Detections of ``model`` on voc_2012_test as the evaluation server's archive; returns its path."""
        def run():
            exp_dir = f'{self.base}/paper/rows/{tag}'
            self.tool(f'test_{tag}', 'test_net.py',
                      ['--def', prototxt, '--net', model, '--imdb', paper.VOC2012_TEST], [cfg_file],
                      {'EXP_DIR': exp_dir, **sets})
            out = self.output_dir(exp_dir, paper.VOC2012_TEST, osp.splitext(osp.basename(model))[0])
            archive = osp.join(out, f'{paper.VOC2012_TEST}_comp4_results.tar.gz')
            if not osp.isfile(archive):
                raise SystemExit(f'[paper] {tag}: test_net finished but {archive} is missing')
            return {'archive': archive}
        return self.step(f'test_{tag}', run)['archive']

    # ---------------------------------------------------------------- figures and analyses
    def recall(self):
        """Fig. 2: recall vs IoU of SS, EB and the shared RPN at 300 / 1k / 2k on the test set (PNG)."""
        def run():
            from datasets.factory import get_imdb
            from datasets.imdb import load_box_list
            imdb = get_imdb(self.args.test_imdb)
            files = {'RPN': self.rpn_proposals('shared', 'top2k'),
                     'SS': self.external('selective_search', self.args.test_imdb)['file'],
                     'EB': self.external('edge_boxes', self.args.test_imdb)['file']}
            curves, means = {}, {}
            for method, path in files.items():
                if path.endswith('.mat'):
                    from datasets import external_proposals as ext
                    boxes = ext.clean_released(ext.load_released_mat(path, imdb.image_index))
                else:
                    boxes = load_box_list(path, imdb.image_index)
                curves[method], means[method] = {}, {}
                for n in RECALL_COUNTS:
                    result = imdb.evaluate_recall(boxes, thresholds=RECALL_THRESHOLDS, limit=n)
                    curves[method][str(n)] = result['recalls'].tolist()
                    means[method][str(n)] = result['ar']
            png = osp.join(self.root, 'fig2_recall.png')
            plot_recall(curves, RECALL_THRESHOLDS, png, self.args.test_imdb)
            return {'curves': curves, 'mean_recall': means, 'png': png}
        return self.step('recall', run)

    def anchor_sizes(self):
        """The learned average proposal size per anchor of the shared RPN on the test set."""
        def run():
            from _common import init_caffe, open_test_net
            from datasets.factory import get_imdb
            from fast_rcnn.test import detect_settings
            from rpn.generate import anchor_proposal_sizes
            for path in [ALT_OPT_CFG] + self.args.cfg_files:
                cfg_from_file(path)
            if self.args.set_cfgs:
                cfg_from_list(self.args.set_cfgs)
            cfg.GPU_ID = -1 if self.device_args == ['--cpu'] else int(self.args.device)
            init_caffe()
            imdb = get_imdb(self.args.test_imdb)
            net = open_test_net(osp.join(self.models, 'faster_rcnn_alt_opt', 'rpn_test.pt'),
                                self.alt_opt()['final'], imdb.num_classes, osp.join(self.root, 'prototxt'))
            return {'anchors': anchor_proposal_sizes(net, imdb, detect_settings(cfg), cfg.TEST),
                    'test_scale': cfg.TEST.SCALES[0]}
        return self.step('anchor_sizes', run)

    def loss_curves(self, steps):
        """Copy the training loss PNGs of the runs behind the report into the report's folder."""
        names = []
        for label, record in steps.items():
            for path in sorted(glob.glob(osp.join(record['loss_dir'], '*_loss.png'))):
                name = f'loss_{label}_{osp.basename(path)}'
                shutil.copyfile(path, osp.join(self.root, name))
                names.append(name)
        return names


def plot_recall(curves, thresholds, png, imdb_name):
    """Three panels (300 / 1k / 2k proposals) of recall vs IoU, one line per method, like Fig. 2."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(RECALL_COUNTS), figsize=(13, 4), sharey=True)
    for ax, n in zip(axes, RECALL_COUNTS):
        for method, by_count in curves.items():
            ax.plot(thresholds, by_count[str(n)], marker='.', label=method)
        ax.set_title(f'{n} proposals')
        ax.set_xlabel('IoU overlap ratio')
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel(f'recall ({imdb_name})')
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def device_name(device):
    """What the timings ran on, in words."""
    if device not in ('cpu', '-1'):
        return f'GPU {device}'
    model = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo', encoding='utf-8')
                  if line.startswith('model name')), platform.processor() or 'CPU')
    return f'CPU ({os.cpu_count()} cores, {model})'


def main(argv=None):
    """Compute the selected rows, the figures and the report."""
    args = parse_args(argv)
    run = PaperRun(args)
    from datasets.factory import get_imdb
    test_imdb = get_imdb(args.test_imdb)
    jobs = args.jobs or ((os.cpu_count() or 1) if args.device in ('cpu', '-1') else 1)
    run.train_concurrently(run.wanted_rows(), jobs)
    results = run.rows()
    only = args.only.split(',') if args.only else None
    recall = run.optional(run.recall) if only is None or 'fig2' in only else None
    anchors = run.optional(run.anchor_sizes) if only is None or 'anchors' in only else None
    trained = {'alt_opt': run.alt_opt()} if osp.isfile(run._step_path('alt_opt')) else {}
    for name in ('fast_rcnn_selective_search', 'fast_rcnn_edge_boxes', 'fast_rcnn_dense',
                 'end2end_equal_time', 'end2end_released_ratio'):
        if osp.isfile(run._step_path(name)):
            with open(run._step_path(name), encoding='utf-8') as f:
                trained[name] = json.load(f)
    pictures = (['fig2_recall.png'] if recall else []) + run.loss_curves(trained)
    if only is None or any('t3'.startswith(p) or p.startswith('t3') for p in only):
        results['t3_voc2012_test'] = run.optional(run.table3) or {
            'status': 'not computed', 'reason': 'its steps have not run yet'}
    ss_source = (results.get('t1_ss_ss') or {}).get('proposal_source')
    notes = [f'Selective Search: {ss_source}, "fast" mode; EdgeBoxes: OpenCV ximgproc on a Sobel edge map '
             '(not the structured-forest edges of the EB paper; see datasets/external_proposals.py).'
             if ss_source else '']
    if args.net == 'TINY':
        notes.append('TINY normalises with per-batch statistics (batch norm at test time too): the 5-scale '
                     'test puts the five scales in one batch, so its statistics differ from training.')
    notes.append(f'Every trained row starts from the initial model {repo_path(args.weights)}.')
    threads = sorted({r['threads'] for r in trained.values() if r.get('threads')})
    if threads:
        notes.append(f'The trainings ran several at a time, with {" or ".join(map(str, threads))} BLAS '
                     'thread(s) each: their training seconds compare with each other, not with a training '
                     'that has the machine to itself. The tests ran one at a time.')
    meta = {'net': args.net, 'dataset': args.dataset, 'train_imdb': args.train_imdb,
            'test_imdb': args.test_imdb, 'device': device_name(args.device),
            'classes': list(test_imdb.classes[1:]),
            'voc_classes': tuple(test_imdb.classes[1:]) == paper.VOC_CLASS_ORDER,
            'trained_on_0712': '2012' in args.train_imdb, 'test_scale': cfg.TEST.SCALES[0],
            'notes': [n for n in notes if n]}
    text = paper.write_report(results, run.root, meta,
                              recall=recall['mean_recall'] if recall else None,
                              anchors=anchors['anchors'] if anchors else None, pictures=pictures)
    print(text, flush=True)
    print(f'[paper] wrote {osp.join(run.root, "report.md")} and report.json; total '
          f'{format_eta(time.perf_counter() - run.started)}', flush=True)


if __name__ == '__main__':
    main()
