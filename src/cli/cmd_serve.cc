// dsv3 serve: the OpenAI-compatible HTTP server (src/server) over one model.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "chat/chat_template.h"
#include "cli/command.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/log.h"
#include "runtime/engine.h"
#include "server/disk_cache.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::cli {
namespace {

struct ServeOpts {
  ModelArgs model;
  server::ServerOptions srv;
  int64_t max_batch = 8, prefill_chunk = 256, draft_max_batch = EngineOptions{}.draft_max_batch;
  std::string speculative, model_name;
  bool no_prefix_cache = false;
  std::string cache_dir;
  double cache_disk_gb = 10;
};

int run_serve(ServeOpts& o) {
  if (!o.speculative.empty() && o.speculative != "mtp") fail("--speculative: only 'mtp' is supported");
  if (o.max_batch <= 0) fail("--max-batch must be positive");
  if (o.draft_max_batch < 0) fail("--draft-max-batch must be >= 0 (0: no limit), got {}", o.draft_max_batch);
  if (o.srv.parallel <= 0) fail("--parallel must be positive");
  o.srv.speculative = o.speculative == "mtp";
  o.srv.model_name = o.model_name.empty() ? std::filesystem::path(o.model.dir).lexically_normal().filename().string()
                                          : o.model_name;
  if (o.srv.model_name.empty()) o.srv.model_name = "dsv3";

  // SIGTERM/SIGINT (and SIGUSR2, which mpirun forwards to every rank, unlike SIGTERM) are taken
  // by one thread with sigwait; every thread started from here on (OpenMP, HTTP, engine)
  // inherits the blocked mask. Ranks > 0 under mpirun keep them blocked: rank 0 ends them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGUSR1);
  sigaddset(&sigs, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto model = load_model(o.model, o.max_batch);
  if (o.srv.speculative && !model->has_mtp()) fail("--speculative mtp: {} has no MTP module", o.model.dir);
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<ChatTemplate> tmpl;
  if (Tokenizer::available(o.model.dir)) {
    tok = Tokenizer::load(o.model.dir);
    tok->set_vocab_limit(static_cast<int32_t>(model->config().vocab_size));
    if (ChatTemplate::available(o.model.dir)) tmpl = std::make_unique<ChatTemplate>(ChatTemplate::load(o.model.dir));
  } else {
    log_warn("{}: no tokenizer.json; serving token ids only (tokens shown as token_id:N)", o.model.dir);
  }
  if (tok && !tmpl) log_warn("{}: no chat template; /v1/chat/completions is unavailable", o.model.dir);

  EngineOptions eo;
  eo.max_batch = o.max_batch;
  eo.prefill_chunk = o.prefill_chunk;
  eo.draft_max_batch = o.draft_max_batch;
  eo.prefix_cache = !o.no_prefix_cache;
  if (!o.cache_dir.empty()) {
    if (o.no_prefix_cache) fail("--cache-dir needs the context cache: drop --no-prefix-cache");
    if (!(o.cache_disk_gb > 0)) fail("--cache-disk-gb must be positive (got {})", o.cache_disk_gb);
    // A BF16 cache's blocks hold rounded latents: they get their own folder, apart from f32's.
    const uint64_t cache_id =
        server::model_identity(o.model.dir, model->cache().dtype() == DType::BF16 ? "kv:bf16" : "");
    eo.store = std::make_shared<server::DiskPrefixStore>(o.cache_dir, cache_id,
                                                         model->cache().layers(), model->cache().dim(),
                                                         static_cast<uint64_t>(o.cache_disk_gb * 1e9));
  }
  Engine engine(*model, eo);
  server::Server srv(engine, tok.get(), tmpl.get(), o.srv);
  const int port = srv.bind();
  // First stdout line: where to connect (tests start with --port 0 and read it).
  fmt::print("dsv3 serve: listening on http://{}:{}\n", o.srv.host, port);
  fflush(stdout);
  log_info("model {} (context {}, batch {}, {} parallel){}", o.srv.model_name, model->ctx(), o.max_batch,
           o.srv.parallel, o.srv.api_key.empty() ? "" : ", API key required");

  static std::atomic<bool> exiting{false};  // static: the detached watcher below may outlive this frame
  std::thread sig_thread([&] {
    int sig = 0;
    while (sigwait(&sigs, &sig) == 0) {
      if (exiting) return;
      if (sig == SIGUSR1) continue;
      log_info("signal {}: draining in-flight requests (a second signal exits at once)", sig);
      std::thread([sigs] {
        int again = 0;
        while (sigwait(&sigs, &again) == 0)
          if (again != SIGUSR1 && !exiting) _exit(130);
      }).detach();
      srv.shutdown();
      return;
    }
  });
  srv.listen();
  exiting = true;
  pthread_kill(sig_thread.native_handle(), SIGUSR1);
  sig_thread.join();
  log_info("dsv3 serve: stopped");
  return 0;
}

const bool reg_serve = register_command(
    {"serve", "OpenAI-compatible HTTP server (chat, completions, tokenize, metrics, chat page at /)",
     [](CLI::App& app) {
       auto o = std::make_shared<ServeOpts>();
       add_model_args(app, o->model);
       app.add_option("--host", o->srv.host, "Address to listen on")->capture_default_str();
       app.add_option("--port", o->srv.port, "Port (0: any free port, printed on stdout)")->capture_default_str();
       app.add_option("--api-key", o->srv.api_key, "Require 'Authorization: Bearer KEY' on /v1/*, /tokenize, /detokenize");
       app.add_option("--max-batch", o->max_batch, "Sequences decoding together")->capture_default_str();
       app.add_option("--parallel", o->srv.parallel, "Requests waiting or running before answering 429")
           ->capture_default_str();
       app.add_option("--prefill-chunk", o->prefill_chunk, "Prompt tokens per sequence per step")->capture_default_str();
       app.add_option("--speculative", o->speculative, "'mtp': MTP speculative decoding for every request");
       app.add_option("--draft-max-batch", o->draft_max_batch,
                      "MTP drafts only while at most N sequences decode together; above, they decode plainly "
                      "(same output; on CPU a draft stops paying once a step holds several sequences). 0: always")
           ->capture_default_str();
       app.add_option("--served-model-name", o->model_name, "Model id in responses (default: the directory name)");
       app.add_flag("--no-prefix-cache", o->no_prefix_cache, "Disable context caching");
       app.add_option("--cache-dir", o->cache_dir, "Also keep context-cache blocks on disk here (kept across restarts)");
       app.add_option("--cache-disk-gb", o->cache_disk_gb, "Disk quota of --cache-dir in GB (least recently used go first)")
           ->capture_default_str();
       app.add_option("--drain-timeout", o->srv.drain_seconds, "Seconds SIGTERM waits for in-flight requests")
           ->capture_default_str();
       return [o] { return run_serve(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
