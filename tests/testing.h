// Helpers shared by the test binaries.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace dsv3::testing {

// Runs a shell command and returns its stdout; rc receives the exit status (-1 if it did not
// exit normally, e.g. killed by a signal).
inline std::string run_cmd(const std::string& cmd, int& rc) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    rc = -1;
    return out;
  }
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, k);
  const int st = pclose(p);
  rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

}  // namespace dsv3::testing
