// Noticing that an HTTP client hung up while its non-streaming request is still generating.
// cpp-httplib 0.11 (Debian bookworm) gives a handler neither its socket nor a hook for this, so
// the connection's socket is found among the process's descriptors by its address pair
// (unique for a live TCP connection, and open for as long as the handler runs) and polled.
#pragma once
#include <httplib.h>

namespace dsv3::server {

class ClientWatch {
 public:
  explicit ClientWatch(const httplib::Request& req);
  // True once the peer has closed or reset the connection. Never true when the socket was not
  // found (then the request simply runs to its end, as before).
  bool gone() const;
  bool found() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace dsv3::server
