#include "server/server.h"

#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "chat/chat_template.h"
#include "core/error.h"
#include "core/log.h"
#include "runtime/engine.h"
#include "server/api_error.h"
#include "server/client_watch.h"
#include "server/engine_loop.h"
#include "server/job.h"
#include "server/metrics.h"
#include "server/request.h"
#include "server/response.h"
#include "server/stream.h"
#include "server/token_mask.h"
#include "server/web_page.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::server {

using ojson = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

struct Server::Impl {
  Engine& engine;
  const Tokenizer* tok;
  const ChatTemplate* tmpl;
  ServerOptions opt;
  ModelInfo info;
  Metrics metrics;
  std::unique_ptr<EngineLoop> loop;
  httplib::Server http;
  std::atomic<bool> draining{false};
  std::atomic<int64_t> open_responses{0};  // generation responses not yet fully written
  std::atomic<uint64_t> next_id{1};
  std::string id_prefix;
  int64_t started = 0;
  socket_t listen_fd = INVALID_SOCKET;

  Impl(Engine& e, const Tokenizer* t, const ChatTemplate* c, const ServerOptions& o)
      : engine(e), tok(t), tmpl(c), opt(o) {
    const ModelConfig& cfg = e.model().config();
    info.vocab_size = cfg.vocab_size;
    info.ctx = e.model().ctx();
    info.bos_id = static_cast<int32_t>(cfg.bos_token_id);
    info.has_mtp = e.model().has_mtp();
    info.speculative = o.speculative;
    info.tok = t;
    info.tmpl = c;
    if (t) info.vocab = std::make_shared<VocabIndex>(*t);
    loop = std::make_unique<EngineLoop>(e, metrics, o.parallel);
    std::random_device rd;
    id_prefix = fmt::format("{:08x}", rd());
    started = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    routes();
  }

  static void send_json(httplib::Response& res, int status, const ojson& j) {
    res.status = status;
    res.set_content(to_text(j), "application/json");
  }
  static void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    res.set_content(to_text(error_body(e)), "application/json");
  }

  ResponseCtx make_ctx(const char* prefix, const CommonRequest& c) {
    ResponseCtx ctx;
    ctx.id = fmt::format("{}-{}{:x}", prefix, id_prefix, next_id.fetch_add(1));
    ctx.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    ctx.model = opt.model_name;
    ctx.tok = tok;
    ctx.as_ids = c.tokens_as_ids;
    ctx.return_token_ids = c.return_token_ids;
    return ctx;
  }

  // Every handler runs inside this: whatever a client sends ends as a JSON error, never a crash.
  template <typename F>
  void guarded(const httplib::Request& req, httplib::Response& res, F&& f) {
    try {
      f(req, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const Error& e) {
      send_error(res, ApiError(400, e.what(), "invalid_request_error"));
    } catch (const std::bad_alloc&) {
      send_error(res, ApiError(503, "out of memory", "server_error"));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, fmt::format("internal error: {}", e.what()), "server_error"));
    } catch (...) {
      send_error(res, ApiError(500, "internal error", "server_error"));
    }
  }

  // Counts a generation response as open until its last byte is written (or it is torn down).
  struct OpenGuard {
    std::atomic<int64_t>& n;
    explicit OpenGuard(std::atomic<int64_t>& c) : n(c) { ++n; }
    ~OpenGuard() { --n; }
  };

  void generate(const httplib::Request& req, httplib::Response& res, bool chat) {
    auto guard = std::make_shared<OpenGuard>(open_responses);
    if (draining) throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
    const ojson j = parse_body(req.body);
    std::shared_ptr<CompletionRequest> cr;
    std::shared_ptr<ChatRequest> ch;
    const CommonRequest* c;
    std::vector<std::vector<int32_t>> prompts;
    if (chat) {
      ch = std::make_shared<ChatRequest>(parse_chat(j, info));
      c = &ch->c;
      prompts.push_back(ch->prompt);
    } else {
      cr = std::make_shared<CompletionRequest>(parse_completion(j, info));
      c = &cr->c;
      prompts = cr->prompts;
    }
    const int64_t total = static_cast<int64_t>(prompts.size()) * c->n;
    if (!loop->try_reserve(total))
      throw ApiError(429,
                     fmt::format("the server is busy: {} requests are waiting or running (limit {}); retry later",
                                 loop->inflight(), loop->parallel()),
                     "rate_limit_error", "", "rate_limit_exceeded");
    auto st = start_generation(*loop, metrics, tok, prompts, c->n, c->gen, c->stop);
    ResponseCtx ctx = make_ctx(chat ? "chatcmpl" : "cmpl", *c);
    if (c->stream) {
      StreamOptions so;
      so.chat = chat;
      so.chat_logprobs = chat && ch->logprobs;
      so.logprobs = chat ? (ch->logprobs ? ch->top_logprobs : -1) : cr->logprobs;
      so.echo = !chat && cr->echo;
      so.include_usage = c->include_usage;
      so.tools = chat && ch->tools.active();
      so.think_open = chat && ch->think_open;
      if (chat) so.assistant_prefix = ch->assistant_prefix;
      auto sse = std::make_shared<SseStream>(ctx, st, *loop, metrics, so);
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
      res.set_chunked_content_provider(
          "text/event-stream",
          [sse, guard](size_t, httplib::DataSink& sink) {
            try {
              return sse->pump(sink);
            } catch (...) {
              return false;  // httplib closes the connection; the releaser cancels
            }
          },
          [sse, guard](bool) { sse->close(); });
      return;
    }
    // While it generates, a client that hung up (a timeout, a closed tab) gives its slot back at
    // once instead of after max_tokens, as a streaming one does.
    const ClientWatch watch(req);
    std::unique_lock<std::mutex> lk(st->mu);
    while (!st->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return st->all_finished(); }))
      if (watch.gone()) {
        lk.unlock();
        cancel_generation(*loop, metrics, *st);
        return;  // nobody is left to answer
      }
    for (const auto& choice : st->choices)
      if (choice->info.reason == "error")
        throw ApiError(500, "generation failed: " + choice->info.error, "server_error");
    send_json(res, 200, chat ? chat_body(ctx, *ch, *st) : completion_body(ctx, *cr, *st));
  }

  void routes() {
    auto post = [this](const char* path, void (Impl::*fn)(const httplib::Request&, httplib::Response&)) {
      http.Post(path, [this, fn](const httplib::Request& req, httplib::Response& res) {
        guarded(req, res, [this, fn](const httplib::Request& q, httplib::Response& r) { (this->*fn)(q, r); });
      });
    };
    post("/v1/chat/completions", &Impl::chat);
    post("/v1/completions", &Impl::completions);
    post("/tokenize", &Impl::tokenize);
    post("/detokenize", &Impl::detokenize);
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      ojson m;
      m["id"] = opt.model_name;
      m["object"] = "model";
      m["created"] = started;
      m["owned_by"] = "dsv3";
      m["max_model_len"] = info.ctx;
      send_json(res, 200, {{"object", "list"}, {"data", ojson::array({m})}});
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, draining ? 503 : 200, {{"status", draining ? "draining" : "ok"}});
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(loop->inflight(), loop->parallel(), engine.active()),
                      "text/plain; version=0.0.4");
    });
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(web_page(), "text/html; charset=utf-8");
    });
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      const bool protected_path = req.path.rfind("/v1/", 0) == 0 || req.path == "/tokenize" || req.path == "/detokenize";
      if (protected_path && !opt.api_key.empty()) {
        const std::string auth = req.get_header_value("Authorization");
        const std::string key = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : req.get_header_value("x-api-key");
        if (key != opt.api_key) {
          send_error(res, ApiError(401, key.empty() ? "You didn't provide an API key (Authorization: Bearer KEY)"
                                                    : "Incorrect API key provided",
                                   "invalid_request_error", "", "invalid_api_key"));
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // Statuses httplib makes itself (404, 405, 413, 400 on a broken request line) get a JSON body too.
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      const std::string msg = res.status == 404   ? fmt::format("no route for {} {}", req.method, req.path)
                              : res.status == 413 ? std::string("the request body is too large")
                                                  : fmt::format("HTTP error {}", res.status);
      res.set_content(to_text(error_body(res.status, msg, "invalid_request_error")), "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      res.status = 500;
      res.set_content(to_text(error_body(500, "internal error", "server_error")), "application/json");
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      static const char* known[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health",
                                    "/metrics", "/tokenize", "/detokenize", "/"};
      std::string ep = "other";  // bounded label set whatever paths clients try
      for (const char* k : known)
        if (req.path == k) ep = k;
      metrics.on_request(ep, res.status);
    });
    // cpp-httplib 0.11 listens with a backlog of 5: a burst of connections (256 clients at once)
    // overflows it and, with SYN cookies, clients see their connections reset instead of a 429.
    // Its socket hook tells us the listening socket, whose backlog bind() then raises.
    http.set_socket_options([this](socket_t sock) {
      httplib::default_socket_options(sock);
      listen_fd = sock;
    });
    http.set_payload_max_length(opt.max_body);
    const int threads = opt.http_threads > 0 ? opt.http_threads : static_cast<int>(opt.parallel) + 16;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  }

  void chat(const httplib::Request& req, httplib::Response& res) { generate(req, res, true); }
  void completions(const httplib::Request& req, httplib::Response& res) { generate(req, res, false); }

  void tokenize(const httplib::Request& req, httplib::Response& res) {
    const TokenizeRequest r = parse_tokenize(parse_body(req.body), info);
    send_json(res, 200, {{"tokens", r.tokens}, {"count", r.tokens.size()}, {"max_model_len", info.ctx}});
  }

  void detokenize(const httplib::Request& req, httplib::Response& res) {
    const std::vector<int32_t> ids = parse_detokenize(parse_body(req.body), info);
    send_json(res, 200, {{"prompt", tok->decode(ids, false)}});
  }
};

Server::Server(Engine& engine, const Tokenizer* tok, const ChatTemplate* tmpl, const ServerOptions& opt)
    : impl_(std::make_unique<Impl>(engine, tok, tmpl, opt)) {
  // A client that disconnects makes send() raise SIGPIPE; the write error is handled instead.
  signal(SIGPIPE, SIG_IGN);
}

Server::~Server() {
  impl_->http.stop();
  impl_->loop->stop();
}

int Server::bind() {
  const ServerOptions& o = impl_->opt;
  int port = o.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
    if (port < 0) fail("cannot listen on {} (any port)", o.host);
  } else if (!impl_->http.bind_to_port(o.host, port)) {
    fail("cannot listen on {}:{} (in use, or not an address of this machine)", o.host, port);
  }
  if (impl_->listen_fd != INVALID_SOCKET) ::listen(impl_->listen_fd, SOMAXCONN);  // see routes()
  return port;
}

void Server::listen() { impl_->http.listen_after_bind(); }

void Server::shutdown() {
  Impl& s = *impl_;
  s.draining = true;
  const auto deadline = Clock::now() + std::chrono::duration<double>(s.opt.drain_seconds);
  while ((s.loop->inflight() > 0 || s.open_responses > 0) && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (s.loop->inflight() > 0) log_warn("shutdown: {} requests still running after the drain time", s.loop->inflight());
  s.http.stop();
}

Metrics& Server::metrics() { return impl_->metrics; }

}  // namespace dsv3::server
