#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/roi_pooling_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

// Feature map N=2, C=2, H=4, W=5 (index of (h, w) in a plane: h * 5 + w).
// Image 0, channel 0 holds the first 20 digits of pi, image 1 channel 0 those
// of e; channel 1 is the negation of channel 0 so maxima move and can be
// negative. Ties (the 9s, 5s and 8s) exercise "first maximum wins".
static const int kPi[20] = {3, 1, 4, 1, 5,
                            9, 2, 6, 5, 3,
                            5, 8, 9, 7, 9,
                            3, 2, 3, 8, 4};
static const int kE[20] = {2, 7, 1, 8, 2,
                           8, 1, 8, 2, 8,
                           4, 5, 9, 0, 4,
                           5, 2, 3, 5, 3};

template <typename TypeParam>
class ROIPoolingLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  ROIPoolingLayerTest()
      : features_(new Blob<Dtype>(2, 2, 4, 5)),
        rois_(new Blob<Dtype>()),
        top_(new Blob<Dtype>()) {
    Dtype* data = features_->mutable_cpu_data();
    for (int i = 0; i < 20; ++i) {
      data[features_->offset(0, 0) + i] = kPi[i];
      data[features_->offset(0, 1) + i] = -kPi[i];
      data[features_->offset(1, 0) + i] = kE[i];
      data[features_->offset(1, 1) + i] = -kE[i];
    }
    bottom_.push_back(features_);
    bottom_.push_back(rois_);
    top_vec_.push_back(top_);
  }
  virtual ~ROIPoolingLayerTest() {
    delete features_;
    delete rois_;
    delete top_;
  }

  void SetRois(const vector<vector<Dtype> >& rois) {
    rois_->Reshape(static_cast<int>(rois.size()), 5, 1, 1);
    for (size_t n = 0; n < rois.size(); ++n) {
      for (int k = 0; k < 5; ++k) {
        rois_->mutable_cpu_data()[n * 5 + k] = rois[n][k];
      }
    }
  }

  LayerParameter Param(int pooled_h, int pooled_w, float scale) {
    LayerParameter param;
    param.set_name("roi_pool_test");
    param.mutable_roi_pooling_param()->set_pooled_h(pooled_h);
    param.mutable_roi_pooling_param()->set_pooled_w(pooled_w);
    param.mutable_roi_pooling_param()->set_spatial_scale(scale);
    return param;
  }

  // Runs forward and checks top against expected (R x C x ph x pw values).
  void ExpectForward(const LayerParameter& param,
      const vector<Dtype>& expected) {
    ROIPoolingLayer<Dtype> layer(param);
    layer.SetUp(bottom_, top_vec_);
    layer.Forward(bottom_, top_vec_);
    ASSERT_EQ(top_->count(), static_cast<int>(expected.size()));
    for (int i = 0; i < top_->count(); ++i) {
      EXPECT_EQ(expected[i], top_->cpu_data()[i]) << "top element " << i;
    }
  }

  // Backward with every top gradient = 1; returns the feature gradient.
  vector<Dtype> BackwardOnes(const LayerParameter& param) {
    ROIPoolingLayer<Dtype> layer(param);
    layer.SetUp(bottom_, top_vec_);
    layer.Forward(bottom_, top_vec_);
    caffe_set(top_->count(), Dtype(1), top_->mutable_cpu_diff());
    // Stale values must be overwritten, not accumulated into.
    caffe_set(features_->count(), Dtype(5), features_->mutable_cpu_diff());
    vector<bool> propagate_down(2, true);
    layer.Backward(top_vec_, propagate_down, bottom_);
    return vector<Dtype>(features_->cpu_diff(),
        features_->cpu_diff() + features_->count());
  }

  Blob<Dtype>* const features_;
  Blob<Dtype>* const rois_;
  Blob<Dtype>* const top_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_vec_;
};

TYPED_TEST_CASE(ROIPoolingLayerTest, TestDtypesAndDevices);

TYPED_TEST(ROIPoolingLayerTest, TestSetUpShape) {
  typedef typename TypeParam::Dtype Dtype;
  vector<vector<Dtype> > rois(3, vector<Dtype>(5, 0));
  this->SetRois(rois);
  ROIPoolingLayer<Dtype> layer(this->Param(6, 7, 1));
  layer.SetUp(this->bottom_, this->top_vec_);
  EXPECT_EQ(3, this->top_->num());
  EXPECT_EQ(2, this->top_->channels());
  EXPECT_EQ(6, this->top_->height());
  EXPECT_EQ(7, this->top_->width());
}

// A 1-pixel roi, an inverted roi (x2 < x1, y2 < y1) and a whole-image roi on
// image 1, pooled 2 x 2 at scale 1.
TYPED_TEST(ROIPoolingLayerTest, TestForwardPixelInvertedAndOtherImage) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype rois[3][5] = {{0, 2, 1, 2, 1},   // the single cell (1, 2)
                            {0, 3, 2, 1, 0},   // inverted: cell (2, 3) only
                            {1, 0, 0, 4, 3}};  // all of image 1
  vector<vector<Dtype> > roi_list;
  for (int n = 0; n < 3; ++n) {
    roi_list.push_back(vector<Dtype>(rois[n], rois[n] + 5));
  }
  this->SetRois(roi_list);
  // Whole image 1 with bins 2 x 2.5: rows [0,2) [2,4), cols [0,3) [2,5).
  const Dtype expected[] = {
      6, 6, 6, 6,   -6, -6, -6, -6,   // pi(1,2) = 6
      7, 7, 7, 7,   -7, -7, -7, -7,   // pi(2,3) = 7
      8, 8, 9, 9,   -1, -1, -2, 0};   // e: first 8 at (1,0) and (0,3)
  this->ExpectForward(this->Param(2, 2, 1),
      vector<Dtype>(expected, expected + 24));
}

// Fractional bins (4/3 x 5/3) over all of image 0, pooled 3 x 3: rows
// [0,2) [1,3) [2,4), cols [0,2) [1,4) [3,5); overlapping bins share maxima and
// the tie of 5s in bin (0, 2) keeps (0, 4), the first in row-major order.
TYPED_TEST(ROIPoolingLayerTest, TestForwardFractionalBins) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetRois(vector<vector<Dtype> >(1, vector<Dtype>({0, 0, 0, 4, 3})));
  const Dtype expected[] = {9, 6, 5,  9, 9, 9,  8, 9, 9,
                            -1, -1, -1,  -2, -2, -3,  -2, -2, -4};
  this->ExpectForward(this->Param(3, 3, 1),
      vector<Dtype>(expected, expected + 18));
}

// An roi reaching past the right edge: x in [3, 8] has bins of 3 columns,
// [3,6) clipped to [3,5) and [6,9) clipped to nothing, which pools to 0.
TYPED_TEST(ROIPoolingLayerTest, TestForwardEmptyBin) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetRois(vector<vector<Dtype> >(1, vector<Dtype>({0, 3, 0, 8, 3})));
  const Dtype expected[] = {9, 0,  -1, 0};
  this->ExpectForward(this->Param(1, 2, 1),
      vector<Dtype>(expected, expected + 4));
}

// spatial_scale 0.5 puts corners on .5: rounding is half away from zero.
// roi 0: x, y in [-1, 1] -> [-0.5, 0.5] -> [-1, 1]: rows/cols [0, 2) after
//        clipping, max 9 (banker's rounding or truncation would give [0, 0]).
// roi 1: x [5, 7] -> [2.5, 3.5] -> [3, 4], y [3, 5] -> [1.5, 2.5] -> [2, 3]:
//        channel 1 max is -4 at (3, 4) (round-half-even would give -7).
TYPED_TEST(ROIPoolingLayerTest, TestForwardSpatialScaleRounding) {
  typedef typename TypeParam::Dtype Dtype;
  vector<vector<Dtype> > rois;
  rois.push_back(vector<Dtype>({0, -1, -1, 1, 1}));
  rois.push_back(vector<Dtype>({0, 5, 3, 7, 5}));
  this->SetRois(rois);
  const Dtype expected[] = {9, -1,  9, -4};
  this->ExpectForward(this->Param(1, 1, 0.5),
      vector<Dtype>(expected, expected + 4));
}

// Every top gradient 1: each pooled cell receives one per bin it won, summed
// over bins and rois; empty bins send nothing; other cells get 0.
TYPED_TEST(ROIPoolingLayerTest, TestBackwardAccumulates) {
  typedef typename TypeParam::Dtype Dtype;
  vector<vector<Dtype> > rois;
  rois.push_back(vector<Dtype>({0, 2, 1, 2, 1}));   // 4 bins -> pi (1, 2)
  rois.push_back(vector<Dtype>({0, 3, 2, 1, 0}));   // 4 bins -> pi (2, 3)
  rois.push_back(vector<Dtype>({1, 0, 0, 4, 3}));   // image 1, 2 x 2 bins
  rois.push_back(vector<Dtype>({0, 3, 0, 8, 3}));   // one empty bin
  rois.push_back(vector<Dtype>({0, 2, 1, 2, 1}));   // the first roi again
  this->SetRois(rois);
  const vector<Dtype> diff = this->BackwardOnes(this->Param(2, 2, 1));
  Dtype expected[80] = {0};
  // image 0, channel 0: (1,2)=7 gets 4 + 4; (2,3)=13 gets 4. Roi 3 (x in
  // [3,8], bins of 3 columns): bins [3,5) x rows [0,2) -> 5 at (0,4)=4 and
  // rows [2,4) -> 9 at (2,4)=14; the other two bins are empty.
  expected[7] = 8;  expected[13] = 4;  expected[4] = 1;  expected[14] = 1;
  // image 0, channel 1 (offset 20): -6 at 7, -7 at 13; roi 3: -1 at (0,3)=3
  // and rows [2,4): -4 at (3,4)=19.
  expected[20 + 7] = 8;  expected[20 + 13] = 4;
  expected[20 + 3] = 1;  expected[20 + 19] = 1;
  // image 1, channel 0 (offset 40): 8 at 5, 8 at 3, 9 at 12 twice.
  expected[40 + 5] = 1;  expected[40 + 3] = 1;  expected[40 + 12] = 2;
  // image 1, channel 1 (offset 60): -1 at 2 twice, -2 at 16, 0 at 13.
  expected[60 + 2] = 2;  expected[60 + 16] = 1;  expected[60 + 13] = 1;
  for (int i = 0; i < 80; ++i) {
    EXPECT_EQ(expected[i], diff[i]) << "feature element " << i;
  }
}

TYPED_TEST(ROIPoolingLayerTest, TestBadBatchIndexDies) {
  typedef typename TypeParam::Dtype Dtype;
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  const LayerParameter param = this->Param(2, 2, 1);
  for (const Dtype batch : {Dtype(2), Dtype(-1), Dtype(0.5)}) {
    this->SetRois(vector<vector<Dtype> >(1, vector<Dtype>({batch, 0, 0, 1, 1})));
    ROIPoolingLayer<Dtype> layer(param);
    layer.SetUp(this->bottom_, this->top_vec_);
    EXPECT_DEATH(layer.Forward(this->bottom_, this->top_vec_),
        "roi 0 has batch index .* integers 0..1");
  }
}

TYPED_TEST(ROIPoolingLayerTest, TestNonFiniteRoiDies) {
  typedef typename TypeParam::Dtype Dtype;
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  const LayerParameter param = this->Param(2, 2, 1);
  const Dtype nan = std::numeric_limits<Dtype>::quiet_NaN();
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  for (const Dtype bad : {nan, inf, -inf, Dtype(1e30)}) {
    for (int k = 1; k < 5; ++k) {
      vector<Dtype> roi({0, 0, 0, 1, 1});
      roi[k] = bad;
      this->SetRois(vector<vector<Dtype> >(1, roi));
      ROIPoolingLayer<Dtype> layer(param);
      layer.SetUp(this->bottom_, this->top_vec_);
      EXPECT_DEATH(layer.Forward(this->bottom_, this->top_vec_),
          "roi 0 has coordinate .* not finite or too large");
    }
  }
}

// No rois (a batch whose proposals were all filtered): an empty top, and a
// zero gradient over the whole feature map, on both devices.
TYPED_TEST(ROIPoolingLayerTest, TestZeroRois) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetRois(vector<vector<Dtype> >());
  ROIPoolingLayer<Dtype> layer(this->Param(3, 2, 1));
  layer.SetUp(this->bottom_, this->top_vec_);
  EXPECT_EQ(0, this->top_->shape(0));
  EXPECT_EQ(2, this->top_->shape(1));
  EXPECT_EQ(3, this->top_->shape(2));
  EXPECT_EQ(2, this->top_->shape(3));
  layer.Forward(this->bottom_, this->top_vec_);
  EXPECT_EQ(0, this->top_->count());
  caffe_set(this->features_->count(), Dtype(7),
      this->features_->mutable_cpu_diff());
  vector<bool> propagate_down(2, false);
  propagate_down[0] = true;
  layer.Backward(this->top_vec_, propagate_down, this->bottom_);
  for (int i = 0; i < this->features_->count(); ++i) {
    EXPECT_EQ(0, this->features_->cpu_diff()[i]) << "feature element " << i;
  }
  // The same layer then pools a real roi as usual.
  this->SetRois(vector<vector<Dtype> >(1, vector<Dtype>({0, 0, 0, 4, 3})));
  layer.Reshape(this->bottom_, this->top_vec_);
  layer.Forward(this->bottom_, this->top_vec_);
  EXPECT_EQ(12, this->top_->count());
}

TYPED_TEST(ROIPoolingLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  // Distinct values 0.1 apart (a fixed permutation of 0..79): max pooling is
  // only differentiable away from ties, and the checker's step is 1e-2.
  Dtype* data = this->features_->mutable_cpu_data();
  for (int i = 0; i < 80; ++i) {
    data[i] = Dtype(0.1) * ((i * 37 + 11) % 80) - Dtype(4);
  }
  vector<vector<Dtype> > rois;
  rois.push_back(vector<Dtype>({0, 0, 0, 4, 3}));
  rois.push_back(vector<Dtype>({1, 1, 0, 3, 3}));
  rois.push_back(vector<Dtype>({1, 2, 1, 2, 1}));
  rois.push_back(vector<Dtype>({0, 3, 2, 1, 0}));
  rois.push_back(vector<Dtype>({0, 2, 0, 7, 2}));
  this->SetRois(rois);
  ROIPoolingLayer<Dtype> layer(this->Param(3, 2, 1));
  GradientChecker<Dtype> checker(1e-2, 1e-2);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_vec_, 0);
}

}  // namespace caffe
