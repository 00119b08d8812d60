#include <vector>

#include "caffe/layers/roi_pooling_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// The roi geometry, computed exactly as in Forward_cpu (same float
// expressions) so both devices pool the same cells.
template <typename Dtype>
struct RoiGeometry {
  int batch, start_h, start_w;
  Dtype bin_h, bin_w;
};

template <typename Dtype>
__device__ inline RoiGeometry<Dtype> roi_geometry(const Dtype* roi,
    const Dtype spatial_scale, const int pooled_height,
    const int pooled_width) {
  RoiGeometry<Dtype> g;
  g.batch = static_cast<int>(roi[0]);
  g.start_w = round(roi[1] * spatial_scale);
  g.start_h = round(roi[2] * spatial_scale);
  const int end_w = round(roi[3] * spatial_scale);
  const int end_h = round(roi[4] * spatial_scale);
  const int roi_height = max(end_h - g.start_h + 1, 1);
  const int roi_width = max(end_w - g.start_w + 1, 1);
  g.bin_h = static_cast<Dtype>(roi_height) / pooled_height;
  g.bin_w = static_cast<Dtype>(roi_width) / pooled_width;
  return g;
}

// One thread per top element (n, c, ph, pw).
template <typename Dtype>
__global__ void ROIPoolForward(const int nthreads, const Dtype* bottom_data,
    const Dtype spatial_scale, const int channels, const int height,
    const int width, const int pooled_height, const int pooled_width,
    const Dtype* bottom_rois, Dtype* top_data, int* argmax_data) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int pw = index % pooled_width;
    const int ph = (index / pooled_width) % pooled_height;
    const int c = (index / pooled_width / pooled_height) % channels;
    const int n = index / pooled_width / pooled_height / channels;
    const RoiGeometry<Dtype> g = roi_geometry(bottom_rois + n * 5,
        spatial_scale, pooled_height, pooled_width);
    int hstart = static_cast<int>(floor(ph * g.bin_h));
    int hend = static_cast<int>(ceil((ph + 1) * g.bin_h));
    int wstart = static_cast<int>(floor(pw * g.bin_w));
    int wend = static_cast<int>(ceil((pw + 1) * g.bin_w));
    hstart = min(max(hstart + g.start_h, 0), height);
    hend = min(max(hend + g.start_h, 0), height);
    wstart = min(max(wstart + g.start_w, 0), width);
    wend = min(max(wend + g.start_w, 0), width);
    const Dtype* plane =
        bottom_data + (g.batch * channels + c) * height * width;
    Dtype best = 0;  // the value of an empty bin
    int best_idx = -1;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        const int idx = h * width + w;
        if (best_idx < 0 || plane[idx] > best) {  // first maximum wins
          best = plane[idx];
          best_idx = idx;
        }
      }
    }
    top_data[index] = best;
    argmax_data[index] = best_idx;
  }
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  // Validated on the host (rois are R x 5, a small copy): a kernel cannot
  // report a bad batch index, it would read out of bounds.
  CheckRois(*bottom[1]);
  const int count = top[0]->count();
  if (count == 0) {  // no rois: a zero-block launch is an error
    return;
  }
  // NOLINT_NEXT_LINE(whitespace/operators)
  ROIPoolForward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), spatial_scale_, channels_, height_,
      width_, pooled_height_, pooled_width_, bottom[1]->gpu_data(),
      top[0]->mutable_gpu_data(), max_idx_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

// One thread per bottom element, gathering from every bin of every roi of
// its image whose max came from it. Gathering instead of scattering needs no
// atomics, so the sum is computed in a fixed order (deterministic).
template <typename Dtype>
__global__ void ROIPoolBackward(const int nthreads, const Dtype* top_diff,
    const int* argmax_data, const int num_rois, const Dtype spatial_scale,
    const int channels, const int height, const int width,
    const int pooled_height, const int pooled_width,
    const Dtype* bottom_rois, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int w = index % width;
    const int h = (index / width) % height;
    const int c = (index / width / height) % channels;
    const int n = index / width / height / channels;
    const int cell = h * width + w;
    Dtype gradient = 0;
    for (int r = 0; r < num_rois; ++r) {
      const RoiGeometry<Dtype> g = roi_geometry(bottom_rois + r * 5,
          spatial_scale, pooled_height, pooled_width);
      if (g.batch != n) {
        continue;
      }
      // Only bins near (h, w) can hold its index. The candidate range is
      // widened by one bin each way against float rounding at bin edges;
      // the argmax comparison below is what decides.
      const int ph0 = max(
          static_cast<int>(floor((h - g.start_h) / g.bin_h)) - 1, 0);
      const int ph1 = min(
          static_cast<int>(ceil((h - g.start_h + 1) / g.bin_h)) + 1,
          pooled_height);
      const int pw0 = max(
          static_cast<int>(floor((w - g.start_w) / g.bin_w)) - 1, 0);
      const int pw1 = min(
          static_cast<int>(ceil((w - g.start_w + 1) / g.bin_w)) + 1,
          pooled_width);
      const int base = (r * channels + c) * pooled_height * pooled_width;
      for (int ph = ph0; ph < ph1; ++ph) {
        for (int pw = pw0; pw < pw1; ++pw) {
          const int t = base + ph * pooled_width + pw;
          if (argmax_data[t] == cell) {
            gradient += top_diff[t];
          }
        }
      }
    }
    bottom_diff[index] = gradient;
  }
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down,
      const vector<Blob<Dtype>*>& bottom) {
  // rois (bottom 1) are coordinates, not a differentiable input.
  if (!propagate_down[0]) {
    return;
  }
  const int count = bottom[0]->count();
  if (bottom[1]->shape(0) == 0) {  // no rois: no gradient
    caffe_gpu_set(count, Dtype(0), bottom[0]->mutable_gpu_diff());
    return;
  }
  // NOLINT_NEXT_LINE(whitespace/operators)
  ROIPoolBackward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, top[0]->gpu_diff(), max_idx_.gpu_data(), bottom[1]->shape(0),
      spatial_scale_, channels_, height_, width_, pooled_height_,
      pooled_width_, bottom[1]->gpu_data(), bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(ROIPoolingLayer);

}  // namespace caffe
