// Chat template engine against independent references: transformers' apply_chat_template outputs
// in tests/data/ref.json ("chat"), and Python jinja2 3.1 configured like transformers
// (tests/data/chat_templates/cases.json, written by make_cases.py there).
#include <gtest/gtest.h>

#include "testing.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "chat/chat_template.h"
#include "chat/jinja.h"
#include "core/error.h"

namespace {

using dsv3::ChatTemplate;
using nlohmann::ordered_json;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const std::string kTemplates = std::string(DSV3_TEST_DATA) + "/chat_templates";
const std::string kBos = "<｜begin▁of▁sentence｜>", kEos = "<｜end▁of▁sentence｜>";

const ordered_json& cases() {
  static ordered_json c = ordered_json::parse(slurp(kTemplates + "/cases.json"));
  return c;
}

std::string render_inline(const std::string& tmpl, const ordered_json& vars) {
  dsv3::jinja::Template t(tmpl);
  dsv3::jinja::Value v = dsv3::jinja::from_json(vars);
  return t.render(*v.dict);
}

TEST(ChatTemplate, MatchesTransformersOnDeepSeekV3) {
  nlohmann::json ref = nlohmann::json::parse(slurp(std::string(DSV3_TEST_DATA) + "/ref.json"));
  ChatTemplate tmpl = ChatTemplate::load(DSV3_TOKENIZER_DIR);
  EXPECT_EQ(tmpl.bos_token(), kBos);
  EXPECT_EQ(tmpl.eos_token(), kEos);
  ASSERT_GE(ref["chat"].size(), 8u);
  int n = 0;
  for (const auto& c : ref["chat"]) {
    EXPECT_EQ(tmpl.render(c["messages"], c["add_generation_prompt"].get<bool>()), c["text"].get<std::string>())
        << c["messages"].dump();
    ++n;
  }
  EXPECT_EQ(n, static_cast<int>(ref["chat"].size()));
}

TEST(ChatTemplate, InlineCasesMatchJinja2) {
  int checked = 0;
  for (const auto& c : cases()["inline"]) {
    std::string name = c["name"];
    if (c.contains("text")) {
      try {
        EXPECT_EQ(render_inline(c["template"], c["vars"]), c["text"].get<std::string>()) << name;
      } catch (const dsv3::Error& e) {
        ADD_FAILURE() << name << ": " << e.what();
      }
    } else {
      // jinja2 raised; we must raise a dsv3::Error too (and not crash).
      EXPECT_THROW(render_inline(c["template"], c["vars"]), dsv3::Error) << name << " (jinja2: " << c["error"] << ")";
    }
    ++checked;
  }
  EXPECT_GE(checked, 60);
}

TEST(ChatTemplate, TemplateFilesMatchJinja2) {
  int checked = 0;
  for (const auto& c : cases()["files"]) {
    std::string name = c["name"];
    ChatTemplate tmpl(slurp(kTemplates + "/" + c["file"].get<std::string>()), kBos, kEos);
    ASSERT_TRUE(c.contains("text")) << name;
    try {
      EXPECT_EQ(tmpl.render_ordered(c["messages"], c["add_generation_prompt"].get<bool>(), c["extra"]),
                c["text"].get<std::string>())
          << name;
    } catch (const dsv3::Error& e) {
      ADD_FAILURE() << name << ": " << e.what();
    }
    ++checked;
  }
  EXPECT_GE(checked, 28);
}

TEST(ChatTemplate, R1StripsThinkingFromHistoryAndOpensThink) {
  // Spelled out independently of cases.json, from the R1 template's definition.
  ChatTemplate r1(slurp(kTemplates + "/deepseek_r1.jinja"), kBos, kEos);
  nlohmann::json msgs = nlohmann::json::parse(R"([
    {"role": "user", "content": "Q1"},
    {"role": "assistant", "content": "<think>\nhidden\n</think>A1"},
    {"role": "user", "content": "Q2"}])");
  EXPECT_EQ(r1.render(msgs, true),
            kBos + "<｜User｜>Q1<｜Assistant｜>A1" + kEos + "<｜User｜>Q2<｜Assistant｜><think>\n");
}

TEST(ChatTemplate, UnsupportedConstructsFailClearly) {
  const char* bad[] = {
      "{% include 'other.jinja' %}",
      "{% filter upper %}x{% endfilter %}",
      "{% for x in xs recursive %}{{ loop(x) }}{% endfor %}",
      "{% call m() %}x{% endcall %}",
      "{% with a = 1 %}{{ a }}{% endwith %}",
      "{{ f(*args) }}",
      "{{ x|urlencode }}",
      "{% extends 'base' %}",
  };
  for (const char* t : bad) {
    try {
      render_inline(t, ordered_json::object());
      ADD_FAILURE() << "no error for " << t;
    } catch (const dsv3::Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("unsupported construct"), std::string::npos) << t << " -> " << msg;
      EXPECT_NE(msg.find("line 1, column"), std::string::npos) << t << " -> " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "one-line message: " << msg;
    }
  }
}

TEST(ChatTemplate, ErrorsNameThePosition) {
  try {
    render_inline("line one\n  {{ a + }}", ordered_json::object());
    FAIL();
  } catch (const dsv3::Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2, column 10"), std::string::npos) << e.what();
  }
  try {
    render_inline("{% if messages|length == 0 %}{{ raise_exception('Need a message') }}{% endif %}",
                  ordered_json{{"messages", ordered_json::array()}});
    FAIL();
  } catch (const dsv3::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Need a message"), std::string::npos) << e.what();
  }
  try {
    render_inline("{{ message.content }}", ordered_json::object());
    FAIL();
  } catch (const dsv3::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'message' is undefined"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, TruncatedTemplatesNeverCrash) {
  // Every prefix of real templates: each one renders or throws dsv3::Error.
  ChatTemplate full = ChatTemplate::load(DSV3_TOKENIZER_DIR);
  nlohmann::json msgs = nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])");
  for (const std::string& src : {full.source(), slurp(kTemplates + "/chatml_tools.jinja")}) {
    int errors = 0;
    for (size_t n = 0; n < src.size(); n += 3) {
      try {
        ChatTemplate(src.substr(0, n), kBos, kEos).render(msgs, true);
      } catch (const dsv3::Error&) {
        ++errors;
      }
    }
    EXPECT_GT(errors, 0);
  }
}

TEST(ChatTemplate, LoadFormsAndErrors) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("dsv3_chat_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& text) { std::ofstream(dir / "tokenizer_config.json") << text; };

  EXPECT_FALSE(ChatTemplate::available(dir.string()));
  EXPECT_THROW(ChatTemplate::load(dir.string()), dsv3::Error);

  write(R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}D{{ eos_token }}"}],
            "bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}})");
  EXPECT_TRUE(ChatTemplate::available(dir.string()));
  EXPECT_EQ(ChatTemplate::load(dir.string()).render(nlohmann::json::array(), false), "<s>D</s>");

  write(R"({"chat_template": "x", "bos_token": null})");
  EXPECT_EQ(ChatTemplate::load(dir.string()).bos_token(), "");

  write(R"({"chat_template": 5})");
  try {
    ChatTemplate::load(dir.string());
    FAIL();
  } catch (const dsv3::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos) << e.what();
  }
  write("{not json");
  EXPECT_FALSE(ChatTemplate::available(dir.string()));
  EXPECT_THROW(ChatTemplate::load(dir.string()), dsv3::Error);
  write(R"({"chat_template": "{% if %}"})");
  try {
    ChatTemplate::load(dir.string());
    FAIL();
  } catch (const dsv3::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos) << e.what();
  }
  // Messages must be an array.
  ChatTemplate t("{{ messages|length }}", "", "");
  EXPECT_THROW(t.render(nlohmann::json::object(), false), dsv3::Error);
  fs::remove_all(dir);
}

TEST(ChatTemplate, CliRendersStdin) {
  if (!std::filesystem::exists(DSV3_BIN)) GTEST_SKIP() << "dsv3 binary not built";
  nlohmann::json ref = nlohmann::json::parse(slurp(std::string(DSV3_TEST_DATA) + "/ref.json"));
  std::string in_path = (std::filesystem::temp_directory_path() / ("dsv3_chat_cli_" + std::to_string(::getpid()))).string();
  auto run = [&](const std::string& input, const std::string& flags, int* rc) {
    std::ofstream(in_path, std::ios::binary) << input;
    std::string cmd = std::string(DSV3_BIN) + " template -m " + DSV3_TOKENIZER_DIR + " " + flags + " < " + in_path + " 2>/dev/null";
    return dsv3::testing::run_cmd(cmd, *rc);
  };
  int rc = 0;
  for (const auto& c : ref["chat"]) {
    bool gen = c["add_generation_prompt"];
    EXPECT_EQ(run(c["messages"].dump(), gen ? "--add-generation-prompt" : "", &rc), c["text"].get<std::string>());
    EXPECT_EQ(rc, 0);
    nlohmann::json obj = {{"messages", c["messages"]}, {"add_generation_prompt", gen}};
    EXPECT_EQ(run(obj.dump(), "", &rc), c["text"].get<std::string>());
  }
  run("[{\"role\": ", "", &rc);
  EXPECT_NE(rc, 0);
  run("{\"no_messages\": 1}", "", &rc);
  EXPECT_NE(rc, 0);
  std::filesystem::remove(in_path);
}

}  // namespace
