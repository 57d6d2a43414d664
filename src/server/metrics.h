// Prometheus text-format metrics: requests by endpoint and status, prompt/generated tokens,
// prefix-cache hits, queue depth, batch size, time to first token and request latency.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace dsv3::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of metric `name`.
  void render(const std::string& name, const std::string& help, std::string& out) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t n_ = 0;
};

class Metrics {
 public:
  Metrics();
  void on_request(const std::string& endpoint, int status);
  void on_finish(int64_t prompt_tokens, int64_t cached_tokens, int64_t completion_tokens, double seconds);
  void on_first_token(double seconds) { ttft_.observe(seconds); }
  void observe_step(int64_t batch, size_t waiting);
  // running/inflight come from the engine loop at render time.
  std::string render(int64_t inflight, int64_t parallel, size_t running_and_waiting) const;
  int64_t cancelled() const { return cancelled_.load(); }
  void on_cancel() { cancelled_.fetch_add(1); }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::atomic<int64_t> prompt_tokens_{0}, cached_tokens_{0}, completion_tokens_{0}, finished_{0}, cancelled_{0};
  std::atomic<int64_t> steps_{0}, batch_sum_{0}, last_batch_{0}, waiting_{0};
  Histogram ttft_, e2e_, batch_;
};

}  // namespace dsv3::server
