// dsv3 plot LOG [LOG...] [--out FILE.svg]: loss curves of `dsv3 train --json` logs as one SVG.
#include <algorithm>
#include <filesystem>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "data/loss_plot.h"
#include "io/mapped_file.h"

namespace dsv3::cli {
namespace {

struct PlotOpts {
  std::vector<std::string> logs, labels, series;
  std::string out, title;
  int smooth = 1;
};

int run_plot(const PlotOpts& o) {
  namespace fs = std::filesystem;
  std::string out = o.out;
  if (out.empty()) out = fs::path(o.logs[0]).replace_extension(".svg").string();
  if (!o.labels.empty() && o.labels.size() != o.logs.size())
    fail("--labels: {} labels for {} logs; give one per log", o.labels.size(), o.logs.size());
  for (const std::string& k : o.series)
    if (k != "main_loss" && k != "mtp_loss" && k != "val_loss" && k != "val_mtp_loss")
      fail("--series {}: expected main_loss, mtp_loss, val_loss or val_mtp_loss", k);
  std::vector<LossLog> logs;
  for (size_t i = 0; i < o.logs.size(); ++i) {
    std::error_code ec;
    if (fs::equivalent(o.logs[i], out, ec)) fail("{}: the output would overwrite a log; pass --out FILE.svg", out);
    LossLog log = read_loss_log(o.logs[i]);
    if (!o.series.empty())
      std::erase_if(log.series, [&](const LossSeries& s) { return std::find(o.series.begin(), o.series.end(), s.key) == o.series.end(); });
    if (log.series.empty()) fail("{}: none of the --series is in this log", o.logs[i]);
    smooth_train_series(log, o.smooth);
    log.name = o.labels.empty() ? fs::path(o.logs[i]).stem().string() : o.labels[i];
    std::string series;
    for (const auto& s : log.series) series += fmt::format("{}{} ({} points)", series.empty() ? "" : ", ", s.key, s.steps.size());
    log_info("plot: {}: {}; {} lines used, {} skipped", o.logs[i], series, log.used_lines, log.skipped_lines);
    logs.push_back(std::move(log));
  }
  std::string title = o.title;
  if (title.empty()) {
    title = "Training loss:";
    for (const auto& l : o.logs) title += " " + fs::path(l).filename().string();
  }
  write_file_atomic(out, render_loss_svg(logs, title));
  log_info("plot: wrote {}", out);
  return 0;
}

const bool registered = register_command(
    {"plot", "Draw the loss curves of `dsv3 train --json` logs as one SVG", [](CLI::App& app) {
       auto o = std::make_shared<PlotOpts>();
       app.footer(
           "LOG holds one JSON object per line with \"step\" and the losses in nats: \"main_loss\" (or \"loss\"),\n"
           "\"mtp_loss\", and on evaluation steps \"val_loss\" and \"val_mtp_loss\". Other keys are ignored;\n"
           "lines that are not JSON (a header) are skipped and counted. The SVG has one line per series\n"
           "(validation points marked), axes with ticks, a legend with each series' last value and a title.\n"
           "Several logs share one picture, one colour per run (e.g. `dsv3 plot fp8.jsonl bf16.jsonl\n"
           "--series main_loss,val_loss --out gap.svg`).");
       app.add_option("logs", o->logs, "JSON-lines training logs (one run each)")->required();
       app.add_option("-o,--out", o->out, "Output SVG (default: the first LOG with its extension replaced by .svg)");
       app.add_option("--labels", o->labels, "Run names in the legend, one per log (default: the file names)")->delimiter(',');
       app.add_option("--smooth", o->smooth, "Draw each training curve as its trailing mean over N steps (validation unchanged)")
           ->check(CLI::Range(1, 100000))
           ->capture_default_str();
       app.add_option("--series", o->series, "Only these series: main_loss, mtp_loss, val_loss, val_mtp_loss")->delimiter(',');
       app.add_option("--title", o->title, "Title (default: 'Training loss: LOG-NAME')");
       return [o] { return run_plot(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
