// The OpenAI-compatible HTTP server over one Engine (cpp-httplib): /v1/chat/completions,
// /v1/completions, /v1/models, /health, /metrics, /tokenize, /detokenize and the chat page at /.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace dsv3 {
class Engine;
class Tokenizer;
struct ChatTemplate;
}  // namespace dsv3

namespace dsv3::server {

class Metrics;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;               // 0: any free port (see Server::bind)
  std::string api_key;           // empty: no authentication
  int64_t parallel = 64;         // engine requests waiting or running before 429
  std::string model_name = "dsv3";
  size_t max_body = 32u << 20;   // bytes; larger bodies get 413
  int http_threads = 0;          // 0: parallel + 16
  bool speculative = false;      // MTP speculative decoding by default
  double drain_seconds = 300;    // SIGTERM: longest wait for in-flight requests
};

class Server {
 public:
  // tok/tmpl may be null (token ids only, no chat). The engine must outlive the server.
  Server(Engine& engine, const Tokenizer* tok, const ChatTemplate* tmpl, const ServerOptions& opt);
  ~Server();
  // Binds the listening socket; returns the port. Throws dsv3::Error when it cannot.
  int bind();
  // Serves until shutdown(); returns once the listener has stopped.
  void listen();
  // New generation requests get 503; waits (up to drain_seconds) for in-flight ones to finish
  // and their responses to be written, then stops listen(). Safe from any thread, once.
  void shutdown();
  Metrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv3::server
