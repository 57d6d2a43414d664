// Read-only memory map of a whole file. Weights are used in place from the page cache: never
// copied, so resident memory is what the kernels touch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dsv3 {

class MappedFile {
 public:
  // Throws dsv3::Error naming the file when it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the pages of [p, p+n) from this process's resident set (they stay in the page cache).
  // Streaming passes (conversion) call it after each tensor so RSS stays bounded.
  void release(const void* p, size_t n) const;
  // Bytes of this mapping in this process's resident set (Rss in /proc/self/smaps; 0 where the
  // kernel does not say): what the process has touched, not what the page cache holds.
  size_t resident_bytes() const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string; throws naming the file.
std::string read_text_file(const std::string& path);

// Writes `text` to path.partial, then renames it over `path`; removes the partial on failure, so a
// killed writer never leaves a complete-looking file.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace dsv3
