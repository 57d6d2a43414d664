// `dsv3 plot`: the loss curves of a `dsv3 train --json` log as a self-contained SVG.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsv3 {

struct LossSeries {
  std::string key;    // the log field: main_loss, mtp_loss, val_loss, val_mtp_loss
  std::string label;  // legend text
  std::vector<double> steps, values;  // [points]
};

struct LossLog {
  std::string name;  // the run's name in a legend of several logs ("" for one log)
  // In drawing order; a series with no point, or only zeros (mtp_loss without an MTP module), is
  // left out.
  std::vector<LossSeries> series;
  int64_t used_lines = 0;     // JSON objects with a step and at least one loss
  int64_t skipped_lines = 0;  // non-JSON lines (a header), or JSON without a step or any loss
};

// Reads a JSON-lines training log: per line an object with "step" and some of "main_loss" (or
// "loss" when main_loss is absent), "mtp_loss", "val_loss", "val_mtp_loss"; other keys are
// ignored, null or non-finite values are skipped. Throws naming the file when it cannot be read
// or has no usable line.
LossLog read_loss_log(const std::string& path);

// Replaces each training series' values (not validation) by their trailing mean over `window`
// logged points, for noisy small-batch curves; window <= 1 leaves them.
void smooth_train_series(LossLog& log, int window);

// The SVG document: x = step, y = loss in nats, one <polyline> per series (train series as
// lines, validation series as lines with a circle per point), ticks, axis labels, legend, title.
std::string render_loss_svg(const LossLog& log, const std::string& title);
// Several runs in one picture (e.g. FP8 against BF16): each run has its own colour and its
// name in the legend; the series kinds are told apart by dash and markers.
std::string render_loss_svg(const std::vector<LossLog>& logs, const std::string& title);

}  // namespace dsv3
