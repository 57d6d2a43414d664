#include "tokenizer/deepseek_v3.h"

namespace dsv3::deepseek_v3 {

const std::array<std::string_view, 3> kSplitPatterns = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};

const std::array<AddedTokenSpec, 3> kLeadingTokens = {{
    {"<｜begin▁of▁sentence｜>", true, false},
    {"<｜end▁of▁sentence｜>", true, false},
    {"<｜▁pad▁｜>", true, false},
}};

const std::array<AddedTokenSpec, 15> kTrailingTokens = {{
    {"<｜fim▁hole｜>", false, true},
    {"<｜fim▁begin｜>", false, true},
    {"<｜fim▁end｜>", false, true},
    {"<｜User｜>", false, true},
    {"<｜Assistant｜>", false, true},
    {"<|EOT|>", true, true},
    {"<｜tool▁calls▁begin｜>", false, true},
    {"<｜tool▁calls▁end｜>", false, true},
    {"<｜tool▁call▁begin｜>", false, true},
    {"<｜tool▁call▁end｜>", false, true},
    {"<｜tool▁outputs▁begin｜>", false, true},
    {"<｜tool▁outputs▁end｜>", false, true},
    {"<｜tool▁output▁begin｜>", false, true},
    {"<｜tool▁output▁end｜>", false, true},
    {"<｜tool▁sep｜>", false, true},
}};

// Copied from deepseek-ai/DeepSeek-V3 tokenizer_config.json "chat_template", split at the
// template's own line breaks (written as "\n" pieces so the source's line endings cannot alter it).
const std::string_view kChatTemplate =
    R"tpl({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + ')tpl"
    "\n" R"tpl()tpl"
    "\n" R"tpl(' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + ')tpl"
    "\n" R"tpl(' + '```json' + ')tpl"
    "\n" R"tpl(' + tool['function']['arguments'] + ')tpl"
    "\n" R"tpl(' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{')tpl"
    "\n" R"tpl(' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + ')tpl"
    "\n" R"tpl(' + '```json' + ')tpl"
    "\n" R"tpl(' + tool['function']['arguments'] + ')tpl"
    "\n" R"tpl(' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{')tpl"
    "\n" R"tpl(<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %})tpl";

}  // namespace dsv3::deepseek_v3
