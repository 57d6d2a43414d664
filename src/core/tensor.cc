#include "core/tensor.h"

#include <fmt/format.h>

namespace dsv3 {
std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}
}  // namespace dsv3
