#include "server/metrics.h"

#include <fmt/format.h>

namespace dsv3::server {

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lk(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++n_;
}

void Histogram::render(const std::string& name, const std::string& help, std::string& out) const {
  std::lock_guard<std::mutex> lk(mu_);
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, n_, name, sum_, name, n_);
}

Metrics::Metrics()
    : ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      e2e_({0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}),
      batch_({1, 2, 4, 8, 16, 32, 64, 128}) {}

void Metrics::on_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lk(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::on_finish(int64_t prompt_tokens, int64_t cached_tokens, int64_t completion_tokens, double seconds) {
  prompt_tokens_ += prompt_tokens;
  cached_tokens_ += cached_tokens;
  completion_tokens_ += completion_tokens;
  finished_ += 1;
  e2e_.observe(seconds);
}

void Metrics::observe_step(int64_t batch, size_t waiting) {
  last_batch_ = batch;
  waiting_ = static_cast<int64_t>(waiting);
  if (batch <= 0) return;
  steps_ += 1;
  batch_sum_ += batch;
  batch_.observe(static_cast<double>(batch));
}

std::string Metrics::render(int64_t inflight, int64_t parallel, size_t running_and_waiting) const {
  std::string o;
  auto gauge = [&](const char* name, const char* help, double v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  o += "# HELP dsv3_requests_total HTTP requests by endpoint and status\n# TYPE dsv3_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const auto& [k, v] : requests_)
      o += fmt::format("dsv3_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, v);
  }
  counter("dsv3_prompt_tokens_total", "Prompt tokens of finished generations", static_cast<double>(prompt_tokens_));
  counter("dsv3_prompt_cache_hit_tokens_total", "Prompt tokens served from the prefix cache",
          static_cast<double>(cached_tokens_));
  counter("dsv3_generation_tokens_total", "Generated tokens", static_cast<double>(completion_tokens_));
  counter("dsv3_generations_finished_total", "Engine requests finished", static_cast<double>(finished_));
  counter("dsv3_generations_cancelled_total", "Engine requests cancelled (client gone)", static_cast<double>(cancelled_));
  const double pt = static_cast<double>(prompt_tokens_.load());
  gauge("dsv3_prompt_cache_hit_rate", "Cached / prompt tokens so far", pt > 0 ? static_cast<double>(cached_tokens_) / pt : 0);
  gauge("dsv3_requests_inflight", "Engine requests admitted and not finished", static_cast<double>(inflight));
  gauge("dsv3_requests_parallel_limit", "Most engine requests waiting or running (--parallel)", static_cast<double>(parallel));
  gauge("dsv3_engine_active", "Engine requests running or waiting", static_cast<double>(running_and_waiting));
  gauge("dsv3_queue_depth", "Engine requests waiting for a batch slot", static_cast<double>(waiting_));
  gauge("dsv3_batch_size", "Sequences in the last engine step", static_cast<double>(last_batch_));
  const double steps = static_cast<double>(steps_.load());
  gauge("dsv3_batch_size_mean", "Mean sequences per engine step", steps > 0 ? static_cast<double>(batch_sum_) / steps : 0);
  counter("dsv3_engine_steps_total", "Engine steps that ran a forward", steps);
  batch_.render("dsv3_batch_size_hist", "Sequences per engine step", o);
  ttft_.render("dsv3_time_to_first_token_seconds", "Time from request to first generated token", o);
  e2e_.render("dsv3_request_latency_seconds", "Time from request to finish", o);
  return o;
}

}  // namespace dsv3::server
