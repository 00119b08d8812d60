"""Per-image inference time of TINY, ZF and VGG-16 at 600×1000 on our Caffe and on OpenCV dnn, same weights.

    cd <repo> && GLOG_minloglevel=2 .venv/bin/python bench/bench_inference.py [--nets TINY ZF VGG16]
        [--tiny-weights MODEL] [--runs 1] [--threads N] [--ghz G] [--flops-per-cycle F]

Each net's test prototxt (models/synth/TINY, models/pascal_voc/{ZF,VGG16}, faster_rcnn_end2end) gets seeded
He weights (``fast_rcnn.init_model.he_init``, conv1 scaled for a unit-variance input as
tools/compare_backends.py --unit-input does, so that the objectness does not saturate into ties and both
engines keep 300 RoIs; ``--tiny-weights`` uses a trained TINY instead), and the
same caffemodel runs on both engines: our Caffe (CPU, OpenBLAS) through ``fast_rcnn.test.forward_timed``
and OpenCV through ``fast_rcnn.deploy.OpenCVNet`` (the net converted with its Proposal layer). The input is
an embedded image resized to exactly 600×1000 (im_info 600, 1000, 1), proposals 6000 → NMS 0.7 → 300 and
no minimum box size on either engine (OpenCV has none). After one warm-up pass per engine, ``--runs``
passes are timed; the table shows their mean per segment: conv+RPN (every layer before the proposal
layer), proposal, region-wise (RoI pooling and the head on the 300 RoIs). OpenCV's segments are its
per-layer profile summed and scaled to the call's wall time. Both engines use ``--threads`` threads
(OpenBLAS / OpenCV's pool; default: the CPUs this process may run on).

Achieved GFLOP/s = 2 × multiply-adds / time, the multiply-adds counted from the layer shapes of the run
(convolutions: output elements × input channels per group × kernel area; inner products: output elements ×
inputs). The peak is threads × clock × FP32 FLOPs per cycle and core; the clock defaults to /proc/cpuinfo's
``cpu MHz`` (the nominal TSC rate under a hypervisor: boost clocks are not visible) and the FLOPs per cycle
to what the CPU's vector units give (see ``flops_per_cycle``); both can be overridden. A float32 numpy
matrix product (OpenBLAS) is timed too, as the rate a tuned kernel reaches on this machine.
A benchmark, not a test: it prints numbers and asserts nothing.
"""

import argparse
import os
import os.path as osp
import platform
import sys
import time

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
PROTOTXTS = {
    'TINY': ('models/synth/TINY/faster_rcnn_end2end/test.prototxt', 7),
    'ZF': ('models/pascal_voc/ZF/faster_rcnn_end2end/test.prototxt', 21),
    'VGG16': ('models/pascal_voc/VGG16/faster_rcnn_end2end/test.prototxt', 21),
}
INPUT_HW = (600, 1000)
IMAGE = osp.join(ROOT, 'data', 'SYNTHdevkit', 'SYNTH', 'JPEGImages', '001001.jpg')


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--nets', nargs='+', choices=tuple(PROTOTXTS), default=list(PROTOTXTS))
    parser.add_argument('--tiny-weights', default=None, help='a trained TINY caffemodel (default: He-random)')
    parser.add_argument('--seed', type=int, default=3, help='He weights seed [3]')
    parser.add_argument('--runs', type=int, default=1, help='timed passes per engine after a warm-up [1]')
    parser.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)),
                        help='threads of both engines [the CPUs available]')
    parser.add_argument('--ghz', type=float, default=None,
                        help='clock for the peak [cpu MHz of /proc/cpuinfo]')
    parser.add_argument('--flops-per-cycle', type=float, default=None,
                        help='FP32 FLOPs per cycle and core for the peak [from the CPU, see flops_per_cycle]')
    parser.add_argument('--out-dir', default=osp.join(ROOT, 'output', 'bench_inference'),
                        help='where the converted nets and weights go')
    return parser.parse_args(argv)


def cpu_info():
    """``(model name, vendor, family, flags, MHz)`` from /proc/cpuinfo (first processor)."""
    fields = {}
    with open('/proc/cpuinfo', encoding='utf-8') as f:
        for line in f:
            if not line.strip():
                break
            key, _, value = line.partition(':')
            fields[key.strip()] = value.strip()
    return (fields.get('model name', platform.processor()), fields.get('vendor_id', ''),
            int(fields.get('cpu family', '0')), set(fields.get('flags', '').split()),
            float(fields.get('cpu MHz', 'nan')))


def flops_per_cycle(vendor, family, flags):
    """FP32 FLOPs per cycle and core, and why.

    2 FLOPs per fused multiply-add × vector lanes × FMA pipes: AMD Zen 2-4 (families 0x17, 0x19) have two
    256-bit FMA pipes (Zen 4 splits 512-bit instructions over them): 2 × 8 × 2 = 32; Zen 5 (0x1A) two
    512-bit pipes: 64; an Intel core with AVX-512 is taken to have two 512-bit FMA units: 64; AVX2 + FMA:
    32; otherwise SSE: 2 × 4 × 2 = 16 (no FMA: multiply and add pipes).
    """
    if vendor == 'AuthenticAMD' and family in (0x17, 0x19):
        return 32.0, f'AMD family {family:#x} (Zen 2-4): 2 FMA pipes x 8 fp32 lanes x 2'
    if vendor == 'AuthenticAMD' and family == 0x1A:
        return 64.0, 'AMD family 0x1a (Zen 5): 2 FMA pipes x 16 fp32 lanes x 2'
    if 'avx512f' in flags:
        return 64.0, 'AVX-512, assumed 2 FMA units x 16 fp32 lanes x 2'
    if 'avx2' in flags and 'fma' in flags:
        return 32.0, 'AVX2 + FMA: 2 FMA units x 8 fp32 lanes x 2'
    return 16.0, 'SSE: 4 fp32 lanes x (1 multiply + 1 add) x 2 pipes'


def layer_macs(net, bounds):
    """Multiply-adds per segment of a pycaffe ``net`` after a forward pass: dict segment → count."""
    from fast_rcnn.test import SEGMENTS
    out = dict.fromkeys(SEGMENTS, 0)
    for index, (name, layer) in enumerate(zip(net._layer_names, net.layers)):
        if layer.type not in ('Convolution', 'InnerProduct'):
            continue
        top = net.blobs[net.top_names[name][0]]
        weights = net.params[name][0].data
        per_output = int(weights[0].size)  # input channels per group × kernel area, or the inputs
        segment = next(seg for seg, b in zip(SEGMENTS, bounds) if b is not None and b[0] <= index <= b[1])
        out[segment] += int(top.data.size) * per_output
    return out


def bench_net(arch, args, cfg, caffe, deploy, frt, cv2, np):
    """Time one net on both engines. Returns (rows, macs): rows = {engine: {segment: seconds}}."""
    from fast_rcnn.init_model import he_init, scale_to_unit_input
    from fast_rcnn.models import adapt_prototxt
    from utils.timer import Timer
    rel, num_classes = PROTOTXTS[arch]
    os.makedirs(args.out_dir, exist_ok=True)
    prototxt = adapt_prototxt(osp.join(ROOT, rel), osp.join(args.out_dir, f'{arch}_test.pt'), num_classes)
    net = caffe.Net(prototxt, caffe.TEST)
    im = cv2.resize(cv2.imread(IMAGE), (INPUT_HW[1], INPUT_HW[0]), interpolation=cv2.INTER_LINEAR)
    data = (im.astype(np.float32) - cfg.PIXEL_MEANS.astype(np.float32)).transpose(2, 0, 1)[np.newaxis]
    blobs = {'data': np.ascontiguousarray(data),
             'im_info': np.array([[INPUT_HW[0], INPUT_HW[1], 1.0]], dtype=np.float32)}
    if arch == 'TINY' and args.tiny_weights:
        net.copy_from(args.tiny_weights)
        weights = args.tiny_weights
    else:
        he_init(net, np.random.default_rng(args.seed))
        scale_to_unit_input(net, blobs['data'])
        weights = osp.join(args.out_dir, f'{arch}_he_{args.seed}_unit.caffemodel')
        net.save(weights)
    cv_net, _ = deploy.open_opencv_net(prototxt, weights, num_classes, args.out_dir, cfg.TEST)
    rows = {}
    for engine, target in (('caffe', net), ('opencv', cv_net)):
        frt.forward_timed(target, blobs)  # warm-up: allocation, OpenCV's plan for this shape
        timers = {segment: Timer() for segment in frt.SEGMENTS}
        for _ in range(args.runs):
            frt.forward_timed(target, blobs, timers)
        rows[engine] = {segment: timers[segment].average_time for segment in frt.SEGMENTS}
        rows[engine]['rois'] = len(target.blobs['rois'].data)
    return rows, layer_macs(net, frt._segment_bounds(net))


def main(argv=None):
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    # Thread counts must be fixed before OpenBLAS starts (it is loaded with numpy / libcaffe).
    for var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS'):
        os.environ[var] = str(args.threads)
    os.environ.setdefault('GLOG_minloglevel', '2')
    sys.path.insert(0, osp.join(ROOT, 'lib'))
    import cv2
    import numpy as np

    import caffe
    from fast_rcnn import deploy
    from fast_rcnn import test as frt
    from fast_rcnn.config import cfg
    cv2.setNumThreads(args.threads)
    caffe.set_mode_cpu()
    cfg.GPU_ID = -1
    cfg.TEST.HAS_RPN = True
    cfg.TEST.RPN_MIN_SIZE = 0

    model, vendor, family, flags, mhz = cpu_info()
    per_cycle, why = flops_per_cycle(vendor, family, flags)
    per_cycle = args.flops_per_cycle or per_cycle
    ghz = args.ghz or mhz / 1000.0
    peak = args.threads * ghz * per_cycle
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    a @ a
    start = time.perf_counter()
    a @ a
    gemm = 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9
    print(f'CPU: {model} ({vendor} family {family:#x}); {args.threads} threads; OpenCV {cv2.__version__}, '
          f'numpy {np.__version__}')
    print(f'Peak FP32: {args.threads} threads x {ghz:.3f} GHz x {per_cycle:g} FLOP/cycle = {peak:.1f} '
          f'GFLOP/s '
          f'({why}; clock: {"--ghz" if args.ghz else "cpu MHz in /proc/cpuinfo"})')
    print(f'numpy float32 2048^3 matrix product: {gemm:.1f} GFLOP/s ({100 * gemm / peak:.0f} % of peak)')
    print(f'Input {INPUT_HW[0]}x{INPUT_HW[1]}, {args.runs} timed run(s) after a warm-up, times in ms per '
          f'image\n')
    header = (f'{"net":6} {"engine":7} {"conv+RPN":>9} {"proposal":>9} {"region":>8} {"total":>8} '
              f'{"RoIs":>5} {"GMAC conv":>10} {"GMAC reg":>9} {"GFLOP/s conv":>13} {"GFLOP/s reg":>12} '
              f'{"% peak":>7}')
    print(header)
    print('-' * len(header))
    for arch in args.nets:
        rows, macs = bench_net(arch, args, cfg, caffe, deploy, frt, cv2, np)
        conv_macs = macs['conv+RPN']
        for engine, row in rows.items():
            # Region-wise work is per RoI: scale the count from our Caffe's run to this engine's RoIs.
            region_macs = macs['region-wise'] * row['rois'] / rows['caffe']['rois']
            total = sum(row[s] for s in frt.SEGMENTS)
            rate_conv = 2 * conv_macs / row['conv+RPN'] / 1e9
            rate_region = 2 * region_macs / row['region-wise'] / 1e9
            rate_all = 2 * (conv_macs + region_macs) / total / 1e9
            print(f'{arch:6} {engine:7} {1e3 * row["conv+RPN"]:9.1f} {1e3 * row["proposal"]:9.1f} '
                  f'{1e3 * row["region-wise"]:8.1f} {1e3 * total:8.1f} {row["rois"]:5d} '
                  f'{conv_macs / 1e9:10.2f} {region_macs / 1e9:9.2f} {rate_conv:13.1f} {rate_region:12.1f} '
                  f'{100 * rate_all / peak:7.1f}')
        ratio = {s: rows['opencv'][s] / rows['caffe'][s] for s in frt.SEGMENTS}
        totals = {engine: sum(rows[engine][s] for s in frt.SEGMENTS) for engine in rows}
        print(f'{arch:6} {"ratio":7} {ratio["conv+RPN"]:9.2f} {ratio["proposal"]:9.2f} '
              f'{ratio["region-wise"]:8.2f} {totals["opencv"] / totals["caffe"]:8.2f}   '
              f'(OpenCV time / our Caffe time)')
        sys.stdout.flush()


if __name__ == '__main__':
    main()
