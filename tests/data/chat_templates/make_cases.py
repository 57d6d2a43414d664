#!/usr/bin/env python3
"""Writes cases.json: templates, variables and the output of Python jinja2 (3.1) configured as
transformers' apply_chat_template configures it (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, json.dumps tojson, raise_exception). The C++ test renders the same
cases and compares byte for byte. Run: python3 make_cases.py (needs the jinja2 package)."""
import json
import os

import jinja2
from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"

# Inline cases: (name, template, variables). Variables are passed to render() as they are.
XS = {"xs": [1, 2, 3, 4]}
D = {"d": {"a": 1, "b": "two", "c": [3]}}
MSGS = {"msgs": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                 {"role": "assistant", "content": "A1", "tool": True}, {"role": "user", "content": "U2"}]}
INLINE = [
    ("ws_minus_both", "a  {{- 'x' -}}  b", {}),
    ("ws_block_minus", "<{%- if true -%} x {%- endif -%}>", {}),
    ("ws_lstrip_trim", "  {% if true %}\n  yes\n  {% endif %}\nend", {}),
    ("ws_plus_lstrip", "  {%+ if true %}x{% endif %}", {}),
    ("ws_plus_trim", "{% if true +%}\nx{% endif %}", {}),
    ("ws_comment", "a {# c #}\n b|  {# c #}\nb|a {#- c -#} b", {}),
    ("ws_comment_line", "x\n    {# note #}\ny", {}),
    ("ws_var_no_lstrip", "{% for m in xs %}\n  {{ m }}\n{% endfor %}", XS),
    ("ws_minus_mixed", "a\n  {%- if true %}\n  b\n  {%- endif %}\nc", {}),
    ("ws_var_minus", "{{- 'a' }}  \n  {{ 'b' -}}  \n c", {}),
    ("ws_start_indent", "   {% if true %}x{% endif %}", {}),
    ("ws_same_line", "{% if true %}  {% if true %}y{% endif %}{% endif %}", {}),
    ("ws_nested_lines", "{% if true %}\n  {% if true %}y{% endif %}\n{% endif %}", {}),
    ("ws_trailing_newline", "{{ 'a' }}\n{{ 'b' }}\n", {}),
    ("ws_two_trailing", "x\n\n", {}),
    ("ws_crlf", "line1\r\nline2\r\n{% if true %}\r\nz{% endif %}", {}),
    ("raw", "{% raw %}{{ x }}{% if %}{% endraw %}!", {}),
    ("loop_vars", "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.first }}/{{ loop.last }}/"
                  "{{ loop.length }}/{{ loop.revindex }}/{{ loop.revindex0 }} {% endfor %}", XS),
    ("loop_if", "{% for x in xs if x > 1 %}{{ x }}:{{ loop.index }}:{{ loop.length }},{% endfor %}", XS),
    ("loop_else", "{% for x in [] %}a{% else %}empty{% endfor %}{% for x in xs %}{% else %}no{% endfor %}", XS),
    ("loop_dict", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", D),
    ("loop_break_continue", "{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}"
                            "{% endif %}{{ x }}{% endfor %}", XS),
    ("loop_scope", "{% set a = 0 %}{% for x in xs %}{% set a = x %}{{ a }}{% endfor %}{{ a }}", XS),
    ("loop_set_persist", "{% for x in xs %}{% if loop.first %}{% set y = 'first' %}{% endif %}{{ y }},{% endfor %}", XS),
    ("loop_nested", "{% for a in [1, 2] %}{% for b in ['x', 'y'] %}{{ loop.index }}{{ b }}{{ a }}{% endfor %}"
                    "{{ loop.index }}|{% endfor %}", {}),
    ("loop_prev_next", "{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}", XS),
    ("loop_string", "{% for c in 'héllo' %}{{ c }}.{% endfor %}", {}),
    ("loop_reassign", "{% for m in msgs %}{% set m = m.content %}{{ m }}{% endfor %}", MSGS),
    ("namespace", "{% set ns = namespace(n=0, s='') %}{% for x in xs %}{% set ns.n = ns.n + x %}"
                  "{% set ns.s = ns.s ~ x %}{% endfor %}{{ ns.n }} {{ ns.s }}", XS),
    ("concat", "{{ 'a' + 'b' ~ 1 ~ none ~ true ~ nope }}", {}),
    ("str_methods", "{{ s.startswith('He') }} {{ s.endswith('!') }} {{ s.split(' ') }} {{ s.split() }} "
                    "[{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  x'.lstrip() }}|{{ 'x  '.rstrip() }}] "
                    "{{ s.replace('l', 'L') }} {{ s.lower() }} {{ s.upper() }} {{ s.startswith(('x', 'Hel')) }}",
     {"s": "Hello  world!"}),
    ("think_split", "{{ c.split('</think>')[-1] }}|{{ c.split('</think>', 1)[1] }}|{{ c.split('</think>')[0].strip() }}"
                    "|{{ 'none'.split('</think>')[-1] }}", {"c": "<think>\nreason\n</think>\n\nanswer"}),
    ("slicing", "{{ xs[1:] }} {{ xs[::-1] }} {{ xs[:2] }} {{ xs[-2:] }} {{ s[::-1] }} {{ s[1:3] }} {{ u[1:] }} "
                "{{ xs[::2] }} {{ xs[-1] }} {{ u[1] }} {{ xs[1:-1] }} {{ xs[5:] }}",
     {"xs": [1, 2, 3, 4], "s": "abcd", "u": "ü中文"}),
    ("literals", "{{ [1, 'a', none, true, 1.5] }} {{ {'a': 1, 'b': [2]} }} {{ 'it\\'s' }} {{ \"q\\\"\" }} "
                 "{{ 'tab\\tnl\\n' }} {{ 1e3 }} {{ 0.1 + 0.2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} "
                 "{{ 7 / 2 }} {{ 2 ** 10 }} {{ 10 / 4 * 2 }} {{ 'a' 'b' }} {{ 1_000 }} {{ (1, 2) }} {{ 3 * 'ab' }}", {}),
    ("repr_strings", "{{ ['it\\'s', \"d\\\"q\", 'both\\'\"', 'back\\\\slash', 'ü'] }}", {}),
    ("print_values", "{{ none }} {{ true }} {{ 1.0 }} {{ 2.50 }} {{ 1e16 }} {{ 1.5e-5 }} {{ 123456789.123 }} "
                     "{{ 0.0001 }} {{ -0.5 }} {{ d }} {{ f }}", {"d": {"k": [None, False]}, "f": 2.0}),
    ("compare", "{{ 1 < 2 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} "
                "{{ 3 not in [1] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 != 2 }} {{ true == 1 }} {{ [1, 2] == [1, 2] }} "
                "{{ 2 >= 2 }} {{ 'b' <= 'a' }}", {}),
    ("logic", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not none }} {{ none or [] }} [{{ 'a' if false }}] "
              "{{ 'a' if false else 'b' }} {{ not 1 == 2 }} {{ 'A' if 0 else 'B' if 1 else 'C' }}", {}),
    ("precedence", "{% if not foo is defined %}nd{% endif %} {{ -2|abs }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} "
                   "{{ 'x' ~ 1 * 2 }} {{ not true and false }}", {}),
    ("err_concat_precedence", "{{ 'x' ~ 1 + 2 }}", {}),
    ("filters", "{{ ' x '|trim }}|{{ xs|length }}|{{ s|upper }}|{{ s|lower }}|{{ xs|first }}|{{ xs|last }}|"
                "{{ nope|default('d') }}|{{ ''|default('e', true) }}|{{ ''|default('e') }}|{{ xs|join(', ') }}|"
                "{{ s|replace('l', '_') }}|{{ 3|string + 'x' }}|{{ '42'|int + 1 }}|{{ 'x'|int }}|{{ d|list }}|"
                "{{ d|items|list }}|{{ xs|reverse|list }}|{{ s|title }}|{{ s|capitalize }}|{{ s|length }}|"
                "{{ xs|count }}|{{ '3.5'|float }}|{{ xs|sum }}|{{ xs|max }}|{{ xs|min }}|{{ [3, 1, 2]|sort }}|"
                "{{ [1, 1, 2]|unique|list }}|{{ 'a b c'|wordcount }}|{{ xs|join }}|{{ -3|abs }}|{{ d|dictsort }}",
     {"xs": [1, 2, 3], "s": "hello wORLD", "d": {"b": 1, "a": 2}}),
    ("tojson", "{{ obj|tojson }}\n{{ obj|tojson(indent=2) }}\n{{ obj|tojson(sort_keys=true) }}\n"
               "{{ 'é\"<>&\\n\\u0001'|tojson }}\n{{ [1.0, 1e-7, 1e20, 3.14, -0.0]|tojson }}\n{{ {}|tojson }} "
               "{{ []|tojson(indent=2) }} {{ none|tojson }} {{ [[]]|tojson(indent=4) }}",
     {"obj": {"b": 1, "a": [1, {"c": None, "d": True}], "e": "ü"}}),
    ("select_map", "{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|join('|') }} "
                   "{{ msgs|rejectattr('role', 'eq', 'user')|list|length }} {{ msgs|map(attribute='role')|list }} "
                   "{{ msgs|selectattr('tool')|list|length }} {{ [1, 2, 3, 4]|select('odd')|list }} "
                   "{{ ['a', 'B']|map('upper')|list }} {{ msgs|selectattr('role', '==', 'system')|first }} "
                   "{{ [0, 1, '', 'x']|select|list }} {{ [0, 1, '', 'x']|reject|list }}", MSGS),
    ("tests", "{{ none is none }} {{ 1 is not none }} {{ x is defined }} {{ y is undefined }} {{ 's' is string }} "
              "{{ {} is mapping }} {{ [] is iterable }} {{ 's' is iterable }} {{ [] is sequence }} {{ 1 is number }} "
              "{{ true is true }} {{ false is false }} {{ 1 is true }} {{ 4 is even }} {{ 3 is odd }} "
              "{{ 9 is divisibleby 3 }} {{ 'a' is in ['a'] }} {{ 1 is integer }} {{ 1.0 is float }} {{ 2 is eq 2 }} "
              "{{ 's' is mapping }} {{ 1 is string }} {{ x is iterable }} {{ none is string }} {{ true is boolean }}",
     {"x": [1]}),
    ("dict_methods", "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'def') }} {{ d.keys()|list }} "
                     "{{ d.values()|list }} {% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %} {{ d['a'] }} {{ d.a }}"
                     " {{ d.c[0] }} {{ d['c'].0 }}", D),
    ("undefined", "[{{ nope }}][{{ d.nope }}][{{ d['nope'] }}][{{ nope is defined }}][{% for x in nope %}x{% endfor %}]"
                  "[{{ nope|length }}]{% if not nope %}falsy{% endif %}[{{ none.x }}][{{ d.nope is defined }}]"
                  "[{{ nope == nope }}][{{ nope ~ 'x' }}]", D),
    ("set_block", "{% set x %}hello {{ name }}{% endset %}[{{ x }}]", {"name": "bob"}),
    ("macro", "{% macro greet(n, p='Hi') %}{{ p }} {{ n }}{% endmacro %}{{ greet('A') }}/{{ greet('B', 'Yo') }}/"
              "{{ greet(n='C', p='Hey') }}/{{ greet() }}", {}),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = (3, 4) %}{{ c }}", {}),
    ("range", "{% for i in range(3) %}{{ i }}{% endfor %}-{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}-"
              "{{ range(5, 0, -2)|list }}", {}),
    ("content_parts", "{% for m in msgs %}{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}"
                      "{% if c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %};{% endfor %}",
     {"msgs": [{"role": "user", "content": "plain"},
               {"role": "user", "content": [{"type": "text", "text": "part1 "}, {"type": "image"},
                                            {"type": "text", "text": "part2"}]}]}),
    ("unicode", "{{ u|length }} {{ u[0] }} {{ u ~ '!' }} {{ u|reverse }}", {"u": "ü中文"}),
    ("indent", "[{{ 'a\\nb\\n\\nc'|indent }}][{{ 'a\\nb'|indent(2, true) }}][{{ 'a\\n\\nb'|indent(2, blank=true) }}]", {}),
    ("dict_literal_ns", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{% set d = dict(x=1, y='z') %}"
                        "{{ d }}", {}),
    ("raise_ok", "{% if msgs|length == 0 %}{{ raise_exception('No messages') }}{% endif %}ok", MSGS),
    # Errors: Python raises too; the C++ side must throw dsv3::Error (never crash).
    ("err_raise", "{% if msgs|length == 0 %}{{ raise_exception('No messages') }}{% endif %}", {"msgs": []}),
    ("err_undefined_attr", "{{ nope.attr }}", {}),
    ("err_undefined_item", "{{ d.nope.deeper }}", D),
    ("err_add_types", "{{ 'a' + 1 }}", {}),
    ("err_if_empty", "{% if %}x{% endif %}", {}),
    ("err_for_no_iter", "{% for x in %}{% endfor %}", {}),
    ("err_stray_endif", "{% endif %}", {}),
    ("err_unclosed_var", "{{ x ", {}),
    ("err_unclosed_if", "{% if true %}no end", {}),
    ("err_dangling_op", "{{ 1 + }}", {}),
    ("err_unknown_filter", "{{ x|nofilter }}", {}),
    ("err_unknown_test", "{{ x is notatest }}", {}),
    ("err_unterminated_string", "{{ 'abc }}", {}),
    ("err_unknown_tag", "{% frobnicate %}", {}),
    ("err_iterate_int", "{% for x in 5 %}{% endfor %}", {}),
    ("err_set_attr_non_ns", "{% set d.x = 1 %}", D),
    ("err_compare_types", "{{ 1 < 'a' }}", {}),
    ("err_break_outside", "{% break %}", {}),
]

# Whole chat templates from files, rendered through the ChatTemplate API (bos/eos, tools=None, ...).
TOOL_CALLS = [{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Hangzhou\"}"}},
              {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Beijing\"}"}}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city.",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string", "description": "City name, e.g. 杭州"}},
                                                          "required": ["city"]}}}]
CONV_THINK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
              {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4"},
              {"role": "user", "content": "And 3+3?"}]
CONV_TOOLS = [{"role": "system", "content": "You can call tools."},
              {"role": "user", "content": "Weather in Hangzhou and Beijing?"},
              {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS},
              {"role": "tool", "content": "{\"temp_c\": 24}"}, {"role": "tool", "content": "{\"temp_c\": 18}"},
              {"role": "assistant", "content": "24°C and 18°C."}, {"role": "user", "content": "Thanks"}]
CONV_TOOLS_END = CONV_TOOLS[:5]
CONV_PREFIX = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>", "prefix": True}]
FILES = []
for f in ["deepseek_r1.jinja", "deepseek_v31.jinja", "chatml_tools.jinja", "plain_lines.jinja"]:
    for conv_name, conv in [("think", CONV_THINK), ("tools", CONV_TOOLS), ("tools_end", CONV_TOOLS_END)]:
        for agp in [True, False]:
            FILES.append((f"{f}:{conv_name}:{'gen' if agp else 'nogen'}", f, conv, agp, {}))
FILES += [
    ("deepseek_v31.jinja:thinking", "deepseek_v31.jinja", CONV_THINK, True, {"thinking": True}),
    ("deepseek_v31.jinja:tools_schema", "deepseek_v31.jinja", CONV_THINK, True, {"tools": TOOLS}),
    ("deepseek_v31.jinja:prefix", "deepseek_v31.jinja", CONV_PREFIX, False, {"thinking": True}),
    ("chatml_tools.jinja:tools_schema", "chatml_tools.jinja", CONV_TOOLS, True, {"tools": TOOLS}),
]


def render(template, variables):
    try:
        return {"text": env.from_string(template).render(**variables)}
    except (TemplateError, TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, SyntaxError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    inline = []
    for name, template, variables in INLINE:
        inline.append({"name": name, "template": template, "vars": variables, **render(template, variables)})
    files = []
    for name, path, messages, agp, extra in FILES:
        with open(os.path.join(HERE, path), encoding="utf-8") as fh:
            template = fh.read()
        variables = {"messages": messages, "tools": None, "documents": None, "add_generation_prompt": agp,
                     "bos_token": BOS, "eos_token": EOS, **extra}
        files.append({"name": name, "file": path, "messages": messages, "add_generation_prompt": agp,
                      "extra": extra, **render(template, variables)})
    out = {"made_by": f"make_cases.py with jinja2 {jinja2.__version__}", "inline": inline, "files": files}
    with open(os.path.join(HERE, "cases.json"), "w", encoding="utf-8") as fh:
        json.dump(out, fh, ensure_ascii=False, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
