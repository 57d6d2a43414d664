#include "server/disk_cache.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "runtime/kv_cache.h"

namespace dsv3::server {

namespace fs = std::filesystem;

namespace {

struct Header {
  char magic[8];
  uint64_t model, key;
  uint32_t layers, dim, block, mtp;
  uint64_t checksum;  // of the data
};
constexpr char kMagic[8] = {'D', 'S', 'V', '3', 'K', 'V', '1', 0};

uint64_t checksum(const void* p, size_t n) {  // 64-bit words, multiply-xorshift: ~GB/s
  const auto* b = static_cast<const unsigned char*>(p);
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, b + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 29;
  }
  for (; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace

uint64_t model_identity(const std::string& model_dir, const std::string& variant) {
  std::ifstream cfg(fs::path(model_dir) / "config.json", std::ios::binary);
  std::stringstream text;
  text << cfg.rdbuf();
  std::vector<std::string> shards;
  for (const auto& e : fs::directory_iterator(model_dir))
    if (e.path().extension() == ".safetensors") shards.push_back(fmt::format("{}:{}", e.path().filename().string(), e.file_size()));
  std::sort(shards.begin(), shards.end());
  std::string all = text.str();
  for (const auto& s : shards) all += "\n" + s;
  if (!variant.empty()) all += "\n" + variant;
  return checksum(all.data(), all.size());
}

DiskPrefixStore::DiskPrefixStore(const std::string& dir, uint64_t model_id, int64_t layers, int64_t dim,
                                 uint64_t quota_bytes)
    : dir_((fs::path(dir) / fmt::format("{:016x}", model_id)).string()), model_(model_id), layers_(layers), dim_(dim),
      quota_(quota_bytes) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail("--cache-dir {}: cannot create it: {}", dir_, ec.message());
  // Existing files, oldest use first: the LRU order from before the restart.
  std::vector<std::pair<fs::file_time_type, uint64_t>> found;
  for (const auto& e : fs::directory_iterator(dir_)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".kv" || name.size() != 19) {
      if (name.find(".tmp") != std::string::npos) fs::remove(e.path(), ec);  // an interrupted write
      continue;
    }
    if (name.find_first_not_of("0123456789abcdef") < 16) continue;  // not one of ours
    const uint64_t key = std::stoull(name.substr(0, 16), nullptr, 16);
    found.push_back({e.last_write_time(), key});
    index_[key] = Entry{e.file_size(), 0};
    total_ += e.file_size();
  }
  std::sort(found.begin(), found.end());
  for (const auto& f : found) index_[f.second].tick = ++tick_;
  {
    std::lock_guard<std::mutex> lk(mu_);
    evict_over_quota();
  }
  writer_ = std::thread([this] { run(); });
}

DiskPrefixStore::~DiskPrefixStore() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

std::string DiskPrefixStore::path(uint64_t key) const { return fmt::format("{}/{:016x}.kv", dir_, key); }

void DiskPrefixStore::save(uint64_t key, bool mtp_valid, std::vector<float> block) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = index_.find(key);
  if (it != index_.end() || queue_.size() >= kMaxQueued || stop_) return;
  queue_.push_back(Job{key, mtp_valid, std::move(block)});
  cv_.notify_one();
}

void DiskPrefixStore::run() {
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stop_ and drained
    Job j = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lk.unlock();
    write(j);
    lk.lock();
    writing_ = false;
    idle_.notify_all();
  }
  idle_.notify_all();
}

void DiskPrefixStore::write(const Job& j) {
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.model = model_;
  h.key = j.key;
  h.layers = static_cast<uint32_t>(layers_);
  h.dim = static_cast<uint32_t>(dim_);
  h.block = static_cast<uint32_t>(KVCache::kBlockSize);
  h.mtp = j.mtp;
  h.checksum = checksum(j.data.data(), j.data.size() * sizeof(float));
  // Written under a temporary name and renamed: a crash never leaves a half file under a key.
  const std::string final_path = path(j.key), tmp = final_path + fmt::format(".tmp{}", getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  bool ok = f && std::fwrite(&h, sizeof h, 1, f) == 1 &&
            std::fwrite(j.data.data(), sizeof(float), j.data.size(), f) == j.data.size();
  ok = f && std::fclose(f) == 0 && ok;
  std::error_code ec;
  if (!ok || std::rename(tmp.c_str(), final_path.c_str()) != 0) {
    fs::remove(tmp, ec);
    log_warn("context cache: cannot write {} (disk full?); block not cached", final_path);
    return;
  }
  const uint64_t size = sizeof h + j.data.size() * sizeof(float);
  std::lock_guard<std::mutex> lk(mu_);
  index_[j.key] = Entry{size, ++tick_};
  total_ += size;
  evict_over_quota();
}

void DiskPrefixStore::evict_over_quota() {
  while (total_ > quota_ && !index_.empty()) {
    auto lru = std::min_element(index_.begin(), index_.end(),
                                [](const auto& a, const auto& b) { return a.second.tick < b.second.tick; });
    std::error_code ec;
    fs::remove(path(lru->first), ec);
    total_ -= lru->second.bytes;
    index_.erase(lru);
  }
}

void DiskPrefixStore::forget(uint64_t key) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return;
  total_ -= it->second.bytes;
  index_.erase(it);
  std::error_code ec;
  fs::remove(path(key), ec);
}

bool DiskPrefixStore::load(uint64_t key, std::span<float> out, bool* mtp_valid) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!index_.count(key)) return false;
  }
  const std::string p = path(key);
  FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) {
    forget(key);
    return false;
  }
  Header h{};
  const bool ok = std::fread(&h, sizeof h, 1, f) == 1 && std::memcmp(h.magic, kMagic, sizeof kMagic) == 0 &&
                  h.model == model_ && h.key == key && h.layers == layers_ && h.dim == dim_ &&
                  h.block == KVCache::kBlockSize &&
                  static_cast<size_t>(layers_ * KVCache::kBlockSize * dim_) == out.size() &&
                  std::fread(out.data(), sizeof(float), out.size(), f) == out.size() && std::fgetc(f) == EOF &&
                  checksum(out.data(), out.size_bytes()) == h.checksum;
  std::fclose(f);
  if (!ok) {
    log_warn("context cache: {} is corrupt or from another model; deleted", p);
    forget(key);
    return false;
  }
  *mtp_valid = h.mtp != 0;
  std::lock_guard<std::mutex> lk(mu_);
  auto it = index_.find(key);
  if (it != index_.end()) it->second.tick = ++tick_;
  utimensat(AT_FDCWD, p.c_str(), nullptr, 0);  // the LRU order after a restart
  return true;
}

void DiskPrefixStore::flush() {
  std::unique_lock<std::mutex> lk(mu_);
  idle_.wait(lk, [&] { return queue_.empty() && !writing_; });
}

uint64_t DiskPrefixStore::bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return total_;
}

size_t DiskPrefixStore::files() const {
  std::lock_guard<std::mutex> lk(mu_);
  return index_.size();
}

}  // namespace dsv3::server
