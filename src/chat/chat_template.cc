#include "chat/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace dsv3 {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open file", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json read_config(const std::string& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed JSON: {}", path, e.what());
  }
}

// A special token is either "text" or an AddedToken object {"content": "text", ...}.
std::string token_text(const nlohmann::json& cfg, const char* key, const std::string& path) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  fail("{}: field '{}' must be a string or an object with a string 'content'", path, key);
}

// Returns the template text, or "" when the config has none.
std::string template_from_config(const nlohmann::json& cfg, const std::string& path) {
  auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& e : *it) {
      if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["template"].is_string())
        fail("{}: 'chat_template' list entries must be {{name, template}} objects", path);
      if (e["name"] == "default") return e["template"].get<std::string>();
    }
    fail("{}: 'chat_template' list has no template named 'default'", path);
  }
  fail("{}: field 'chat_template' must be a string or a list of {{name, template}}", path);
}

}  // namespace

ChatTemplate ChatTemplate::load(const std::string& dir) {
  std::string cfg_path = (std::filesystem::path(dir) / "tokenizer_config.json").string();
  std::string jinja_path = (std::filesystem::path(dir) / "chat_template.jinja").string();
  nlohmann::json cfg = read_config(cfg_path);
  if (!cfg.is_object()) fail("{}: expected a JSON object", cfg_path);
  std::string source;
  std::string where = cfg_path;
  if (std::filesystem::exists(jinja_path)) {
    source = read_file(jinja_path);
    where = jinja_path;
  } else {
    source = template_from_config(cfg, cfg_path);
    if (source.empty()) fail("{}: no 'chat_template' field", cfg_path);
  }
  try {
    return ChatTemplate(std::move(source), token_text(cfg, "bos_token", cfg_path), token_text(cfg, "eos_token", cfg_path));
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
}

bool ChatTemplate::available(const std::string& dir) {
  // load() needs tokenizer_config.json in every case, for the special tokens.
  std::string cfg_path = (std::filesystem::path(dir) / "tokenizer_config.json").string();
  if (!std::filesystem::exists(cfg_path)) return false;
  if (std::filesystem::exists(std::filesystem::path(dir) / "chat_template.jinja")) return true;
  try {
    nlohmann::json cfg = read_config(cfg_path);
    return cfg.is_object() && !template_from_config(cfg, cfg_path).empty();
  } catch (const Error&) {
    return false;
  }
}

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token)
    : source_(source), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)), tmpl_(std::move(source)) {}

std::string ChatTemplate::render_values(jinja::Value messages, bool add_generation_prompt, jinja::Value extra) const {
  if (!messages.is_list()) fail("chat template: messages must be a JSON array, got {}", jinja::type_name(messages));
  if (extra.kind != jinja::Value::Kind::Dict)
    fail("chat template: extra variables must be a JSON object, got {}", jinja::type_name(extra));
  // The variables transformers passes: messages, tools and documents (None unless given),
  // add_generation_prompt, the special tokens, then the caller's kwargs.
  jinja::Value vars = jinja::Value::make_dict({{"messages", std::move(messages)},
                                               {"tools", jinja::Value::none()},
                                               {"documents", jinja::Value::none()},
                                               {"add_generation_prompt", jinja::Value::boolean(add_generation_prompt)},
                                               {"bos_token", jinja::Value::string(bos_token_)},
                                               {"eos_token", jinja::Value::string(eos_token_)}});
  for (const auto& [k, v] : *extra.dict) vars.set(k, v);
  return tmpl_.render(*vars.dict);
}

std::string ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra) const {
  return render_values(jinja::from_json(messages), add_generation_prompt, jinja::from_json(extra));
}

std::string ChatTemplate::render_ordered(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                         const nlohmann::ordered_json& extra) const {
  return render_values(jinja::from_json(messages), add_generation_prompt, jinja::from_json(extra));
}

}  // namespace dsv3
