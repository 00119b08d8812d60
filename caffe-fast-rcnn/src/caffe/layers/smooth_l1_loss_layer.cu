#include <vector>

#include "caffe/layers/smooth_l1_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// errors = w_out * f(d) (w_out NULL: no outside weights).
template <typename Dtype>
__global__ void SmoothL1Forward(const int n, const Dtype* d,
    const Dtype* w_out, const Dtype sigma2, Dtype* errors) {
  CUDA_KERNEL_LOOP(i, n) {
    const Dtype abs_d = abs(d[i]);
    Dtype e = abs_d < Dtype(1) / sigma2 ? Dtype(0.5) * sigma2 * d[i] * d[i]
                                        : abs_d - Dtype(0.5) / sigma2;
    errors[i] = w_out ? e * w_out[i] : e;
  }
}

// grad = w_in * w_out * f'(d) (weights NULL: none).
template <typename Dtype>
__global__ void SmoothL1Backward(const int n, const Dtype* d,
    const Dtype* w_in, const Dtype* w_out, const Dtype sigma2, Dtype* grad) {
  CUDA_KERNEL_LOOP(i, n) {
    Dtype g = abs(d[i]) < Dtype(1) / sigma2 ? sigma2 * d[i]
                                            : Dtype((d[i] > 0) - (d[i] < 0));
    if (w_in) {
      g *= w_in[i] * w_out[i];
    }
    grad[i] = g;
  }
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  if (count == 0) {  // no rows: zero loss, and a zero-block launch is an error
    top[0]->mutable_cpu_data()[0] = 0;
    return;
  }
  Dtype* d = diff_.mutable_gpu_data();
  caffe_gpu_sub(count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), d);
  if (has_weights_) {
    caffe_gpu_mul(count, bottom[2]->gpu_data(), d, d);
  }
  // NOLINT_NEXT_LINE(whitespace/operators)
  SmoothL1Forward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, d, has_weights_ ? bottom[3]->gpu_data() : NULL, sigma2_,
      errors_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  // A plain sum (not asum): negative outside weights would stay negative.
  Dtype loss;
  caffe_gpu_dot(count, errors_.gpu_data(), ones_.gpu_data(), &loss);
  top[0]->mutable_cpu_data()[0] = loss / bottom[0]->shape(0);
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0] && !propagate_down[1]) {
    return;
  }
  const int count = bottom[0]->count();
  if (count == 0) {  // no rows: the (empty) bottom diffs need no writing
    return;
  }
  Dtype* grad = diff_.mutable_gpu_diff();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SmoothL1Backward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, diff_.gpu_data(), has_weights_ ? bottom[2]->gpu_data() : NULL,
      has_weights_ ? bottom[3]->gpu_data() : NULL, sigma2_, grad);
  CUDA_POST_KERNEL_CHECK;
  const Dtype scale = top[0]->cpu_diff()[0] / bottom[0]->shape(0);
  // d depends on p with sign +1 and on t with sign -1.
  for (int i = 0; i < 2; ++i) {
    if (propagate_down[i]) {
      caffe_gpu_scale(count, i == 0 ? scale : -scale, grad,
          bottom[i]->mutable_gpu_diff());
    }
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(SmoothL1LossLayer);

}  // namespace caffe
