// dsv3 template: renders a conversation read from stdin with the model's chat template, so a prompt
// can be checked against transformers' apply_chat_template or piped into other tools.
#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>

#include "chat/chat_template.h"
#include "cli/command.h"
#include "core/error.h"

namespace dsv3::cli {
namespace {

struct Options {
  std::string model_dir;
  bool add_generation_prompt = false;
};

int run(const Options& o) {
  ChatTemplate tmpl = ChatTemplate::load(o.model_dir);
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(input);
  } catch (const nlohmann::json::exception& e) {
    fail("stdin: malformed JSON: {}", e.what());
  }
  bool add_gen = o.add_generation_prompt;
  nlohmann::ordered_json messages, extra = nlohmann::ordered_json::object();
  if (j.is_array()) {
    messages = std::move(j);
  } else if (j.is_object()) {
    if (!j.contains("messages")) fail("stdin: object has no 'messages' field");
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "messages") {
        messages = it.value();
      } else if (it.key() == "add_generation_prompt") {
        if (!it.value().is_boolean()) fail("stdin: 'add_generation_prompt' must be a boolean");
        add_gen = add_gen || it.value().get<bool>();
      } else {
        extra[it.key()] = it.value();  // tools, thinking, ... become template variables
      }
    }
  } else {
    fail("stdin: expected a JSON array of messages or an object with 'messages'");
  }
  if (!messages.is_array()) fail("stdin: 'messages' must be a JSON array");
  std::string text = tmpl.render_ordered(messages, add_gen, extra);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return 0;
}

const bool registered = register_command(
    {"template", "Render a chat (JSON messages on stdin) with the model's chat template", [](CLI::App& app) {
       auto o = std::make_shared<Options>();
       app.add_option("-m,--model", o->model_dir, "Directory with tokenizer_config.json")->required();
       app.add_flag("--add-generation-prompt", o->add_generation_prompt,
                    "End with the assistant prefix so the model answers next");
       return Runner([o] { return run(*o); });
     }});

}  // namespace
}  // namespace dsv3::cli
