#include <cmath>
#include <vector>

#include "caffe/layers/smooth_l1_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  const Dtype sigma = this->layer_param_.smooth_l1_loss_param().sigma();
  CHECK_GT(sigma, 0) << "SmoothL1Loss layer '" << this->layer_param_.name()
      << "': smooth_l1_loss_param { sigma } must be positive";
  sigma2_ = sigma * sigma;
  has_weights_ = bottom.size() > 2;
  CHECK(bottom.size() == 2 || bottom.size() == 4) << "SmoothL1Loss layer '"
      << this->layer_param_.name() << "': bottoms are prediction, target "
      << "and, optionally, inside and outside weights (give both); got "
      << bottom.size() << " bottoms";
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::Reshape(bottom, top);
  for (size_t i = 1; i < bottom.size(); ++i) {
    CHECK_EQ(bottom[0]->count(), bottom[i]->count()) << "SmoothL1Loss layer '"
        << this->layer_param_.name() << "': bottom " << i << " has shape "
        << bottom[i]->shape_string() << " but the prediction has shape "
        << bottom[0]->shape_string() << " (counts must match)";
  }
  diff_.ReshapeLike(*bottom[0]);
  errors_.ReshapeLike(*bottom[0]);
  if (ones_.count() != bottom[0]->count()) {
    ones_.ReshapeLike(*bottom[0]);
    caffe_set(ones_.count(), Dtype(1), ones_.mutable_cpu_data());
  }
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  if (count == 0) {  // no rows (e.g. no rois): zero loss; empty blobs hold no memory
    top[0]->mutable_cpu_data()[0] = 0;
    return;
  }
  Dtype* d = diff_.mutable_cpu_data();
  Dtype* errors = errors_.mutable_cpu_data();
  caffe_sub(count, bottom[0]->cpu_data(), bottom[1]->cpu_data(), d);
  if (has_weights_) {
    caffe_mul(count, bottom[2]->cpu_data(), d, d);
  }
  const Dtype* w_out = has_weights_ ? bottom[3]->cpu_data() : NULL;
  const Dtype transition = Dtype(1) / sigma2_;
  Dtype loss = 0;
  for (int i = 0; i < count; ++i) {
    const Dtype abs_d = std::abs(d[i]);
    Dtype e = abs_d < transition ? Dtype(0.5) * sigma2_ * d[i] * d[i]
                                 : abs_d - Dtype(0.5) / sigma2_;
    if (w_out) {
      e *= w_out[i];
    }
    errors[i] = e;
    loss += e;
  }
  top[0]->mutable_cpu_data()[0] = loss / bottom[0]->shape(0);
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0] && !propagate_down[1]) {
    return;
  }
  const int count = bottom[0]->count();
  if (count == 0) {  // no rows: the (empty) bottom diffs need no writing
    return;
  }
  const Dtype* d = diff_.cpu_data();
  Dtype* grad = diff_.mutable_cpu_diff();
  const Dtype transition = Dtype(1) / sigma2_;
  for (int i = 0; i < count; ++i) {
    grad[i] = std::abs(d[i]) < transition ? sigma2_ * d[i]
                                          : Dtype((d[i] > 0) - (d[i] < 0));
  }
  if (has_weights_) {
    caffe_mul(count, bottom[2]->cpu_data(), grad, grad);
    caffe_mul(count, bottom[3]->cpu_data(), grad, grad);
  }
  const Dtype scale = top[0]->cpu_diff()[0] / bottom[0]->shape(0);
  // d depends on p with sign +1 and on t with sign -1.
  for (int i = 0; i < 2; ++i) {
    if (propagate_down[i]) {
      caffe_cpu_scale(count, i == 0 ? scale : -scale, grad,
          bottom[i]->mutable_cpu_diff());
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(SmoothL1LossLayer);
#endif

INSTANTIATE_CLASS(SmoothL1LossLayer);
REGISTER_LAYER_CLASS(SmoothL1Loss);

}  // namespace caffe
