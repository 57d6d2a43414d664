// `dsv3 plot`: reading a `dsv3 train --json` log and the SVG it draws (a polyline per series with
// one point per logged value, escaped title, errors for unusable logs).
#include <gtest/gtest.h>

#include "testing.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include "core/error.h"
#include "data/loss_plot.h"

namespace dsv3 {
namespace {
namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  std::random_device rd;
  return (fs::temp_directory_path() / ("dsv3_plot_" + std::to_string(rd()) + "_" + name)).string();
}

// 20 training steps with MTP (without: mtp_loss 0 or null), validation every 5 steps, a header line
// and a broken line.
std::string sample_log(bool mtp = true) {
  std::string s = "dsv3 train: model tiny, 20 steps\n";
  for (int step = 1; step <= 20; ++step) {
    const double main = 10.0 / (1 + 0.2 * step), m = main + 0.3;
    s += fmt::format("{{\"step\":{},\"loss\":{},\"main_loss\":{},{}\"lr\":0.001", step, main + (mtp ? 0.3 * m : 0), main,
                     mtp ? fmt::format("\"mtp_loss\":{},", m) : step % 2 ? "\"mtp_loss\":0," : "\"mtp_loss\":null,");
    if (step % 5 == 0) s += fmt::format(",\"val_loss\":{}{}", main + 0.1, mtp ? fmt::format(",\"val_mtp_loss\":{}", m + 0.1) : "");
    s += "}\n";
    if (step == 10) s += "{\"step\": 10, \"loss\": \n";  // a line cut short
  }
  return s;
}

// points="..." of the polyline with data-key="key": the number of "x,y" pairs, -1 if none.
int polyline_points(const std::string& svg, const std::string& key) {
  const std::regex re("<polyline[^>]*data-key=\"" + key + "\"[^>]*points=\"([^\"]*)\"");
  std::smatch m;
  if (!std::regex_search(svg, m, re)) return -1;
  const std::string pts = m[1];
  int n = 0;
  for (char c : pts) n += c == ',';
  return n;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

TEST(LossPlot, ReadsSeriesAndSkipsNonJson) {
  const std::string path = temp_path("log.jsonl");
  std::ofstream(path) << sample_log();
  const LossLog log = read_loss_log(path);
  EXPECT_EQ(log.used_lines, 20);
  EXPECT_EQ(log.skipped_lines, 2);  // the header and the broken line
  ASSERT_EQ(log.series.size(), 4u);
  EXPECT_EQ(log.series[0].key, "main_loss");
  EXPECT_EQ(log.series[0].steps.size(), 20u);
  EXPECT_DOUBLE_EQ(log.series[0].values[0], 10.0 / 1.2);
  EXPECT_EQ(log.series[1].key, "mtp_loss");
  EXPECT_EQ(log.series[2].key, "val_loss");
  EXPECT_EQ(log.series[2].steps, (std::vector<double>{5, 10, 15, 20}));
  EXPECT_EQ(log.series[3].values.size(), 4u);

  const std::string svg = render_loss_svg(log, "loss <run & co>");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(count(svg, "<polyline"), 4u);
  EXPECT_EQ(polyline_points(svg, "main_loss"), 20);
  EXPECT_EQ(polyline_points(svg, "mtp_loss"), 20);
  EXPECT_EQ(polyline_points(svg, "val_loss"), 4);
  EXPECT_EQ(polyline_points(svg, "val_mtp_loss"), 4);
  EXPECT_EQ(count(svg, "<circle"), 8u);  // validation points are marked
  EXPECT_NE(svg.find("loss &lt;run &amp; co&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("<run"), std::string::npos);
  EXPECT_NE(svg.find(">step<"), std::string::npos);
  EXPECT_NE(svg.find(">loss (nats)<"), std::string::npos);
  EXPECT_NE(svg.find("val MTP loss"), std::string::npos);  // legend
  fs::remove(path);
}

TEST(LossPlot, NoMtpAndFallbackToLoss) {
  const std::string path = temp_path("nomtp.jsonl");
  std::ofstream(path) << sample_log(false);
  const LossLog log = read_loss_log(path);
  ASSERT_EQ(log.series.size(), 2u);  // no MTP series when mtp_loss is null or 0 (no MTP module)
  EXPECT_EQ(log.series[0].key, "main_loss");
  EXPECT_EQ(log.series[1].key, "val_loss");
  const std::string svg = render_loss_svg(log, "t");
  EXPECT_EQ(count(svg, "<polyline"), 2u);
  EXPECT_EQ(polyline_points(svg, "mtp_loss"), -1);

  // Only "loss" (no main_loss): drawn as the training loss; a single point gets a marker.
  std::ofstream(path) << "{\"step\": 3, \"loss\": 2.5}\n";
  const LossLog one = read_loss_log(path);
  ASSERT_EQ(one.series.size(), 1u);
  EXPECT_EQ(one.series[0].values, std::vector<double>{2.5});
  const std::string svg1 = render_loss_svg(one, "t");
  EXPECT_EQ(polyline_points(svg1, "main_loss"), 1);
  EXPECT_EQ(count(svg1, "<circle"), 1u);
  fs::remove(path);
}

// Two runs in one picture (FP8 against BF16): each run's series in its own colour, named in the
// legend, the MTP series dashed; the y range covers both.
TEST(LossPlot, SeveralRunsShareOnePicture) {
  const std::string a = temp_path("a.jsonl"), b = temp_path("b.jsonl");
  std::ofstream(a) << sample_log();
  std::ofstream(b) << "{\"step\": 1, \"main_loss\": 30.5}\n{\"step\": 2, \"main_loss\": 29.5}\n";
  std::vector<LossLog> logs{read_loss_log(a), read_loss_log(b)};
  logs[0].name = "fp8";
  logs[1].name = "bf16";
  const std::string svg = render_loss_svg(logs, "gap");
  EXPECT_EQ(count(svg, "<polyline"), 5u);  // 4 series of run a, 1 of run b
  EXPECT_NE(svg.find("fp8: train loss"), std::string::npos);
  EXPECT_NE(svg.find("bf16: train loss (last 29.500 at step 2)"), std::string::npos);
  EXPECT_NE(svg.find("stroke=\"#d62728\""), std::string::npos);  // the second run's colour
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
  EXPECT_NE(svg.find(">30<"), std::string::npos) << "the y axis must reach run b's values";
  smooth_train_series(logs[1], 2);
  EXPECT_EQ(logs[1].series[0].values, (std::vector<double>{30.5, 30.0}));
  EXPECT_EQ(logs[1].series[0].label, "train loss (mean of 2)");
  fs::remove(a);
  fs::remove(b);
}

TEST(LossPlot, UnusableLogIsAnError) {
  const std::string path = temp_path("bad.jsonl");
  std::ofstream(path) << "header\n[1,2]\n{\"step\": 1}\n{\"loss\": 2}\n";
  try {
    read_loss_log(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no usable line (4 skipped)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_loss_log(path + ".missing"), Error);
  fs::remove(path);
}

TEST(PlotCli, DefaultOutputNameAndErrors) {
  using dsv3::testing::run_cmd;
  const std::string dir = temp_path("cli");
  fs::create_directories(dir);
  std::ofstream(dir + "/run.log") << sample_log();
  int rc = -1;
  const std::string out = run_cmd(std::string(DSV3_BIN) + " plot " + dir + "/run.log 2>&1", rc);
  EXPECT_EQ(rc, 0) << out;
  ASSERT_TRUE(fs::exists(dir + "/run.svg")) << out;
  EXPECT_FALSE(fs::exists(dir + "/run.svg.partial"));
  std::ifstream f(dir + "/run.svg");
  const std::string svg(std::istreambuf_iterator<char>(f), {});
  EXPECT_EQ(polyline_points(svg, "main_loss"), 20);
  std::ofstream(dir + "/empty.log") << "not json\n";
  const std::string err = run_cmd(std::string(DSV3_BIN) + " plot " + dir + "/empty.log --out " + dir + "/e.svg 2>&1", rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("no usable line"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir + "/e.svg"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dsv3
