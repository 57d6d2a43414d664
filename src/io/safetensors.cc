#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3 {

namespace {
// Headers of real checkpoints are < 1 MB; refuse absurd sizes before allocating anything.
constexpr uint64_t kMaxHeader = 256ull << 20;

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }
}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, uint64_t file_size,
                                           const std::string& what) {
  if (file_size < 8 || size < 8) fail("{}: truncated safetensors file ({} bytes, no header length)", what, file_size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > file_size - 8)
    fail("{}: header length {} goes beyond the end of the file ({} bytes)", what, n, file_size);
  if (n > kMaxHeader) fail("{}: header length {} is implausibly large", what, n);
  if (n > size - 8) fail("{}: header length {} beyond the bytes available ({})", what, n, size);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data + 8, data + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed safetensors header JSON: {}", what, e.what());
  }
  if (!j.is_object()) fail("{}: safetensors header is not a JSON object", what);
  SafetensorsHeader h;
  h.data_start = 8 + n;
  const uint64_t data_size = file_size - h.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("{}: __metadata__ is not an object", what);
      // safetensors metadata is str -> str. Refusing other values also avoids dump()'s recursion
      // on deeply nested input (a stack overflow).
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("{}: __metadata__ values must be strings", what);
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    // Names go into one-line error messages: refuse control characters (a JSON "\n" escape).
    if (std::any_of(name.begin(), name.end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; }))
      fail("{}: tensor name {} contains control characters", what,
           nlohmann::json(name).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    if (!v.is_object()) fail("{}: tensor '{}': entry is not an object", what, name);
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) fail("{}: tensor '{}': missing or non-string dtype", what, name);
    if (sh == v.end() || !sh->is_array()) fail("{}: tensor '{}': missing or non-array shape", what, name);
    if (off == v.end() || !off->is_array() || off->size() != 2)
      fail("{}: tensor '{}': data_offsets must be [begin, end]", what, name);
    TensorInfo t;
    t.name = name;
    auto d = parse_dtype(dt->get<std::string>());
    if (!d) fail("{}: tensor '{}': unknown dtype '{}'", what, name, dt->get<std::string>());
    t.dtype = *d;
    if (sh->size() > static_cast<size_t>(kMaxDims))
      fail("{}: tensor '{}': {} dimensions (at most {})", what, name, sh->size(), kMaxDims);
    uint64_t numel = 1;
    for (const auto& x : *sh) {
      if (!x.is_number_unsigned()) fail("{}: tensor '{}': shape entries must be non-negative integers", what, name);
      const uint64_t dim = x.get<uint64_t>();
      if (dim > (1ull << 40) || mul_overflows(numel, dim, &numel))
        fail("{}: tensor '{}': shape too large", what, name);
      t.shape.dims[t.shape.ndim++] = static_cast<int64_t>(dim);
    }
    for (const auto& x : *off)
      if (!x.is_number_unsigned()) fail("{}: tensor '{}': data_offsets must be non-negative integers", what, name);
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end) fail("{}: tensor '{}': data_offsets [{}, {}] are reversed", what, name, t.begin, t.end);
    if (t.end > data_size)
      fail("{}: tensor '{}': byte range [{}, {}] lies beyond the end of the file (data section is {} bytes; truncated file?)",
           what, name, t.begin, t.end, data_size);
    uint64_t expect = 0;
    if (mul_overflows(numel, dtype_size(t.dtype), &expect) || expect != t.end - t.begin)
      fail("{}: tensor '{}': shape {} x {} needs {} bytes but data_offsets give {}", what, name, t.shape.str(),
           dtype_name(t.dtype), expect, t.end - t.begin);
    h.tensors.push_back(std::move(t));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < h.tensors.size(); ++i) {
    const auto& a = h.tensors[i - 1];
    const auto& b = h.tensors[i];
    if (b.begin < a.end) fail("{}: tensors '{}' and '{}' overlap in the file", what, a.name, b.name);
  }
  return h;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : map_(path) {
  header_ = parse_safetensors_header(map_.data(), map_.size(), map_.size(), path);
  index_.reserve(header_.tensors.size());
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json hdr = nlohmann::ordered_json::object();
  if (!metadata.empty()) hdr["__metadata__"] = metadata;
  uint64_t off = 0;
  std::vector<uint64_t> begins;
  for (const auto& t : tensors) {
    const uint64_t nb = static_cast<uint64_t>(t.shape.numel()) * dtype_size(t.dtype);
    hdr[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape.vec()}, {"data_offsets", {off, off + nb}}};
    begins.push_back(off);
    off += nb;
  }
  std::string js = hdr.dump();
  while ((js.size() + 8) % 8) js.push_back(' ');  // HF pads the header with spaces to 8 bytes
  const uint64_t total = 8 + js.size() + off;

  const std::string tmp = path + ".partial";
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  auto bail = [&](const std::string& what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    fail("{}: {}: {}", path, what, std::strerror(err));
  };
  if (int e = ::posix_fallocate(fd, 0, static_cast<off_t>(total)); e != 0)
    bail(fmt::format("cannot reserve {} bytes (disk full?)", total), e);
  // Tensors are filled into user-space staging buffers (at least 64 MB, or the largest tensor)
  // and written with pwrite: no page of the output is ever mapped (so it never counts in our
  // RSS) and the kernel never zero-fills pages we overwrite anyway, as a writable mmap of the
  // reserved file would. No synchronous flush: a killed process still leaves a correct file,
  // and the space was reserved above, so write-back cannot run out of it.
  // After each chunk: start its write-back, and wait for the previous chunk's and drop it from
  // the page cache. Streaming a checkpoint then recycles the same cache pages instead of taking
  // fresh ones (slow to first-touch, above all in a VM) and pushing everything else out.
  uint64_t prev_at = 0, prev_n = 0;
  auto recycle = [&](uint64_t at, uint64_t n) {
    ::sync_file_range(fd, static_cast<off_t>(at), static_cast<off_t>(n), SYNC_FILE_RANGE_WRITE);
    if (prev_n > 0) {
      ::sync_file_range(fd, static_cast<off_t>(prev_at), static_cast<off_t>(prev_n),
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      ::posix_fadvise(fd, static_cast<off_t>(prev_at), static_cast<off_t>(prev_n), POSIX_FADV_DONTNEED);
    }
    prev_at = at, prev_n = n;
  };
  // Returns 0 or an errno; runs on the writer thread.
  auto write_all = [&](const uint8_t* src, uint64_t n, uint64_t at) -> int {
    const uint64_t at0 = at, n0 = n;
    while (n > 0) {
      const ssize_t w = ::pwrite(fd, src, std::min<uint64_t>(n, 1ull << 30), static_cast<off_t>(at));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return w < 0 ? errno : EIO;
      src += w, n -= static_cast<uint64_t>(w), at += static_cast<uint64_t>(w);
    }
    recycle(at0, n0);
    return 0;
  };
  std::string head(8, '\0');
  const uint64_t n = js.size();
  for (int i = 0; i < 8; ++i) head[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
  head += js;
  if (int e = write_all(reinterpret_cast<const uint8_t*>(head.data()), head.size(), 0)) bail("write failed", e);
  const uint64_t data_at = head.size();
  // Two staging buffers: one is written out by a writer thread while the next is filled.
  constexpr uint64_t kStage = 64ull << 20;
  struct Stage {
    std::unique_ptr<uint8_t[]> buf;
    uint64_t cap = 0, used = 0, at = 0;  // holds data bytes [at, at + used)
    std::future<int> pending;
  } st[2];
  int cur = 0;
  auto wait = [&](Stage& s) {  // cleanup on error happens in the catch below
    if (s.pending.valid())
      if (int e = s.pending.get()) fail("{}: write failed: {}", path, std::strerror(e));
  };
  auto flush = [&](Stage& s) {
    s.pending = std::async(std::launch::async, [&write_all, &s, data_at] { return write_all(s.buf.get(), s.used, data_at + s.at); });
  };
  try {
    for (size_t i = 0; i < tensors.size(); ++i) {
      const uint64_t nb = static_cast<uint64_t>(tensors[i].shape.numel()) * dtype_size(tensors[i].dtype);
      if (st[cur].used + nb > st[cur].cap && st[cur].used > 0) {
        wait(st[cur ^ 1]);  // one write at a time, in file order
        flush(st[cur]);
        cur ^= 1;
        st[cur].used = 0;
      }
      Stage& s = st[cur];
      if (s.used == 0) s.at = begins[i];
      if (nb > s.cap) {
        s.cap = std::max(kStage, nb);
        s.buf.reset(new uint8_t[s.cap]);
      }
      tensors[i].fill(s.buf.get() + s.used);
      s.used += nb;
    }
    wait(st[cur ^ 1]);
    if (st[cur].used > 0) flush(st[cur]);
    wait(st[cur]);
  } catch (...) {
    for (Stage& s : st)
      if (s.pending.valid()) s.pending.wait();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail("{}: close failed: {}", path, std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename from {}: {}", path, tmp, std::strerror(e));
  }
}

}  // namespace dsv3
