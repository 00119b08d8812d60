#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/smooth_l1_loss_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class SmoothL1LossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  SmoothL1LossLayerTest()
      : prediction_(new Blob<Dtype>(2, 2, 1, 1)),
        target_(new Blob<Dtype>(2, 2, 1, 1)),
        inside_(new Blob<Dtype>(2, 2, 1, 1)),
        outside_(new Blob<Dtype>(2, 2, 1, 1)),
        loss_(new Blob<Dtype>()) {
    top_.push_back(loss_);
  }
  virtual ~SmoothL1LossLayerTest() {
    delete prediction_;
    delete target_;
    delete inside_;
    delete outside_;
    delete loss_;
  }

  static void Fill(Blob<Dtype>* blob, const Dtype (&values)[4]) {
    caffe_copy(4, values, blob->mutable_cpu_data());
  }

  vector<Blob<Dtype>*> Bottoms(bool with_weights) {
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(prediction_);
    bottom.push_back(target_);
    if (with_weights) {
      bottom.push_back(inside_);
      bottom.push_back(outside_);
    }
    return bottom;
  }

  LayerParameter Param(float sigma, float loss_weight) {
    LayerParameter param;
    param.set_name("smooth_l1_test");
    param.mutable_smooth_l1_loss_param()->set_sigma(sigma);
    param.add_loss_weight(loss_weight);
    return param;
  }

  // Forward + backward (both bottoms) and exact-value checks; num is 2.
  void Check(const LayerParameter& param, bool with_weights,
      Dtype expected_loss, const Dtype (&expected_grad)[4]) {
    vector<Blob<Dtype>*> bottom = Bottoms(with_weights);
    SmoothL1LossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top_);
    const Dtype loss = layer.Forward(bottom, top_);
    EXPECT_NEAR(expected_loss, loss, 1e-6);
    EXPECT_NEAR(expected_loss / param.loss_weight(0), loss_->cpu_data()[0],
        1e-6);
    layer.Backward(top_, vector<bool>(bottom.size(), true), bottom);
    for (int i = 0; i < 4; ++i) {
      EXPECT_NEAR(expected_grad[i], prediction_->cpu_diff()[i], 1e-6) << i;
      EXPECT_NEAR(-expected_grad[i], target_->cpu_diff()[i], 1e-6) << i;
    }
  }

  Blob<Dtype>* const prediction_;
  Blob<Dtype>* const target_;
  Blob<Dtype>* const inside_;
  Blob<Dtype>* const outside_;
  Blob<Dtype>* const loss_;
  vector<Blob<Dtype>*> top_;
};

TYPED_TEST_CASE(SmoothL1LossLayerTest, TestDtypesAndDevices);

// sigma 1 (transition at |d| = 1), both branches:
// d = p - t = (0.5, -2, 1.25, -3); f = (0.125, 1.5, 0.75, 2.5), sum 4.875,
// over num 2: 2.4375. Gradient f'(d) / 2 = (0.5, -1, 1, -1) / 2.
TYPED_TEST(SmoothL1LossLayerTest, TestSigma1) {
  this->Fill(this->prediction_, {0.5, -2, 1.5, 0});
  this->Fill(this->target_, {0, 0, 0.25, 3});
  this->Check(this->Param(1, 1), false, 2.4375, {0.25, -0.5, 0.5, -0.5});
}

// sigma 3 (transition at |d| = 1/9): d = (0.1, -0.05, 0.5, -1):
// f = (0.045, 0.01125, 0.5 - 1/18, 1 - 1/18), sum 1.4451388..., over 2.
// Gradient (9 d | sign d) / 2 = (0.45, -0.225, 0.5, -0.5).
TYPED_TEST(SmoothL1LossLayerTest, TestSigma3) {
  this->Fill(this->prediction_, {0.1, -0.05, 0.5, -1});
  this->Fill(this->target_, {0, 0, 0, 0});
  this->Check(this->Param(3, 1), false,
      (0.045 + 0.01125 + (0.5 - 1. / 18) + (1 - 1. / 18)) / 2,
      {0.45, -0.225, 0.5, -0.5});
}

// sigma 1 with weights and loss_weight 2:
// p - t = (0.5, 3, 7, -0.25), w_in = (1, 0.5, 0, 2) -> d = (0.5, 1.5, 0, -0.5)
// f = (0.125, 1, 0, 0.125), w_out = (0.25, 1, 1, 0.5) -> (0.03125, 1, 0,
// 0.0625), sum 1.09375 / 2 = 0.546875, times 2 = 1.09375.
// Gradient 2 * w_in * w_out * f'(d) / 2 = (0.125, 0.5, 0, -0.5).
TYPED_TEST(SmoothL1LossLayerTest, TestWeightsAndLossWeight) {
  this->Fill(this->prediction_, {1.5, 3, 7, 0.75});
  this->Fill(this->target_, {1, 0, 0, 1});
  this->Fill(this->inside_, {1, 0.5, 0, 2});
  this->Fill(this->outside_, {0.25, 1, 1, 0.5});
  this->Check(this->Param(1, 2), true, 1.09375, {0.125, 0.5, 0, -0.5});
}

// propagate_down (true, false) leaves the target's diff untouched.
TYPED_TEST(SmoothL1LossLayerTest, TestPropagateDownPredictionOnly) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(this->prediction_, {0.5, -2, 1.5, 0});
  this->Fill(this->target_, {0, 0, 0.25, 3});
  vector<Blob<Dtype>*> bottom = this->Bottoms(false);
  SmoothL1LossLayer<Dtype> layer(this->Param(1, 1));
  layer.SetUp(bottom, this->top_);
  layer.Forward(bottom, this->top_);
  caffe_set(4, Dtype(7), this->target_->mutable_cpu_diff());
  vector<bool> propagate_down(2, true);
  propagate_down[1] = false;
  layer.Backward(this->top_, propagate_down, bottom);
  const Dtype expected[4] = {0.25, -0.5, 0.5, -0.5};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(expected[i], this->prediction_->cpu_diff()[i], 1e-6);
    EXPECT_EQ(Dtype(7), this->target_->cpu_diff()[i]);
  }
}

TYPED_TEST(SmoothL1LossLayerTest, TestThreeBottomsRejected) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom = this->Bottoms(true);
  bottom.pop_back();
  SmoothL1LossLayer<Dtype> layer(this->Param(1, 1));
  EXPECT_DEATH(layer.SetUp(bottom, this->top_), "give both");
}

// Numerical gradients of prediction and target on random data, for both
// sigmas, with random non-negative weights (the loss is C1 at the transition,
// so finite differences hold everywhere).
// No rows (no rois in the batch): loss 0, not 0 / 0, and nothing written.
TYPED_TEST(SmoothL1LossLayerTest, TestZeroRows) {
  typedef typename TypeParam::Dtype Dtype;
  for (const bool with_weights : {false, true}) {
    Blob<Dtype> prediction(0, 8, 1, 1), target(0, 8, 1, 1);
    Blob<Dtype> inside(0, 8, 1, 1), outside(0, 8, 1, 1);
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(&prediction);
    bottom.push_back(&target);
    if (with_weights) {
      bottom.push_back(&inside);
      bottom.push_back(&outside);
    }
    SmoothL1LossLayer<Dtype> layer(this->Param(3, 1));
    layer.SetUp(bottom, this->top_);
    const Dtype loss = layer.Forward(bottom, this->top_);
    EXPECT_EQ(Dtype(0), loss);
    EXPECT_EQ(Dtype(0), this->loss_->cpu_data()[0]);
    layer.Backward(this->top_, vector<bool>(bottom.size(), true), bottom);
    EXPECT_EQ(0, prediction.count());
  }
}

TYPED_TEST(SmoothL1LossLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  for (const float sigma : {1.f, 3.f}) {
    Blob<Dtype> p(4, 6, 2, 3), t(4, 6, 2, 3), w_in(4, 6, 2, 3),
        w_out(4, 6, 2, 3);
    FillerParameter gaussian_param;
    gaussian_param.set_std(1);
    GaussianFiller<Dtype> gaussian(gaussian_param);
    gaussian.Fill(&p);
    gaussian.Fill(&t);
    UniformFiller<Dtype> uniform((FillerParameter()));
    uniform.Fill(&w_in);
    uniform.Fill(&w_out);
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(&p);
    bottom.push_back(&t);
    bottom.push_back(&w_in);
    bottom.push_back(&w_out);
    SmoothL1LossLayer<Dtype> layer(this->Param(sigma, 1));
    GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
    checker.CheckGradientExhaustive(&layer, bottom, this->top_, 0);
    checker.CheckGradientExhaustive(&layer, bottom, this->top_, 1);
    bottom.resize(2);
    SmoothL1LossLayer<Dtype> unweighted(this->Param(sigma, 1));
    checker.CheckGradientExhaustive(&unweighted, bottom, this->top_, 0);
    checker.CheckGradientExhaustive(&unweighted, bottom, this->top_, 1);
  }
}

}  // namespace caffe
