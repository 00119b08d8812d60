// Bitmask NMS: the GPU computes, for every box, a bitmask of the lower-ranked boxes it would
// suppress (64 boxes per 64-bit word); the host then makes the sequential greedy pass over
// those masks. Same rule and float32 arithmetic as cpu_nms.pyx.
#include "gpu_nms.hpp"

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Mask = unsigned long long;
constexpr int kBoxesPerBlock = 64;  // one bit per box in a Mask word

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("gpu_nms: ") + what + " failed: " +
                             cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
  }
}

// Selects device_id for the lifetime of the object and restores the caller's device after,
// so that NMS does not change the device Caffe is using.
class DeviceScope {
 public:
  explicit DeviceScope(int device_id) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    check_cuda(cudaSetDevice(device_id), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

// Owns count elements of device memory; freed on scope exit, including when an error throws.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t count) {
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T)), "cudaMalloc");
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

// IoU of two pixel-inclusive boxes [x1, y1, x2, y2]. The _rn intrinsics forbid nvcc from
// fusing a multiply into a neighbouring add (FMA), which would change the rounding and
// break bit-for-bit agreement with the CPU.
__device__ inline float box_iou(const float* a, const float* b) {
  const float w = fmaxf(fminf(a[2], b[2]) - fmaxf(a[0], b[0]) + 1.0f, 0.0f);
  const float h = fmaxf(fminf(a[3], b[3]) - fmaxf(a[1], b[1]) + 1.0f, 0.0f);
  const float inter = __fmul_rn(w, h);
  const float area_a = __fmul_rn(a[2] - a[0] + 1.0f, a[3] - a[1] + 1.0f);
  const float area_b = __fmul_rn(b[2] - b[0] + 1.0f, b[3] - b[1] + 1.0f);
  return __fdiv_rn(inter, area_a + area_b - inter);
}

// Block (row_block, col_block), 64 threads: thread t takes box i = 64·row_block + t and sets
// bit j of mask[i][col_block] when box 64·col_block + j ranks below i and IoU > thresh.
// Blocks left of the diagonal return at once: the host never reads them.
__global__ void suppression_mask_kernel(int num_boxes, int box_dim, float thresh,
                                        const float* boxes, int col_blocks, Mask* mask) {
  const int row_block = blockIdx.y;
  const int col_block = blockIdx.x;
  if (row_block > col_block) return;
  const int row_count = min(num_boxes - row_block * kBoxesPerBlock, kBoxesPerBlock);
  const int col_count = min(num_boxes - col_block * kBoxesPerBlock, kBoxesPerBlock);

  __shared__ float col_boxes[kBoxesPerBlock * 4];
  if (threadIdx.x < col_count) {
    const float* src = boxes + (col_block * kBoxesPerBlock + threadIdx.x) * box_dim;
    for (int c = 0; c < 4; ++c) col_boxes[threadIdx.x * 4 + c] = src[c];
  }
  __syncthreads();
  if (threadIdx.x >= row_count) return;

  const int i = row_block * kBoxesPerBlock + threadIdx.x;
  const float* row_box = boxes + i * box_dim;
  const int first = (row_block == col_block) ? threadIdx.x + 1 : 0;
  Mask bits = 0;
  for (int j = first; j < col_count; ++j) {
    if (box_iou(row_box, col_boxes + j * 4) > thresh) bits |= Mask(1) << j;
  }
  mask[static_cast<std::size_t>(i) * col_blocks + col_block] = bits;
}

// Sequential greedy pass over the masks; returns the number of kept ranks written.
int greedy_pass(const std::vector<Mask>& mask, int num_boxes, int col_blocks, int64_t* keep_out) {
  std::vector<Mask> removed(col_blocks, 0);
  int num_kept = 0;
  for (int i = 0; i < num_boxes; ++i) {
    const int block = i / kBoxesPerBlock;
    const int bit = i % kBoxesPerBlock;
    if (removed[block] & (Mask(1) << bit)) continue;
    keep_out[num_kept++] = i;
    const Mask* row = mask.data() + static_cast<std::size_t>(i) * col_blocks;
    for (int b = block; b < col_blocks; ++b) removed[b] |= row[b];
  }
  return num_kept;
}

}  // namespace

int gpu_nms_sorted(const float* host_boxes, int num_boxes, int box_dim, float thresh,
                   int device_id, int64_t* keep_out) {
  if (num_boxes <= 0) return 0;
  if (box_dim < 4) throw std::invalid_argument("gpu_nms: box_dim must be >= 4");
  DeviceScope scope(device_id);
  const int col_blocks = (num_boxes + kBoxesPerBlock - 1) / kBoxesPerBlock;
  const std::size_t box_values = static_cast<std::size_t>(num_boxes) * box_dim;
  const std::size_t mask_words = static_cast<std::size_t>(num_boxes) * col_blocks;

  DeviceBuffer<float> boxes(box_values);
  DeviceBuffer<Mask> mask(mask_words);
  check_cuda(cudaMemcpy(boxes.get(), host_boxes, box_values * sizeof(float),
                        cudaMemcpyHostToDevice),
             "cudaMemcpy (boxes to device)");
  const dim3 grid(col_blocks, col_blocks);
  suppression_mask_kernel<<<grid, kBoxesPerBlock>>>(num_boxes, box_dim, thresh, boxes.get(),
                                                    col_blocks, mask.get());
  check_cuda(cudaGetLastError(), "suppression_mask_kernel launch");

  std::vector<Mask> host_mask(mask_words);
  // The blocking copy also surfaces any error raised while the kernel ran.
  check_cuda(cudaMemcpy(host_mask.data(), mask.get(), mask_words * sizeof(Mask),
                        cudaMemcpyDeviceToHost),
             "cudaMemcpy (mask to host)");
  return greedy_pass(host_mask, num_boxes, col_blocks, keep_out);
}

int gpu_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear it: a failed query must not poison later calls
    return 0;
  }
  return count;
}
