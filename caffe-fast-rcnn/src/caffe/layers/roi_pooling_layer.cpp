#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "caffe/layers/roi_pooling_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// Largest |coordinate * spatial_scale| accepted: far beyond any feature map,
// well inside int (the pooling rounds scaled coordinates to int).
static const int kMaxScaledCoordinate = 1 << 24;

template <typename Dtype>
void ROIPoolingLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const ROIPoolingParameter& param = this->layer_param_.roi_pooling_param();
  CHECK_GT(param.pooled_h(), 0) << "ROIPooling layer '"
      << this->layer_param_.name()
      << "': set roi_pooling_param { pooled_h: ... } to a positive value";
  CHECK_GT(param.pooled_w(), 0) << "ROIPooling layer '"
      << this->layer_param_.name()
      << "': set roi_pooling_param { pooled_w: ... } to a positive value";
  pooled_height_ = param.pooled_h();
  pooled_width_ = param.pooled_w();
  spatial_scale_ = param.spatial_scale();
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  CHECK_EQ(bottom[0]->num_axes(), 4) << "ROIPooling layer '"
      << this->layer_param_.name() << "': features must be N x C x H x W";
  CHECK_GE(bottom[1]->num_axes(), 1) << "ROIPooling layer '"
      << this->layer_param_.name() << "': rois must be R x 5";
  CHECK_EQ(bottom[1]->count(1), 5) << "ROIPooling layer '"
      << this->layer_param_.name()
      << "': rois must be R x 5 rows of [batch, x1, y1, x2, y2], got "
      << bottom[1]->shape_string();
  num_images_ = bottom[0]->num();
  channels_ = bottom[0]->channels();
  height_ = bottom[0]->height();
  width_ = bottom[0]->width();
  const int num_rois = bottom[1]->shape(0);
  top[0]->Reshape(num_rois, channels_, pooled_height_, pooled_width_);
  max_idx_.Reshape(num_rois, channels_, pooled_height_, pooled_width_);
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::CheckRois(const Blob<Dtype>& rois) const {
  const int num_rois = rois.shape(0);
  if (num_rois == 0) {  // an empty blob may hold no memory at all
    return;
  }
  const Dtype* data = rois.cpu_data();
  for (int n = 0; n < num_rois; ++n) {
    const Dtype b = data[n * 5];
    // Written so that NaN fails too.
    CHECK(b >= 0 && b < num_images_ && b == std::floor(b))
        << "ROIPooling layer '" << this->layer_param_.name() << "': roi " << n
        << " has batch index " << b << ", which is not an image of the "
        << num_images_ << "-image feature batch (valid: integers 0.."
        << num_images_ - 1 << "); check the rois blob's first column";
    for (int k = 1; k < 5; ++k) {
      const Dtype v = data[n * 5 + k] * spatial_scale_;
      // Written so that NaN fails too; the bound keeps round() in int range.
      CHECK(std::abs(v) <= Dtype(kMaxScaledCoordinate))
          << "ROIPooling layer '" << this->layer_param_.name() << "': roi "
          << n << " has coordinate " << k << " = " << data[n * 5 + k]
          << ", which is not finite or too large (scaled by "
          << spatial_scale_ << " it must lie within +-" << kMaxScaledCoordinate
          << "); check the rois blob (NaN boxes upstream?)";
    }
  }
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const int num_rois = bottom[1]->shape(0);
  if (num_rois == 0) {  // nothing to pool (an empty blob may hold no memory)
    return;
  }
  const Dtype* bottom_data = bottom[0]->cpu_data();
  const Dtype* rois = bottom[1]->cpu_data();
  Dtype* top_data = top[0]->mutable_cpu_data();
  int* argmax = max_idx_.mutable_cpu_data();
  CheckRois(*bottom[1]);

  for (int n = 0; n < num_rois; ++n, rois += 5) {
    const int batch = static_cast<int>(rois[0]);
    const int roi_start_w = std::round(rois[1] * spatial_scale_);
    const int roi_start_h = std::round(rois[2] * spatial_scale_);
    const int roi_end_w = std::round(rois[3] * spatial_scale_);
    const int roi_end_h = std::round(rois[4] * spatial_scale_);
    // Inclusive corners; an inverted roi still covers one cell.
    const int roi_height = std::max(roi_end_h - roi_start_h + 1, 1);
    const int roi_width = std::max(roi_end_w - roi_start_w + 1, 1);
    const Dtype bin_h = static_cast<Dtype>(roi_height) / pooled_height_;
    const Dtype bin_w = static_cast<Dtype>(roi_width) / pooled_width_;

    for (int c = 0; c < channels_; ++c) {
      const Dtype* plane = bottom_data + bottom[0]->offset(batch, c);
      for (int ph = 0; ph < pooled_height_; ++ph) {
        int hstart = static_cast<int>(std::floor(ph * bin_h));
        int hend = static_cast<int>(std::ceil((ph + 1) * bin_h));
        hstart = std::min(std::max(hstart + roi_start_h, 0), height_);
        hend = std::min(std::max(hend + roi_start_h, 0), height_);
        for (int pw = 0; pw < pooled_width_; ++pw) {
          int wstart = static_cast<int>(std::floor(pw * bin_w));
          int wend = static_cast<int>(std::ceil((pw + 1) * bin_w));
          wstart = std::min(std::max(wstart + roi_start_w, 0), width_);
          wend = std::min(std::max(wend + roi_start_w, 0), width_);
          Dtype best = 0;  // the value of an empty bin
          int best_idx = -1;
          for (int h = hstart; h < hend; ++h) {
            for (int w = wstart; w < wend; ++w) {
              const int idx = h * width_ + w;
              // Strict '>' keeps the first maximum.
              if (best_idx < 0 || plane[idx] > best) {
                best = plane[idx];
                best_idx = idx;
              }
            }
          }
          const int t = (c * pooled_height_ + ph) * pooled_width_ + pw;
          top_data[t] = best;
          argmax[t] = best_idx;
        }
      }
    }
    top_data += top[0]->offset(1);
    argmax += max_idx_.offset(1);
  }
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down,
      const vector<Blob<Dtype>*>& bottom) {
  // rois (bottom 1) are coordinates, not a differentiable input.
  if (!propagate_down[0]) {
    return;
  }
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), bottom_diff);
  const int num_rois = bottom[1]->shape(0);
  if (num_rois == 0) {  // no rois: zero gradient (top holds no memory)
    return;
  }
  const Dtype* top_diff = top[0]->cpu_diff();
  const Dtype* rois = bottom[1]->cpu_data();
  const int* argmax = max_idx_.cpu_data();
  const int bins = pooled_height_ * pooled_width_;
  for (int n = 0; n < num_rois; ++n) {
    const int batch = static_cast<int>(rois[n * 5]);
    for (int c = 0; c < channels_; ++c) {
      Dtype* plane_diff = bottom_diff + bottom[0]->offset(batch, c);
      const int base = (n * channels_ + c) * bins;
      for (int b = 0; b < bins; ++b) {
        // Overlapping rois and bins accumulate into the same cell.
        if (argmax[base + b] >= 0) {
          plane_diff[argmax[base + b]] += top_diff[base + b];
        }
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(ROIPoolingLayer);
#endif

INSTANTIATE_CLASS(ROIPoolingLayer);
REGISTER_LAYER_CLASS(ROIPooling);

}  // namespace caffe
