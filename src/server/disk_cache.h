// The disk tier of the context cache (--cache-dir DIR --cache-disk-gb N): each full 64-token
// block of latent KV the engine registers is written, off the step thread, to
// DIR/<model id>/<prefix hash>.kv with a header (model id, key, shape, MTP validity) and a
// checksum; a prompt whose next block is not in memory reads it back, also after a restart. The
// files are kept under the quota by evicting the least recently used (mtime, refreshed on every
// hit, so the order survives restarts). A corrupt or foreign file is deleted and counts as a miss.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "runtime/prefix_store.h"

namespace dsv3::server {

// Identity of the weights a cache belongs to: config.json and the names and sizes of the
// safetensors files. Another checkpoint gets another folder. `variant` names what else changes
// the stored latents (a BF16 KV cache: "kv:bf16"); empty for the default f32 cache.
uint64_t model_identity(const std::string& model_dir, const std::string& variant = "");

class DiskPrefixStore : public PrefixStore {
 public:
  static constexpr size_t kMaxQueued = 64;  // blocks waiting to be written; more are dropped
  DiskPrefixStore(const std::string& dir, uint64_t model_id, int64_t layers, int64_t dim, uint64_t quota_bytes);
  ~DiskPrefixStore() override;  // writes what is queued first
  void save(uint64_t key, bool mtp_valid, std::vector<float> block) override;
  bool load(uint64_t key, std::span<float> out, bool* mtp_valid) override;
  void flush();  // returns once everything queued is on disk
  uint64_t bytes() const;
  size_t files() const;

 private:
  struct Job {
    uint64_t key;
    bool mtp;
    std::vector<float> data;
  };
  struct Entry {
    uint64_t bytes, tick;
  };
  void run();
  void write(const Job& j);
  void evict_over_quota();  // holds mu_
  void forget(uint64_t key);
  std::string path(uint64_t key) const;

  std::string dir_;
  uint64_t model_;
  int64_t layers_, dim_;
  uint64_t quota_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_;
  std::deque<Job> queue_;
  bool stop_ = false, writing_ = false;
  std::unordered_map<uint64_t, Entry> index_;
  uint64_t total_ = 0, tick_ = 0;
  std::thread writer_;
};

}  // namespace dsv3::server
