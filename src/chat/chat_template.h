// Chat prompt formatting with the model's own Jinja chat template, rendered as transformers'
// tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...) does.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "chat/jinja.h"

namespace dsv3 {

struct ChatTemplate {
  // From DIR/chat_template.jinja when present (newer Hugging Face repositories), else
  // DIR/tokenizer_config.json "chat_template" (a string, or a list of {name, template} from which
  // "default" is taken), with bos_token/eos_token (a string or {"content": ...}).
  // Throws dsv3::Error naming the file if it is missing or malformed.
  static ChatTemplate load(const std::string& dir);
  // Whether load(dir) would find a template (it may still fail to parse).
  static bool available(const std::string& dir);

  // Parses `source` once; throws dsv3::Error ("chat template: line L, column C: ...") on bad syntax.
  ChatTemplate(std::string source, std::string bos_token, std::string eos_token);

  // messages: JSON array of {role, content, tool_calls?, ...} as in the OpenAI API.
  // extra: additional top-level variables (tools, thinking, ...); they override the defaults
  // (bos_token, eos_token, tools=None, documents=None) like apply_chat_template's kwargs.
  std::string render(const nlohmann::json& messages, bool add_generation_prompt,
                     const nlohmann::json& extra = nlohmann::json::object()) const;
  // The same with insertion-ordered objects: `tojson` then prints keys in request order, as Python
  // would, instead of nlohmann::json's sorted order.
  std::string render_ordered(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                             const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  std::string render_values(jinja::Value messages, bool add_generation_prompt, jinja::Value extra) const;

  std::string source_, bos_token_, eos_token_;
  jinja::Template tmpl_;
};

}  // namespace dsv3
