// dsv3: DeepSeek-V3 inference, conversion and serving from one binary.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/log.h"
#include "dist/comm.h"

namespace dsv3::cli {
std::vector<CommandDef>& commands() {
  static std::vector<CommandDef> c;
  return c;
}
}  // namespace dsv3::cli

namespace {

// Runs one subcommand. Under mpirun (dsv3/dist) only rank 0 prints results and logs; the others
// print errors only, and an error on any rank ends the whole job with a message naming it.
int run_command(const dsv3::cli::Runner& run) {
  using namespace dsv3;
  auto report = [](const char* what) {
    if (dist::size() > 1) dist::abort_all(what);
    fmt::print(stderr, "error: {}\n", what);
    return 1;
  };
  try {
    return run();
  } catch (const cli::WorkerDone&) {
    return 0;  // a rank > 0 served its experts until rank 0 finished
  } catch (const Error& e) {
    return report(e.what());
  } catch (const std::bad_alloc&) {
    return report("out of memory");
  } catch (const std::exception& e) {
    return report(e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dsv3;
  dist::init(&argc, &argv);
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
    const int rc = dist::is_root() ? app.exit(e) : (e.get_exit_code() != 0);
    dist::finalize();
    return rc;
  }
  set_log_level(quiet ? LogLevel::kQuiet : verbose ? LogLevel::kDebug : LogLevel::kInfo);
  if (!dist::is_root()) {
    set_log_level(LogLevel::kQuiet);
    if (!std::freopen("/dev/null", "w", stdout)) return 1;
  }
  for (auto& [sub, run] : runners) {
    if (!sub->parsed()) continue;
    // Under mpirun: training is data parallel, the model runners expert parallel; the others
    // would repeat their work (and their writes) on every rank.
    static const std::vector<std::string> kParallel = {"train", "serve", "generate", "chat", "score", "bench"};
    if (dist::size() > 1 && std::find(kParallel.begin(), kParallel.end(), sub->get_name()) == kParallel.end()) {
      const int rc = run_command([&]() -> int {
        fail("'{}' does not run under mpirun (only {} do)", sub->get_name(), fmt::join(kParallel, ", "));
      });
      dist::finalize();
      return rc;
    }
    const int rc = run_command(run);
    dist::finalize();
    return rc;
  }
  dist::finalize();
  return 1;
}
