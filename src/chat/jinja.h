// A Jinja2 interpreter for the subset of the language Hugging Face chat templates use, with the
// environment transformers' apply_chat_template builds (trim_blocks, lstrip_blocks, loopcontrols,
// json.dumps-style tojson, raise_exception). The template is parsed once; render() only walks the
// cached tree, so it is safe to call from several threads at once.
#pragma once
#include <memory>
#include <string>

#include "chat/jinja_value.h"

namespace dsv3::jinja {

struct Program;

class Template {
 public:
  // Throws dsv3::Error ("chat template: line L, column C: ...") on malformed or unsupported syntax.
  explicit Template(std::string source);
  // vars: the top-level variables (messages, bos_token, add_generation_prompt, tools, ...).
  std::string render(const Dict& vars) const;

 private:
  std::shared_ptr<const Program> prog_;
};

}  // namespace dsv3::jinja
