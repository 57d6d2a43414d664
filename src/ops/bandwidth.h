// Measured memory read bandwidth of this machine: the roofline that decode speed is judged by.
#pragma once
#include <cstddef>

namespace dsv3::ops {

// Streams a `bytes` buffer (touched once first) with all op threads, each reading its part as
// several interleaved streams and XOR-folding 64-bit words;
// returns the best GB/s (1e9 bytes/s) over `reps` passes.
double measure_read_bandwidth(size_t bytes = size_t(1) << 30, int reps = 5);

}  // namespace dsv3::ops
