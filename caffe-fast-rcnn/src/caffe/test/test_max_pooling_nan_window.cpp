#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/pooling_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

// A diverging run (NaN features) reaches max pooling with all-NaN windows.
// Their argmax stays -1; upstream's CPU backward then added the gradient one
// element before the channel, i.e. into the previous channel (or before the
// buffer), corrupting the heap. Patch 0005 skips such windows.
template <typename TypeParam>
class MaxPoolingNaNWindowTest : public MultiDeviceTest<TypeParam> {};

TYPED_TEST_CASE(MaxPoolingNaNWindowTest, TestDtypesAndDevices);

TYPED_TEST(MaxPoolingNaNWindowTest, TestBackwardSkipsNaNWindow) {
  typedef typename TypeParam::Dtype Dtype;
  // 1 x 2 x 2 x 2; channel 0 = (4, 1, 2, 3), channel 1 all NaN; one 2 x 2
  // window per channel.
  Blob<Dtype> bottom(1, 2, 2, 2), top;
  const Dtype nan = std::numeric_limits<Dtype>::quiet_NaN();
  const Dtype values[8] = {4, 1, 2, 3, nan, nan, nan, nan};
  caffe_copy(8, values, bottom.mutable_cpu_data());
  vector<Blob<Dtype>*> bottom_vec(1, &bottom), top_vec(1, &top);
  LayerParameter param;
  param.mutable_pooling_param()->set_pool(PoolingParameter_PoolMethod_MAX);
  param.mutable_pooling_param()->set_kernel_size(2);
  PoolingLayer<Dtype> layer(param);
  layer.SetUp(bottom_vec, top_vec);
  layer.Forward(bottom_vec, top_vec);
  EXPECT_EQ(Dtype(4), top.cpu_data()[0]);
  caffe_set(2, Dtype(1), top.mutable_cpu_diff());
  layer.Backward(top_vec, vector<bool>(1, true), bottom_vec);
  const Dtype expected[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(expected[i], bottom.cpu_diff()[i]) << "bottom element " << i;
  }
}

}  // namespace caffe
