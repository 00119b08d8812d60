// Host entry point of the CUDA bitmask NMS (nms_kernel.cu), called from gpu_nms.pyx.
#pragma once

#include <cstdint>

// Greedy NMS of boxes already sorted by descending score.
//   host_boxes: num_boxes rows of box_dim floats, columns 0..3 = x1, y1, x2, y2 (0-based,
//               pixel-inclusive: width = x2 - x1 + 1); box_dim >= 4.
//   keep_out:   room for num_boxes entries; receives the kept row indices (ascending, i.e. by
//               rank) and the function returns how many were kept.
// A box is suppressed when its IoU with a kept box is > thresh (float32 arithmetic).
// Any CUDA failure (no device, out of memory, launch error) throws std::runtime_error whose
// message carries the CUDA error name and text; device memory is released either way.
int gpu_nms_sorted(const float* host_boxes, int num_boxes, int box_dim, float thresh,
                   int device_id, int64_t* keep_out);

// Number of CUDA devices this process can use: 0 when there is no GPU, no driver or the driver is
// too old (the error is cleared, so later CUDA calls are unaffected). Never throws.
int gpu_device_count();
