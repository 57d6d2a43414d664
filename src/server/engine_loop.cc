#include "server/engine_loop.h"

#include "core/log.h"
#include "server/metrics.h"

namespace dsv3::server {

EngineLoop::EngineLoop(Engine& engine, Metrics& metrics, int64_t parallel)
    : engine_(engine), metrics_(metrics), parallel_(parallel) {
  thread_ = std::thread([this] { run(); });
}

EngineLoop::~EngineLoop() { stop(); }

bool EngineLoop::try_reserve(int64_t k) {
  int64_t cur = inflight_.load();
  do {
    if (cur + k > parallel_) return false;
  } while (!inflight_.compare_exchange_weak(cur, cur + k));
  return true;
}

void EngineLoop::release(int64_t k) { inflight_.fetch_sub(k); }

int64_t EngineLoop::submit(std::vector<int32_t> prompt, const GenerateOptions& opt, RequestCallbacks cb) {
  const int64_t id = engine_.submit(std::move(prompt), opt, std::move(cb));
  {
    std::lock_guard<std::mutex> lk(mu_);
    kick_ = true;
  }
  cv_.notify_one();
  return id;
}

void EngineLoop::cancel(int64_t id) {
  engine_.cancel(id);
  {
    std::lock_guard<std::mutex> lk(mu_);
    kick_ = true;
  }
  cv_.notify_one();
}

void EngineLoop::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void EngineLoop::run() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    // Engine::active() takes the engine's own lock; callbacks never take ours, so no cycle.
    if (!kick_ && engine_.active() == 0) {
      cv_.wait(lk);
      continue;
    }
    kick_ = false;
    lk.unlock();
    try {
      engine_.step();
      metrics_.observe_step(engine_.last_batch_size(), engine_.waiting());
    } catch (const std::exception& e) {
      // A step that throws outside the forward (out of memory) must not end the server.
      log_warn("engine step failed: {}", e.what());
    }
    lk.lock();
  }
}

}  // namespace dsv3::server
