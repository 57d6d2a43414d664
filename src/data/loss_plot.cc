// The SVG is written by hand: a fixed-size canvas, linear axes with "nice" ticks (1, 2, 5 x 10^k),
// one polyline per series in pixel coordinates.
#include "data/loss_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3 {

namespace {

struct SeriesDef {
  const char* key;
  const char* fallback;  // used when key is absent
  const char* label;
  const char* color;
  bool validation;
  const char* dash;  // stroke-dasharray when runs, not kinds, own the colours
};
constexpr SeriesDef kSeries[] = {
    {"main_loss", "loss", "train loss", "#1f77b4", false, ""},
    {"mtp_loss", nullptr, "train MTP loss", "#ff7f0e", false, "6 3"},
    {"val_loss", nullptr, "val loss", "#2ca02c", true, ""},
    {"val_mtp_loss", nullptr, "val MTP loss", "#d62728", true, "6 3"},
};

const SeriesDef& def_of(const std::string& key) {
  for (const auto& d : kSeries)
    if (key == d.key) return d;
  fail("plot: unknown series '{}'", key);
}

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Tick spacing near range/target, rounded to 1, 2 or 5 times a power of ten.
double nice_step(double range, int target) {
  const double raw = range / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

struct Axis {
  double lo, hi, step;
  int decimals;  // for tick labels
};

// [lo, hi] widened to whole ticks; a degenerate range gets room around the value.
Axis make_axis(double lo, double hi, int target, bool integer) {
  if (hi - lo < 1e-12) {
    const double pad = integer ? 1.0 : std::max(0.5, std::fabs(lo) * 0.05);
    lo -= pad;
    hi += pad;
  }
  double step = nice_step(hi - lo, target);
  if (integer) step = std::max(step, 1.0);
  Axis a{std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step, 0};
  a.decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  return a;
}

// Colours of runs when several logs share a picture.
constexpr const char* kRunColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

}  // namespace

LossLog read_loss_log(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open: {}", path, std::strerror(errno));
  LossLog log;
  for (const auto& d : kSeries) log.series.push_back({d.key, d.label, {}, {}});
  std::string line;
  while (std::getline(f, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    auto step = j.is_object() ? j.find("step") : j.end();
    if (!j.is_object() || step == j.end() || !step->is_number()) {
      ++log.skipped_lines;
      continue;
    }
    bool any = false;
    for (size_t s = 0; s < std::size(kSeries); ++s) {
      auto it = j.find(kSeries[s].key);
      if (it == j.end() && kSeries[s].fallback) it = j.find(kSeries[s].fallback);
      if (it == j.end() || !it->is_number()) continue;
      const double v = it->get<double>();
      if (!std::isfinite(v)) continue;
      log.series[s].steps.push_back(step->get<double>());
      log.series[s].values.push_back(v);
      any = true;
    }
    ++(any ? log.used_lines : log.skipped_lines);
  }
  if (f.bad()) fail("{}: read error", path);
  // `dsv3 train` logs mtp_loss 0 for a model without an MTP module: a cross-entropy that is
  // exactly 0 at every step is no curve, and drawing it would squash the real ones.
  std::erase_if(log.series, [](const LossSeries& s) {
    return std::all_of(s.values.begin(), s.values.end(), [](double v) { return v == 0; });
  });
  if (log.used_lines == 0)
    fail("{}: no usable line ({} skipped): expected JSON lines from `dsv3 train --json` with \"step\" and "
         "\"main_loss\" or \"loss\"",
         path, log.skipped_lines);
  return log;
}

void smooth_train_series(LossLog& log, int window) {
  if (window <= 1) return;
  for (LossSeries& s : log.series) {
    if (def_of(s.key).validation) continue;
    std::vector<double> out(s.values.size());
    double sum = 0;
    for (size_t i = 0; i < s.values.size(); ++i) {
      sum += s.values[i];
      if (i >= static_cast<size_t>(window)) sum -= s.values[i - static_cast<size_t>(window)];
      out[i] = sum / static_cast<double>(std::min(i + 1, static_cast<size_t>(window)));
    }
    s.values = std::move(out);
    s.label += fmt::format(" (mean of {})", window);
  }
}

std::string render_loss_svg(const LossLog& log, const std::string& title) {
  return render_loss_svg(std::vector<LossLog>{log}, title);
}

std::string render_loss_svg(const std::vector<LossLog>& logs, const std::string& title) {
  constexpr double W = 960, H = 560, L = 80, R = W - 30, T = 64, B = H - 64;  // plot area [L,R]x[T,B]
  const bool runs = logs.size() > 1;
  struct Drawn {
    const LossSeries* s;
    const SeriesDef* d;
    std::string color, dash, label;
  };
  std::vector<Drawn> all;
  for (size_t k = 0; k < logs.size(); ++k)
    for (const auto& s : logs[k].series) {
      const SeriesDef& d = def_of(s.key);
      all.push_back({&s, &d, runs ? kRunColors[k % std::size(kRunColors)] : d.color, runs ? d.dash : "",
                     runs ? logs[k].name + ": " + s.label : s.label});
    }
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  bool integer_steps = true;
  for (const Drawn& dr : all) {
    const LossSeries& s = *dr.s;
    for (size_t i = 0; i < s.steps.size(); ++i) {
      x0 = std::min(x0, s.steps[i]);
      x1 = std::max(x1, s.steps[i]);
      y0 = std::min(y0, s.values[i]);
      y1 = std::max(y1, s.values[i]);
      integer_steps = integer_steps && s.steps[i] == std::floor(s.steps[i]);
    }
  }
  if (!(x0 <= x1)) fail("plot: no points to draw");
  // A little room above and below the curves so extreme points do not sit on the frame.
  const double ypad = 0.04 * (y1 - y0);
  const Axis ax = make_axis(x0, x1, 8, integer_steps), ay = make_axis(y0 - ypad, y1 + ypad, 6, false);
  auto px = [&](double x) { return L + (x - ax.lo) / (ax.hi - ax.lo) * (R - L); };
  auto py = [&](double y) { return B - (y - ay.lo) / (ay.hi - ay.lo) * (B - T); };

  std::string o;
  o += fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"13\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\" stroke=\"none\"/>\n"
      "<text x=\"{2}\" y=\"32\" text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\">{3}</text>\n",
      W, H, (L + R) / 2, xml_escape(title));

  // Grid, ticks and tick labels.
  o += "<g class=\"grid\" stroke=\"#e4e4e4\" stroke-width=\"1\">\n";
  const int nx = static_cast<int>(std::lround((ax.hi - ax.lo) / ax.step));
  const int ny = static_cast<int>(std::lround((ay.hi - ay.lo) / ay.step));
  for (int i = 0; i <= nx; ++i) o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\"/>\n", px(ax.lo + i * ax.step), T, B);
  for (int i = 0; i <= ny; ++i) o += fmt::format("<line x1=\"{1}\" y1=\"{0:.1f}\" x2=\"{2}\" y2=\"{0:.1f}\"/>\n", py(ay.lo + i * ay.step), L, R);
  o += "</g>\n<g class=\"ticks\" fill=\"#333\">\n";
  for (int i = 0; i <= nx; ++i) {
    const double v = ax.lo + i * ax.step;
    o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#333\"/>"
                     "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:.{5}f}</text>\n",
                     px(v), B, B + 5, B + 20, v, ax.decimals);
  }
  for (int i = 0; i <= ny; ++i) {
    const double v = ay.lo + i * ay.step;
    o += fmt::format("<line x1=\"{1}\" y1=\"{0:.1f}\" x2=\"{2}\" y2=\"{0:.1f}\" stroke=\"#333\"/>"
                     "<text x=\"{3}\" y=\"{0:.1f}\" dy=\"4\" text-anchor=\"end\">{4:.{5}f}</text>\n",
                     py(v), L - 5, L, L - 8, v, ay.decimals);
  }
  o += "</g>\n";
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", L, T, R - L, B - T);
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n", (L + R) / 2, H - 18);
  o += fmt::format("<text x=\"22\" y=\"{0}\" transform=\"rotate(-90 22 {0})\" text-anchor=\"middle\">loss (nats)</text>\n",
                   (T + B) / 2);

  // Series: one polyline each (a single point shows as its marker).
  for (const Drawn& dr : all) {
    const LossSeries& s = *dr.s;
    const SeriesDef& d = *dr.d;
    std::string pts;
    for (size_t i = 0; i < s.steps.size(); ++i)
      pts += fmt::format("{}{:.1f},{:.1f}", i ? " " : "", px(s.steps[i]), py(s.values[i]));
    o += fmt::format("<polyline class=\"series\" data-key=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" "
                     "stroke-linejoin=\"round\"{} points=\"{}\"/>\n",
                     s.key, dr.color, d.validation ? 2 : 1.3,
                     dr.dash.empty() ? "" : fmt::format(" stroke-dasharray=\"{}\"", dr.dash), pts);
    if (d.validation || s.steps.size() == 1) {
      o += fmt::format("<g class=\"markers\" data-key=\"{}\" fill=\"{}\" stroke=\"white\" stroke-width=\"1\">", s.key, dr.color);
      for (size_t i = 0; i < s.steps.size(); ++i)
        o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\"/>", px(s.steps[i]), py(s.values[i]));
      o += "</g>\n";
    }
  }

  // Legend, top right inside the plot: swatch, label, last value.
  size_t longest = 0;
  for (const Drawn& dr : all) longest = std::max(longest, dr.label.size());
  const double lw = std::max(300.0, 190.0 + 7.5 * static_cast<double>(longest));
  const double lh = 12 + 20.0 * static_cast<double>(all.size()), lx = R - lw - 10, ly = T + 10;
  o += fmt::format("<g class=\"legend\">\n<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"white\" "
                   "fill-opacity=\"0.9\" stroke=\"#999\"/>\n",
                   lx, ly, lw, lh);
  for (size_t k = 0; k < all.size(); ++k) {
    const LossSeries& s = *all[k].s;
    const double y = ly + 16 + 20.0 * static_cast<double>(k);
    o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"3\"{}/>", lx + 10, y,
                     lx + 38, y, all[k].color,
                     all[k].dash.empty() ? "" : fmt::format(" stroke-dasharray=\"{}\"", all[k].dash));
    const double st = s.steps.back();
    o += fmt::format("<text x=\"{}\" y=\"{}\" dy=\"4\">{} (last {:.3f} at step {})</text>\n", lx + 46, y,
                     xml_escape(all[k].label), s.values.back(), st == std::floor(st) ? fmt::format("{:.0f}", st) : fmt::format("{}", st));
  }
  o += "</g>\n</svg>\n";
  return o;
}

}  // namespace dsv3
