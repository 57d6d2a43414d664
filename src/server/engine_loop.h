// Runs Engine::step() on one dedicated thread while anything is active and sleeps on a condition
// variable otherwise. HTTP handler threads submit and cancel through it; it also bounds how many
// requests may be waiting or running at once (--parallel), so a full server answers 429.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/engine.h"

namespace dsv3::server {

class Metrics;

class EngineLoop {
 public:
  EngineLoop(Engine& engine, Metrics& metrics, int64_t parallel);
  ~EngineLoop();
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  // Reserves room for k engine requests; false when that would exceed --parallel.
  bool try_reserve(int64_t k);
  void release(int64_t k);
  int64_t inflight() const { return inflight_.load(); }
  int64_t parallel() const { return parallel_; }

  // Engine::submit (throws dsv3::Error on a bad request) and wakes the loop.
  int64_t submit(std::vector<int32_t> prompt, const GenerateOptions& opt, RequestCallbacks cb);
  void cancel(int64_t id);
  // Stops the thread after the current step (requests still queued are not finished).
  void stop();
  Engine& engine() { return engine_; }

 private:
  void run();

  Engine& engine_;
  Metrics& metrics_;
  const int64_t parallel_;
  std::atomic<int64_t> inflight_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool kick_ = false, stop_ = false;
  std::thread thread_;
};

}  // namespace dsv3::server
