// Non-owning views. Shapes and strides are in PyTorch order (outermost first), strides in
// elements. Storage belongs to someone else: an mmap'd checkpoint, a workspace, a KV cache.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace dsv3 {

constexpr int kMaxDims = 6;

struct Shape {
  std::array<int64_t, kMaxDims> dims{};
  int ndim = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d) {
    for (int64_t v : d) dims[ndim++] = v;
  }
  static Shape from(const std::vector<int64_t>& d) {
    Shape s;
    for (int64_t v : d) s.dims[s.ndim++] = v;
    return s;
  }
  int64_t operator[](int i) const { return dims[i < 0 ? ndim + i : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= dims[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (ndim != o.ndim) return false;
    for (int i = 0; i < ndim; ++i)
      if (dims[i] != o.dims[i]) return false;
    return true;
  }
  std::vector<int64_t> vec() const { return {dims.begin(), dims.begin() + ndim}; }
  std::string str() const;  // "[576, 7168]"
};

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::F32;
  Shape shape;
  std::array<int64_t, kMaxDims> strides{};  // elements

  TensorView() = default;
  // Contiguous (row-major) view.
  TensorView(void* d, DType t, Shape s) : data(d), dtype(t), shape(s) {
    int64_t st = 1;
    for (int i = s.ndim - 1; i >= 0; --i) {
      strides[i] = st;
      st *= s.dims[i];
    }
  }
  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  bool contiguous() const {
    int64_t st = 1;
    for (int i = shape.ndim - 1; i >= 0; --i) {
      if (shape.dims[i] != 1 && strides[i] != st) return false;
      st *= shape.dims[i];
    }
    return true;
  }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }
};

// A 2-D weight of a linear layer, y = x . W^T, W [rows=out, cols=in], row-major, as stored.
// FP8 block weights carry scale_inv [ceil(rows/128), ceil(cols/128)] (float32): the value of
// W[i,j] is e4m3(W[i,j]) * scale_inv[i/128, j/128]. Other dtypes leave scale_inv null.
constexpr int64_t kFp8Block = 128;
struct WeightView {
  const void* data = nullptr;
  DType dtype = DType::BF16;
  int64_t rows = 0, cols = 0;
  const float* scale_inv = nullptr;  // [ceil(rows/128), ceil(cols/128)] when dtype is F8_E4M3
  // Row slice: the view's row i is row row0+i of the full matrix. `data` and `scale_inv` keep
  // pointing at the full matrix, so FP8 scale rows stay (row0+i)/128 even when row0 is not a
  // multiple of 128 (MLA's per-head kv_b_proj slices).
  int64_t row0 = 0;
  // FP8: 1 when the owner has checked (ops::has_nan_codes) that no element is a NaN code, so
  // kernels skip their own per-row check; 0 unknown, -1 has some. Row slices inherit it.
  int8_t nan_state = 0;
  // I4 (compressed-tensors pack-quantized, symmetric, group strategy): `data` holds
  // packed_row_bytes() per row, element c stored as c+8 in bits 4(c%8) of little-endian int32 c/8,
  // i.e. byte c/2, low nibble first; its value is (nibble - 8) * scale, with `group_scale`
  // [full rows, ceil(cols/group)] in group_scale_dtype (BF16, F16 or F32).
  const void* group_scale = nullptr;
  DType group_scale_dtype = DType::BF16;
  int32_t group = 0;
  int64_t scale_cols() const { return (cols + kFp8Block - 1) / kFp8Block; }
  int64_t packed_row_bytes() const { return (cols + 7) / 8 * 4; }
  int64_t group_cols() const { return group > 0 ? (cols + group - 1) / group : 0; }
  // I4: element i of the full group_scale array, as float. Always inlined: the SIMD kernel files
  // (-mavx512*) call these two, and an out-of-line copy emitted there would be a weak symbol
  // with AVX code that the linker may pick for every caller (tests/isa_symbols.sh).
  [[gnu::always_inline]] float group_scale_value(size_t i) const {
    switch (group_scale_dtype) {
      case DType::F32: return static_cast<const float*>(group_scale)[i];
      case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(group_scale)[i]);
      default: return bf16_to_f32(static_cast<const uint16_t*>(group_scale)[i]);
    }
  }
  // I4: scale of view row r, column c.
  [[gnu::always_inline]] float group_scale_at(int64_t r, int64_t c) const {
    return group_scale_value(static_cast<size_t>((row0 + r) * group_cols() + c / group));
  }
  // Rows [r0, r0+n) of this view; no data is copied.
  WeightView slice_rows(int64_t r0, int64_t n) const {
    WeightView v = *this;
    v.row0 = row0 + r0;
    v.rows = n;
    return v;
  }
  size_t nbytes() const {
    if (dtype == DType::I4)
      return static_cast<size_t>(rows * (packed_row_bytes() + group_cols() * static_cast<int64_t>(dtype_size(group_scale_dtype))));
    return static_cast<size_t>(rows * cols) * dtype_size(dtype);
  }
};

}  // namespace dsv3
