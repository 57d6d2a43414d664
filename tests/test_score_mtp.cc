// `dsv3 score --mtp --json` reports mtp_token_logprobs: at position i the MTP head's
// log-probability of token i+2 (null for the last two positions), checked against transformers'
// MTP logits on the FP8 fixture (tests/data/v3-fp8_mtp_logits_1.f32, rows 0..n-2 over prompt 1 +
// its greedy continuation; see /work/shared/fixtures/README.md).
#include <gtest/gtest.h>

#include "testing.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;
using dsv3::testing::run_cmd;

const std::string kFixtures = DSV3_FIXTURES;
const std::string kData = DSV3_TEST_DATA;
constexpr int64_t kVocab = 2048;  // v3-fp8 fixture
constexpr double kTol = 1e-4;

std::string join(const std::vector<int32_t>& v) {
  std::string s;
  for (int32_t t : v) {
    if (!s.empty()) s += ',';
    s += std::to_string(t);
  }
  return s;
}

json score(const std::vector<int32_t>& ids) {
  int rc = -1;
  const std::string out = run_cmd(std::string(DSV3_BIN) + " score -m " + kFixtures + "/v3-fp8 --mtp --json --prompt-ids " +
                                      join(ids) + " 2>/dev/null",
                                  rc);
  EXPECT_EQ(rc, 0) << out;
  return json::parse(out);
}

TEST(ScoreMtpCli, TokenLogprobsMatchTransformers) {
  std::ifstream rf(kData + "/ref.json");
  const json ref = json::parse(rf);
  const json& c = ref["v3-fp8"][1];
  auto full = c["prompt"].get<std::vector<int32_t>>();
  for (int32_t t : c["greedy"].get<std::vector<int32_t>>()) full.push_back(t);
  const int64_t n = static_cast<int64_t>(full.size());

  std::ifstream f(kData + "/v3-fp8_mtp_logits_1.f32", std::ios::binary);
  ASSERT_TRUE(f.good());
  std::vector<float> theirs(static_cast<size_t>((n - 1) * kVocab));
  f.read(reinterpret_cast<char*>(theirs.data()), static_cast<std::streamsize>(theirs.size() * 4));
  ASSERT_EQ(f.gcount(), static_cast<std::streamsize>(theirs.size() * 4)) << "expected " << n - 1 << " rows";

  const json j = score(full);
  const json& lp = j["mtp_token_logprobs"];
  ASSERT_TRUE(lp.is_array());
  ASSERT_EQ(static_cast<int64_t>(lp.size()), n);
  EXPECT_TRUE(lp[n - 2].is_null());
  EXPECT_TRUE(lp[n - 1].is_null());
  std::vector<float> lsm;
  double worst = 0;
  for (int64_t i = 0; i + 2 < n; ++i) {
    ASSERT_TRUE(lp[i].is_number()) << i;
    log_softmax(theirs.data() + i * kVocab, kVocab, lsm);
    const float want = lsm[static_cast<size_t>(full[static_cast<size_t>(i + 2)])];
    EXPECT_NEAR(lp[i].get<double>(), want, kTol) << "position " << i << " (token " << full[i + 2] << ")";
    worst = std::max(worst, std::fabs(lp[i].get<double>() - want));
    EXPECT_LE(lp[i].get<double>(), 0.0);
  }
  std::printf("mtp_token_logprobs: worst difference from transformers %.3e over %lld positions\n", worst,
              static_cast<long long>(n - 2));
  EXPECT_EQ(j["mtp_argmax"].size(), lp.size());  // same positions as mtp_argmax
}

TEST(ScoreMtpCli, ShortPromptsAreAllNull) {
  for (const std::vector<int32_t>& ids : {std::vector<int32_t>{5}, std::vector<int32_t>{0, 5}}) {
    const json j = score(ids);
    const json& lp = j["mtp_token_logprobs"];
    ASSERT_EQ(lp.size(), ids.size());
    for (const auto& v : lp) EXPECT_TRUE(v.is_null()) << j.dump();
  }
  const json three = score({0, 5, 9});
  ASSERT_EQ(three["mtp_token_logprobs"].size(), 3u);
  EXPECT_TRUE(three["mtp_token_logprobs"][0].is_number());
  EXPECT_TRUE(three["mtp_token_logprobs"][1].is_null());
  EXPECT_TRUE(three["mtp_token_logprobs"][2].is_null());
}

}  // namespace
}  // namespace dsv3
