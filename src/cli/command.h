// Subcommand registry: each cmd_*.cc adds one subcommand at static-initialisation time, so a new
// command never edits main.cc. `setup` declares the options on the CLI11 subcommand and returns
// the function that runs it (returning the process exit code).
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace dsv3::cli {

using Runner = std::function<int()>;
struct CommandDef {
  std::string name;
  std::string help;
  std::function<Runner(CLI::App&)> setup;
};

std::vector<CommandDef>& commands();
inline bool register_command(CommandDef def) {
  commands().push_back(std::move(def));
  return true;
}

}  // namespace dsv3::cli
