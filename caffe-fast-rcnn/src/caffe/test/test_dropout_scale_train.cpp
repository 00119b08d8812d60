#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/dropout_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

// DropoutParameter.scale_train (the Faster R-CNN fork's field 2): with true
// (the default) training scales kept units by 1/(1-p) and testing is the
// identity; with false training only masks and testing scales by 1-p.
template <typename TypeParam>
class DropoutScaleTrainTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  DropoutScaleTrainTest()
      : bottom_(new Blob<Dtype>(2, 3, 4, 5)), top_(new Blob<Dtype>()) {
    for (int i = 0; i < bottom_->count(); ++i) {
      bottom_->mutable_cpu_data()[i] = i + 1;  // no zeros: drops are visible
    }
    bottom_vec_.push_back(bottom_);
    top_vec_.push_back(top_);
  }
  virtual ~DropoutScaleTrainTest() {
    delete bottom_;
    delete top_;
  }

  // Forward + backward (top diff = 2 * bottom data) in the given phase; every
  // top element and bottom diff must be 0 or `factor` times its input.
  // Returns how many units were kept.
  int Run(Phase phase, bool scale_train, Dtype factor) {
    LayerParameter param;
    param.set_phase(phase);
    param.mutable_dropout_param()->set_dropout_ratio(0.25);
    param.mutable_dropout_param()->set_scale_train(scale_train);
    DropoutLayer<Dtype> layer(param);
    layer.SetUp(bottom_vec_, top_vec_);
    layer.Forward(bottom_vec_, top_vec_);
    caffe_cpu_scale(top_->count(), Dtype(2), bottom_->cpu_data(),
        top_->mutable_cpu_diff());
    layer.Backward(top_vec_, vector<bool>(1, true), bottom_vec_);
    int kept = 0;
    for (int i = 0; i < bottom_->count(); ++i) {
      const Dtype x = bottom_->cpu_data()[i];
      const Dtype y = top_->cpu_data()[i];
      const Dtype g = bottom_->cpu_diff()[i];
      if (y == 0) {
        EXPECT_EQ(0, g) << "a dropped unit must get no gradient";
      } else {
        ++kept;
        EXPECT_NEAR(factor * x, y, 1e-4 * x) << i;
        EXPECT_NEAR(factor * 2 * x, g, 2e-4 * x) << i;
      }
    }
    return kept;
  }

  Blob<Dtype>* const bottom_;
  Blob<Dtype>* const top_;
  vector<Blob<Dtype>*> bottom_vec_;
  vector<Blob<Dtype>*> top_vec_;
};

TYPED_TEST_CASE(DropoutScaleTrainTest, TestDtypesAndDevices);

TYPED_TEST(DropoutScaleTrainTest, TestTrainScaled) {
  const int kept = this->Run(TRAIN, true, 1 / 0.75);
  EXPECT_GT(kept, 60);  // 120 units, keep rate 0.75: about 90
  EXPECT_LT(kept, 120);
}

TYPED_TEST(DropoutScaleTrainTest, TestTrainUnscaled) {
  const int kept = this->Run(TRAIN, false, 1);
  EXPECT_GT(kept, 60);
  EXPECT_LT(kept, 120);
}

TYPED_TEST(DropoutScaleTrainTest, TestTestPhaseScaled) {
  EXPECT_EQ(120, this->Run(TEST, true, 1));
}

TYPED_TEST(DropoutScaleTrainTest, TestTestPhaseUnscaled) {
  EXPECT_EQ(120, this->Run(TEST, false, 0.75));
}

}  // namespace caffe
