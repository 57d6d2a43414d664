// libFuzzer target for the safetensors header parser (io/safetensors.h). Bad input may only
// ever produce a dsv3::Error; anything else (a crash, a sanitizer report, another exception)
// is a bug. Build and run: see README.md in this folder.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exactly sized copy so that reads past the end are caught.
  std::unique_ptr<uint8_t[]> buf(new uint8_t[size ? size : 1]);
  if (size) std::memcpy(buf.get(), data, size);
  try {
    const dsv3::SafetensorsHeader h = dsv3::parse_safetensors_header(buf.get(), size, size, "fuzz.safetensors");
    // What a successful parse promises: ranges inside the data section, sized shape x dtype, disjoint.
    uint64_t prev_end = 0;
    for (const auto& t : h.tensors) {
      if (t.begin > t.end || t.end > size - h.data_start || t.begin < prev_end ||
          static_cast<uint64_t>(t.shape.numel()) * dsv3::dtype_size(t.dtype) != t.nbytes())
        __builtin_trap();
      prev_end = t.end;
    }
  } catch (const dsv3::Error&) {
  }
  return 0;
}
