// dsv3: DeepSeek-V3 inference, conversion and serving from one binary.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"

namespace dsv3::cli {
std::vector<CommandDef>& commands() {
  static std::vector<CommandDef> c;
  return c;
}
}  // namespace dsv3::cli

int main(int argc, char** argv) {
  using namespace dsv3;
  CLI::App app{"dsv3: DeepSeek-V3 (MLA, DeepSeekMoE, MTP) in C++ - run, convert and serve Hugging Face checkpoints"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "dsv3 0.1.0");
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "More diagnostics on stderr");
  app.add_flag("-q,--quiet", quiet, "Only errors on stderr");
  auto& defs = cli::commands();
  std::sort(defs.begin(), defs.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::map<CLI::App*, cli::Runner> runners;
  for (auto& d : defs) {
    CLI::App* sub = app.add_subcommand(d.name, d.help);
    runners[sub] = d.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  set_log_level(quiet ? LogLevel::kQuiet : verbose ? LogLevel::kDebug : LogLevel::kInfo);
  for (auto& [sub, run] : runners) {
    if (!sub->parsed()) continue;
    try {
      return run();
    } catch (const Error& e) {
      fmt::print(stderr, "error: {}\n", e.what());
      return 1;
    } catch (const std::bad_alloc&) {
      fmt::print(stderr, "error: out of memory\n");
      return 1;
    } catch (const std::exception& e) {
      fmt::print(stderr, "error: {}\n", e.what());
      return 1;
    }
  }
  return 1;
}
