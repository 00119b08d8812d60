#ifndef CAFFE_ROI_POOLING_LAYER_HPP_
#define CAFFE_ROI_POOLING_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief RoI max pooling (Fast R-CNN): max-pools each region of interest of
 *        a feature map into a fixed pooled_h x pooled_w grid.
 *
 * Bottoms:
 *   0. features, N x C x H x W.
 *   1. rois, R x 5 (any shape with 5 values per roi): [batch, x1, y1, x2, y2]
 *      in input-image pixels, 0-based and inclusive. batch must be an
 *      integer in [0, N).
 * Top: R x C x pooled_h x pooled_w.
 *
 * An roi's corners are scaled by spatial_scale and rounded half away from
 * zero; its size is max(end - start + 1, 1) so inverted rois pool one cell.
 * Bin (ph, pw) spans rows [floor(ph * bin_h), ceil((ph + 1) * bin_h)) from
 * the roi start (bin_h = roi height / pooled_h, a real number), clipped to
 * the map. An empty bin outputs 0. Ties keep the first maximum in row-major
 * order. Backward adds each top gradient to the cell its max came from;
 * rois receive no gradient.
 */
template <typename Dtype>
class ROIPoolingLayer : public Layer<Dtype> {
 public:
  explicit ROIPoolingLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "ROIPooling"; }
  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
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

  /// CHECK-fails naming the roi when a batch index is not an integer in
  /// [0, N) (the kernels index the feature map with it), or a coordinate is
  /// not finite or too large for an int once scaled (it is rounded to one).
  void CheckRois(const Blob<Dtype>& rois) const;

  int num_images_;
  int channels_;
  int height_;
  int width_;
  int pooled_height_;
  int pooled_width_;
  Dtype spatial_scale_;
  /// per top element, the h * W + w offset of its max in the bottom channel
  /// plane (-1 for an empty bin)
  Blob<int> max_idx_;
};

}  // namespace caffe

#endif  // CAFFE_ROI_POOLING_LAYER_HPP_
