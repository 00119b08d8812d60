#ifndef CAFFE_SMOOTH_L1_LOSS_LAYER_HPP_
#define CAFFE_SMOOTH_L1_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/loss_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Smooth L1 (Huber-like) loss for box regression (Fast R-CNN), with
 *        the sigma of the Faster R-CNN release.
 *
 * Bottoms: prediction p, target t, and optionally inside weights w_in and
 * outside weights w_out (give both or neither); all with the same count and
 * the same first dimension num.
 *
 *   d = w_in * (p - t)
 *   f(d) = 0.5 * sigma^2 * d^2     if |d| < 1 / sigma^2
 *          |d| - 0.5 / sigma^2     otherwise
 *   loss = sum(w_out * f(d)) / num
 *
 * Backward fills the gradients of p and of t (= minus that of p), each when
 * propagate_down asks for it; the weights receive none.
 */
template <typename Dtype>
class SmoothL1LossLayer : public LossLayer<Dtype> {
 public:
  explicit SmoothL1LossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SmoothL1Loss"; }
  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int MinBottomBlobs() const { return 2; }
  virtual inline int MaxBottomBlobs() const { return 4; }
  /// prediction and target can both be forced to receive gradients
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index < 2;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// data: d = w_in * (p - t) (Forward); diff: w_in * w_out * f'(d), the
  /// gradient of num * loss with respect to p (Backward)
  Blob<Dtype> diff_;
  /// w_out * f(d) per element
  Blob<Dtype> errors_;
  /// all ones, to sum errors_ with a dot product on the GPU
  Blob<Dtype> ones_;
  Dtype sigma2_;
  bool has_weights_;
};

}  // namespace caffe

#endif  // CAFFE_SMOOTH_L1_LOSS_LAYER_HPP_
