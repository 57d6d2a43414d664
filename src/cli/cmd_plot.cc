// dsv3 plot LOG [--out FILE.svg]: loss curves of a `dsv3 train --json` log as an SVG.
#include <filesystem>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "data/loss_plot.h"
#include "io/mapped_file.h"

namespace dsv3::cli {
namespace {

struct PlotOpts {
  std::string log, out, title;
};

int run_plot(const PlotOpts& o) {
  namespace fs = std::filesystem;
  std::string out = o.out;
  if (out.empty()) out = fs::path(o.log).replace_extension(".svg").string();
  std::error_code ec;
  if (fs::equivalent(o.log, out, ec)) fail("{}: the output would overwrite the log; pass --out FILE.svg", out);
  const LossLog log = read_loss_log(o.log);
  const std::string title = o.title.empty() ? "Training loss: " + fs::path(o.log).filename().string() : o.title;
  write_file_atomic(out, render_loss_svg(log, title));
  std::string series;
  for (const auto& s : log.series) series += fmt::format("{}{} ({} points)", series.empty() ? "" : ", ", s.key, s.steps.size());
  log_info("plot: {} -> {}: {}; {} lines used, {} skipped", o.log, out, series, log.used_lines, log.skipped_lines);
  return 0;
}

const bool registered = register_command(
    {"plot", "Draw the loss curves of a `dsv3 train --json` log as an SVG", [](CLI::App& app) {
       auto o = std::make_shared<PlotOpts>();
       app.footer(
           "LOG holds one JSON object per line with \"step\" and the losses in nats: \"main_loss\" (or \"loss\"),\n"
           "\"mtp_loss\", and on evaluation steps \"val_loss\" and \"val_mtp_loss\". Other keys are ignored;\n"
           "lines that are not JSON (a header) are skipped and counted. The SVG has one line per series\n"
           "(validation points marked), axes with ticks, a legend with each series' last value and a title.");
       app.add_option("log", o->log, "JSON-lines training log")->required();
       app.add_option("-o,--out", o->out, "Output SVG (default: LOG with its extension replaced by .svg)");
       app.add_option("--title", o->title, "Title (default: 'Training loss: LOG-NAME')");
       return [o] { return run_plot(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
