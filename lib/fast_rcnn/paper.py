"""The paper's experiments as named rows, the paper's numbers, and the report that puts ours beside them.

Every row of Tables 1-5 (and Fig. 2, the anchor-size table of section 3.1, the per-class APs of Tables
6/7) has an id (``ROWS``); ``tools/paper_experiments.py`` computes the rows and stores one result dict per
row; ``write_report`` turns them into ``report.md`` + ``report.json``; ``check_claims`` says which of the
paper's claims hold on the data, with the numbers. mAPs are fractions (0.587), as the evaluation returns
them; the paper's percentages are stored the same way.

A result dict: ``{'status': 'ok', 'map': float, 'ap': {class: AP}, 'timing': {segment: ms},
'regions_per_image': float}``, ``{'status': 'not run', 'reason': str}`` (cannot be computed here) or
``{'status': 'not computed', 'reason': str}`` (a report written before the row's steps ran).
"""

import json
import math
import os
import os.path as osp
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from fast_rcnn.models import RELEASED_ALT_OPT_ITERS, RELEASED_END2END_ITERS
from utils.fileio import write_text_atomic

# ----------------------------------------------------------------------------------------------------------
# The paper's numbers (Ren et al., NIPS 2015). Tables 1 and 5 use ZF, Tables 2, 3, 6, 7 VGG-16.
# ----------------------------------------------------------------------------------------------------------

# Row id -> (table, train-time proposals, test-time proposals, test count, paper mAP or None).
ROWS = {
    't1_ss_ss': ('1', 'SS 2k', 'SS', '2k', 0.587),
    't1_eb_eb': ('1', 'EB 2k', 'EB', '2k', 0.586),
    't1_rpn_shared_300': ('1', 'RPN shared 2k', 'RPN shared', '300', 0.599),
    't1_rpn_unshared_300': ('1', 'RPN unshared 2k', 'RPN unshared', '300', 0.587),
    't1_ss_rpn_100': ('1', 'SS 2k', 'RPN', '100', 0.551),
    't1_ss_rpn_300': ('1', 'SS 2k', 'RPN', '300', 0.568),
    't1_ss_rpn_1k': ('1', 'SS 2k', 'RPN', '1k', 0.563),
    't1_ss_rpn_nonms_6k': ('1', 'SS 2k', 'RPN (no NMS)', '6k', 0.552),
    't1_ss_rpn_nocls_100': ('1', 'SS 2k', 'RPN (no cls)', '100', 0.446),
    't1_ss_rpn_nocls_300': ('1', 'SS 2k', 'RPN (no cls)', '300', 0.514),
    't1_ss_rpn_nocls_1k': ('1', 'SS 2k', 'RPN (no cls)', '1k', 0.558),
    't1_ss_rpn_noreg_300': ('1', 'SS 2k', 'RPN (no reg)', '300', 0.521),
    't1_ss_rpn_noreg_1k': ('1', 'SS 2k', 'RPN (no reg)', '1k', 0.513),
    't1_ss_rpn_large_300': ('1', 'SS 2k', 'RPN, larger backbone', '300', 0.592),
    't5_dense_1scale': ('5', 'dense 3x3', 'dense, Fast R-CNN 1 scale', '~20k', 0.538),
    't5_dense_5scale': ('5', 'dense 3x3', 'dense, Fast R-CNN 5 scales', '~20k', 0.539),
    'joint_alt_opt': ('joint', 'alt-opt (4 steps)', 'RPN shared', '300', None),
    'joint_end2end_equal_time': ('joint', 'end-to-end, equal wall time', 'RPN', '300', None),
    'joint_end2end_released_ratio': ('joint', 'end-to-end, released iteration ratio', 'RPN', '300', None),
}
# Rows whose result is another row's (the same trained model tested the same way).
ALIASES = {'joint_alt_opt': 't1_rpn_shared_300'}
# Table 2 (VGG-16, VOC 2007 test): row -> (proposals, training data, paper mAP, paper ms per image).
TABLE2 = (('SS', '2k', '07', 0.669, 1830, 't1_ss_ss'),
          ('SS', '2k', '07+12', 0.700, 1830, 't1_ss_ss'),
          ('RPN+VGG, unshared', '300', '07', 0.685, 342, 't1_rpn_unshared_300'),
          ('RPN+VGG, shared', '300', '07', 0.699, 198, 't1_rpn_shared_300'),
          ('RPN+VGG, shared', '300', '07+12', 0.732, 198, 't1_rpn_shared_300'))
# Table 3 (VGG-16, VOC 2012 test, evaluated by the server): (proposals, data, paper mAP).
TABLE3 = (('SS', '2k', '12', 0.657), ('SS', '2k', '07++12', 0.684),
          ('RPN+VGG, shared', '300', '12', 0.670), ('RPN+VGG, shared', '300', '07++12', 0.704))
# The image set of Table 3 and the training set of each of its rows (the paper's "12" and "07++12").
VOC2012_TEST = 'voc_2012_test'
TABLE3_TRAIN = {('SS', '12'): 'voc_2012_trainval',
                ('SS', '07++12'): 'voc_2007_trainval+voc_2007_test+voc_2012_trainval',
                ('RPN', '12'): 'voc_2012_trainval',
                ('RPN', '07++12'): 'voc_2007_trainval+voc_2007_test+voc_2012_trainval'}
# Table 4 (ms on a K40, SS on a CPU): system, our row, paper (conv, proposal, region-wise, total) for VGG-16
# and for ZF (the paper times ZF with RPN only).
TABLE4 = (('SS + Fast R-CNN', 't1_ss_ss', (146, 1510, 174, 1830), None),
          ('RPN + Fast R-CNN', 't1_rpn_shared_300', (141, 10, 47, 198), (31, 3, 25, 59)))
# Section 3.1: learned average proposal size (w x h, s = 600) per anchor (area, ratio h:w as the paper
# writes "2:1" for a wide box), ZF.
ANCHOR_TABLE = {(128, 0.5): (188, 111), (128, 1.0): (113, 114), (128, 2.0): (70, 92),
                (256, 0.5): (416, 229), (256, 1.0): (261, 284), (256, 2.0): (174, 332),
                (512, 0.5): (768, 437), (512, 1.0): (499, 501), (512, 2.0): (355, 715)}
# Tables 6 (VOC 2007 test) per-class APs of VGG-16, in VOC class order, for the matching rows.
VOC_CLASS_ORDER = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
                   'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
                   'train', 'tvmonitor')
TABLE6 = {
    ('SS', '07'): (74.5, 78.3, 69.2, 53.2, 36.6, 77.3, 78.2, 82.0, 40.7, 72.7, 67.9, 79.6, 79.2, 73.0, 69.0,
                   30.1, 65.4, 70.2, 75.8, 65.8),
    ('RPN*', '07'): (74.1, 77.2, 67.7, 53.9, 51.0, 75.1, 79.2, 78.9, 50.7, 78.0, 61.1, 79.1, 81.9, 72.2, 75.9,
                     37.2, 71.4, 62.5, 77.4, 66.4),
    ('RPN', '07'): (70.0, 80.6, 70.1, 57.3, 49.9, 78.2, 80.4, 82.0, 52.2, 75.3, 67.2, 80.3, 79.8, 75.0, 76.3,
                    39.1, 68.3, 67.3, 81.1, 67.6),
}
TABLE6_ROWS = {('SS', '07'): 't1_ss_ss', ('RPN*', '07'): 't1_rpn_unshared_300',
               ('RPN', '07'): 't1_rpn_shared_300'}
# Fast R-CNN's five test scales (Table 5, from [5]) for a single training scale of 600, and its max size.
FIVE_SCALES = (480, 576, 688, 864, 1200)
FIVE_SCALES_BASE = 600
FIVE_SCALES_MAX_SIZE = 2000


def released_ratio_iters(alt_opt_iters):
    """End-to-end iterations that give alt-opt the released 240k : 70k ratio over ``alt_opt_iters``."""
    return int(round(sum(alt_opt_iters) * RELEASED_END2END_ITERS / sum(RELEASED_ALT_OPT_ITERS)))


# The trainings the rows need, longest first on TINY / synth: the order they start in when several run at
# once, so that the last ones to start are short. Each starts from the initial model only (the
# released-ratio length comes from the alt-opt solvers, not from the alt-opt run), so any may run beside any.
TRAININGS = ('end2end_equal_time', 'alt_opt', 'fast_rcnn_selective_search', 'fast_rcnn_edge_boxes',
             'fast_rcnn_dense', 'end2end_released_ratio')


def row_trainings(row):
    """The ``TRAININGS`` row ``row`` tests (the larger-backbone and Table 3 rows train their own, later)."""
    if row in ('t1_rpn_shared_300', 't1_rpn_unshared_300'):
        return ['alt_opt']
    if row == 't1_ss_ss':
        return ['fast_rcnn_selective_search']
    if row == 't1_eb_eb':
        return ['fast_rcnn_edge_boxes']
    if row.startswith('t1_ss_rpn_') and row != 't1_ss_rpn_large_300':
        return ['fast_rcnn_selective_search', 'alt_opt']  # the SS detector on stage-1 RPN proposals
    if row.startswith('t5_dense'):
        return ['fast_rcnn_dense']
    if row.startswith('joint_end2end_'):
        return ['end2end_' + row[len('joint_end2end_'):]]
    return []


def run_concurrently(tasks, jobs, say=print):
    """Run ``tasks`` (``[(name, function)]``, independent of each other) ``jobs`` at a time, in list order.

    Returns ``{name: function()}``. When one fails, the ones not started yet are dropped, the running ones
    finish (their results are kept by whoever records them) and the first failure is raised again.
    """
    results, failures = {}, []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pending = {}
        for name, function in tasks:
            pending[pool.submit(function)] = name
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                name = pending.pop(future)
                if future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    results[name] = future.result()
                    say(f'[paper] {len(results)}/{len(tasks)} concurrent steps done: {name}')
                    continue
                failures.append(error)
                dropped = [pending[f] for f in pending if f.cancel()]
                say(f'[paper] {name} failed ({error}); not starting {", ".join(dropped) or "nothing"}; '
                    'waiting for the running steps to finish (their results are kept)')
    if failures:
        raise failures[0]
    return results


def scaled_test_scales(test_scale, max_size):
    """The five scales and max size of Fast R-CNN's multi-scale test, scaled from 600 to ``test_scale``."""
    factor = test_scale / FIVE_SCALES_BASE
    return tuple(int(round(s * factor)) for s in FIVE_SCALES), int(round(FIVE_SCALES_MAX_SIZE * factor))


# ----------------------------------------------------------------------------------------------------------
# Claims
# ----------------------------------------------------------------------------------------------------------

# Tolerances (mAP, as a fraction) for "close to" / "hurts" in the claims below.
CLOSE = 0.02
HURTS = 0.02


def _map(results, row):
    """The mAP of ``row`` or None when it was not computed."""
    entry = results.get(ALIASES.get(row, row)) or {}
    return entry.get('map') if entry.get('status') == 'ok' else None


def check_claims(results, recall=None):
    """The paper's claims, each measured on ``results``: a list of ``(claim, verdict, evidence)`` with
    verdict ``'holds'``, ``'does not hold'`` or ``'not measured'``. ``recall``: the Fig. 2 recall dict
    (method -> {N: recall at IoU 0.5 ... 0.95 mean}) when computed."""
    m = {row: _map(results, row) for row in ROWS}

    def claim(text, rows, test, evidence):
        values = [m[r] for r in rows]
        if any(v is None for v in values):
            return text, 'not measured', 'needs ' + ', '.join(r for r, v in zip(rows, values) if v is None)
        return text, 'holds' if test(*values) else 'does not hold', evidence(*values)

    def fmt(*pairs):
        return ', '.join(f'{name} {value:.4f}' for name, value in pairs)

    claims = [
        claim('sharing conv layers helps: shared >= unshared (RPN, 300)',
              ['t1_rpn_shared_300', 't1_rpn_unshared_300'], lambda a, b: a >= b,
              lambda a, b: fmt(('shared', a), ('unshared', b))),
        claim('RPN 300 (shared) >= Selective Search 2k', ['t1_rpn_shared_300', 't1_ss_ss'],
              lambda a, b: a >= b, lambda a, b: fmt(('RPN 300', a), ('SS 2k', b))),
        claim(f'SS and EB are on par (within {CLOSE:.2f})', ['t1_ss_ss', 't1_eb_eb'],
              lambda a, b: abs(a - b) <= CLOSE, lambda a, b: fmt(('SS', a), ('EB', b))),
        claim(f'top-100 RPN proposals are close to top-300 (within {CLOSE:.2f})',
              ['t1_ss_rpn_100', 't1_ss_rpn_300'], lambda a, b: abs(a - b) <= CLOSE,
              lambda a, b: fmt(('100', a), ('300', b))),
        claim(f'no cls hurts at 100 (by > {HURTS:.2f}) but not at 1k (within {CLOSE:.2f})',
              ['t1_ss_rpn_100', 't1_ss_rpn_nocls_100', 't1_ss_rpn_1k', 't1_ss_rpn_nocls_1k'],
              lambda a, b, c, d: a - b > HURTS and abs(c - d) <= CLOSE,
              lambda a, b, c, d: fmt(('cls 100', a), ('no cls 100', b), ('cls 1k', c), ('no cls 1k', d))),
        claim(f'no reg hurts (300: by > {HURTS:.2f})', ['t1_ss_rpn_300', 't1_ss_rpn_noreg_300'],
              lambda a, b: a - b > HURTS, lambda a, b: fmt(('reg 300', a), ('no reg 300', b))),
        claim(f'NMS does not hurt: RPN 300 with NMS >= 6k without NMS - {CLOSE:.2f}',
              ['t1_ss_rpn_300', 't1_ss_rpn_nonms_6k'], lambda a, b: a >= b - CLOSE,
              lambda a, b: fmt(('NMS 300', a), ('no NMS 6k', b))),
        claim('two-stage (RPN unshared 300) > one-stage dense (1 and 5 scales)',
              ['t1_rpn_unshared_300', 't5_dense_1scale', 't5_dense_5scale'],
              lambda a, b, c: a > b and a > c,
              lambda a, b, c: fmt(('two-stage', a), ('dense 1 scale', b), ('dense 5 scales', c))),
        claim('a larger backbone gives better RPN proposals (SS detector, 300)',
              ['t1_ss_rpn_large_300', 't1_ss_rpn_300'], lambda a, b: a > b,
              lambda a, b: fmt(('larger', a), ('same backbone', b))),
        claim(f'alternating optimisation and end-to-end training are on par at equal wall time '
              f'(within {CLOSE:.2f})', ['joint_alt_opt', 'joint_end2end_equal_time'],
              lambda a, b: abs(a - b) <= CLOSE, lambda a, b: fmt(('alt-opt', a), ('end-to-end', b))),
        claim(f'... and at the released iteration ratio (alt-opt 240k : end-to-end 70k, within {CLOSE:.2f})',
              ['joint_alt_opt', 'joint_end2end_released_ratio'],
              lambda a, b: abs(a - b) <= CLOSE, lambda a, b: fmt(('alt-opt', a), ('end-to-end', b))),
    ]
    shared = results.get('t1_rpn_shared_300') or {}
    timing = shared.get('timing') if shared.get('status') == 'ok' else None
    if timing:
        conv, prop = timing.get('conv+RPN', 0.0), timing.get('proposal', 0.0)
        claims.append(('the proposal step costs little next to the conv layers (< 1/4)',
                       'holds' if prop < conv / 4 else 'does not hold',
                       f'proposal {prop:.1f} ms, conv+RPN {conv:.1f} ms per image'))
    else:
        claims.append(('the proposal step costs little next to the conv layers (< 1/4)', 'not measured',
                       'needs t1_rpn_shared_300'))
    if recall and all(method in recall for method in ('RPN', 'SS', 'EB')):
        drops = {method: recall[method]['2000'] - recall[method]['300'] for method in ('RPN', 'SS', 'EB')}
        claims.append(('RPN recall degrades less than SS / EB from 2k to 300 proposals (mean recall over '
                       'IoU 0.5-0.95)', 'holds' if drops['RPN'] < min(drops['SS'], drops['EB']) else
                       'does not hold', ', '.join(f'{k} drop {v:.3f}' for k, v in drops.items())))
    else:
        claims.append(('RPN recall degrades less than SS / EB from 2k to 300 proposals', 'not measured',
                       'needs the Fig. 2 recalls'))
    return claims


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------

def _pct(value):
    """A fraction as a percentage with one decimal, or a dash."""
    return '—' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{100 * value:.1f}'


def _ours(results, row):
    """Our value of ``row`` for a table cell: the mAP, or 'not run (reason)'."""
    entry = results.get(ALIASES.get(row, row))
    if not entry:
        return 'not computed'
    if entry.get('status') != 'ok':
        return f'{entry.get("status", "not run")} ({entry.get("reason", "?")})'
    return _pct(entry['map'])


def _diff(results, row, paper):
    """Ours minus the paper's, in points, or a dash."""
    ours = _map(results, row)
    return '—' if ours is None or paper is None else f'{100 * (ours - paper):+.1f}'


def _table(header, rows):
    """A Markdown table."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def _timing(results, row):
    """(conv, proposal, region-wise, total) ms of a row's test run, or None."""
    entry = results.get(row) or {}
    timing = entry.get('timing') if entry.get('status') == 'ok' else None
    if not timing:
        return None
    conv = timing.get('conv+RPN', 0.0)
    proposal = timing.get('proposal', 0.0) + entry.get('external_proposal_ms', 0.0)
    region = timing.get('region-wise', 0.0) + timing.get('misc', 0.0)
    return conv, proposal, region, conv + proposal + region


def write_report(results, out_dir, meta, recall=None, anchors=None, pictures=()):
    """Write ``report.md`` and ``report.json`` into ``out_dir``; return the report's Markdown.

    ``meta``: dict with ``net``, ``dataset``, ``train_imdb``, ``test_imdb``, ``device``, ``paper_net``
    (what the paper's column used) and optional ``notes`` (list of str). ``recall``: method -> {N: mean
    recall}; ``anchors``: the ``anchor_proposal_sizes`` list with the test scale as ``meta['test_scale']``;
    ``pictures``: PNG file names (relative to ``out_dir``) to link.
    """
    parts = [f'# Paper experiments: {meta["net"]} on {meta["dataset"]}',
             f'Train {meta["train_imdb"]}, test {meta["test_imdb"]}, device {meta["device"]}. '
             'mAP in % (VOC devkit rules); "paper" is the published number (Tables 1 and 5: ZF; 2, 3, 6: '
             'VGG-16; on another net or dataset it is a reference, not a target); diff = ours - paper.']
    parts += meta.get('notes', [])

    t1 = [(ROWS[r][1], ROWS[r][2], ROWS[r][3], _ours(results, r), _pct(ROWS[r][4]),
           _diff(results, r, ROWS[r][4]), r) for r in ROWS if ROWS[r][0] == '1']
    parts += ['## Table 1 (proposal methods and ablations)',
              _table(('train proposals', 'test proposals', '# test', 'ours', 'paper (ZF)', 'diff', 'row'),
                     t1)]

    t2 = []
    for method, count, data, paper, paper_ms, row in TABLE2:
        same_data = (data == '07+12') == meta.get('trained_on_0712', False)
        tim = _timing(results, row)
        ours = _ours(results, row) if same_data else f'not run (needs training data {data})'
        t2.append((method, count, data, ours, _pct(paper), _diff(results, row, paper) if same_data else '—',
                   f'{tim[3]:.0f}' if tim and same_data else '—', paper_ms))
    parts += ['## Table 2 (VOC 2007 test in the paper; our test set here)',
              _table(('method', '# proposals', 'data', 'ours', 'paper (VGG-16)', 'diff', 'ours ms',
                      'paper ms'), t2)]

    t3_status = results.get('t3_voc2012_test') or {}
    t3 = []
    for method, count, data, paper_map in TABLE3:
        key = f'{method.split("+")[0]} {data}'
        if t3_status.get('status') == 'ok':
            ours = f'submit {t3_status["archives"][key]}'
        else:
            ours = f'not run ({t3_status.get("reason", "not computed")})'
        t3.append((method, count, data, ours, _pct(paper_map)))
    parts += ['## Table 3 (VOC 2012 test: the mAP comes from the evaluation server; upload each archive)',
              _table(('method', '# proposals', 'data', 'ours', 'paper'), t3)]

    t4 = []
    for system, row, vgg, zf in TABLE4:
        tim = _timing(results, row)
        ours = (f'{tim[0]:.1f}', f'{tim[1]:.1f}', f'{tim[2]:.1f}', f'{tim[3]:.1f}',
                f'{1000 / tim[3]:.1f} fps') if tim else ('—',) * 5
        t4.append((system, *ours, ' / '.join(map(str, vgg)), ' / '.join(map(str, zf)) if zf else '—'))
    parts += [f'## Table 4 (timing, ms per image; ours on {meta["device"]}, the paper on a K40 GPU with SS '
              'on a CPU; region-wise includes NMS and post-processing; the SS time is per image and process)',
              _table(('system', 'conv', 'proposal', 'region-wise', 'total', 'rate',
                      'paper VGG conv / proposal / region / total', 'paper ZF'), t4)]

    t5 = [('two-stage', 'RPN unshared', '300', 'Fast R-CNN, 1 scale', _ours(results, 't1_rpn_unshared_300'),
           _pct(0.587), _diff(results, 't1_rpn_unshared_300', 0.587))]
    for row in ('t5_dense_1scale', 't5_dense_5scale'):
        regions = (results.get(row) or {}).get('regions_per_image')
        t5.append(('one-stage', 'dense 3 scales x 3 ratios', f'{regions:.0f}' if regions else ROWS[row][3],
                   ROWS[row][2].split(', ')[1], _ours(results, row), _pct(ROWS[row][4]),
                   _diff(results, row, ROWS[row][4])))
    parts += ['## Table 5 (one-stage vs two-stage)',
              _table(('', 'regions', '#', 'detector', 'ours', 'paper (ZF)', 'diff'), t5)]

    joint = []
    for r in (r for r in ROWS if ROWS[r][0] == 'joint'):
        entry = results.get(ALIASES.get(r, r)) or {}
        seconds = entry.get('train_seconds')
        joint.append((ROWS[r][1], _ours(results, r), entry.get('train_iters', '—'),
                      f'{seconds:.0f}' if isinstance(seconds, (int, float)) else '—', r))
    parts += ['## Alternating optimisation vs approximate joint training',
              _table(('training', 'ours mAP', 'iterations', 'train wall s', 'row'), joint)]

    if anchors:
        scale = meta.get('test_scale')
        rows = []
        for entry in anchors:
            w, h = entry['anchor']
            # generate_anchors keeps each scale's area up to rounding: name the anchor by the nearest
            # power of two of its side, as the paper does (128², 256², 512²).
            side, ratio = 2 ** int(round(math.log2(math.sqrt(w * h)))), h / w
            nominal = min((0.5, 1.0, 2.0), key=lambda r: abs(r - ratio))
            ratio_text = {0.5: '2:1', 1.0: '1:1', 2.0: '1:2'}[nominal]
            paper = ANCHOR_TABLE.get((side, nominal))
            rows.append((f'{side}², {ratio_text}', f'{w:.0f} x {h:.0f}', entry['count'],
                         f'{entry["mean_w"]:.0f} x {entry["mean_h"]:.0f}',
                         f'{paper[0]} x {paper[1]}' if paper else '—'))
        parts += [f'## Learned average proposal size per anchor (s = {scale}; paper: ZF, s = 600)',
                  _table(('anchor', 'anchor w x h', 'proposals', 'ours mean w x h', 'paper'), rows)]

    if recall:
        rows = [(method, *(f'{recall[method][n]:.3f}' if n in recall[method] else '—'
                           for n in ('300', '1000', '2000'))) for method in recall]
        parts += ['## Fig. 2 (mean recall over IoU 0.5:0.05:0.95 of the test set)',
                  _table(('method', '300', '1k', '2k'), rows)]
    for name in pictures:
        parts.append(f'![{name}]({name})')

    classes = meta.get('classes', ())
    per_class = [(r, *(_pct(results[r]['ap'].get(c)) for c in classes)) for r in ROWS
                 if (results.get(r) or {}).get('status') == 'ok' and 'ap' in results[r]]
    if per_class:
        parts += ['## Tables 6 / 7: per-class AP of every row', _table(('row', *classes), per_class)]
    if meta.get('voc_classes'):
        paper_rows = [(f'paper {m} ({d})', *(f'{v:.1f}' for v in values))
                      for (m, d), values in TABLE6.items()]
        ours_rows = [(f'ours {TABLE6_ROWS[key]}', *(_pct(results[TABLE6_ROWS[key]]['ap'].get(c))
                                                    for c in VOC_CLASS_ORDER))
                     for key in TABLE6 if _map(results, TABLE6_ROWS[key]) is not None]
        parts += ['### Table 6 beside ours', _table(('', *VOC_CLASS_ORDER), paper_rows + ours_rows)]

    claims = check_claims(results, recall)
    parts += ['## The paper\'s claims on this data',
              _table(('claim', 'verdict', 'measured'), claims)]
    text = '\n\n'.join(parts) + '\n'
    os.makedirs(out_dir, exist_ok=True)
    write_text_atomic(osp.join(out_dir, 'report.md'), text)
    write_text_atomic(osp.join(out_dir, 'report.json'), json.dumps(
        {'meta': meta, 'rows': results, 'recall': recall, 'anchors': anchors,
         'claims': [{'claim': c, 'verdict': v, 'measured': e} for c, v, e in claims]}, indent=2))
    return text


