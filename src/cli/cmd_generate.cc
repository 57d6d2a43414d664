// dsv3 generate: one completion, streamed (or one JSON object with --json).
// dsv3 chat: interactive chat with the model's chat template, like the official demo's
// --interactive mode.
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "cli/command.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/log.h"
#include "runtime/engine.h"
#include "runtime/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::cli {
namespace {

struct GenOpts {
  ModelArgs model;
  std::string prompt, prompt_ids, system, speculative;
  int64_t n = 128;
  float temperature = 0.0f, top_p = 1.0f, min_p = 0.0f, repetition_penalty = 1.0f;
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;
  int top_k = 0;
  std::string draft_vocab = "auto";
  uint64_t seed = 0;
  bool chat = false, ignore_eos = false, json = false, no_bos = false;
  std::vector<std::string> stop;
};

void add_sampling_args(CLI::App& app, GenOpts& o) {
  app.add_option("-n,--max-tokens", o.n, "Tokens to generate")->capture_default_str();
  app.add_option("--temperature", o.temperature, "0 = greedy (the official demo's baseline)")->capture_default_str();
  app.add_option("--top-p", o.top_p, "Nucleus sampling")->capture_default_str();
  app.add_option("--top-k", o.top_k, "Keep the K most likely tokens (0 = off)")->capture_default_str();
  app.add_option("--min-p", o.min_p, "Drop tokens below min_p * p(best)")->capture_default_str();
  app.add_option("--repetition-penalty", o.repetition_penalty, "HF-style repetition penalty")->capture_default_str();
  app.add_option("--presence-penalty", o.presence_penalty, "OpenAI-style presence penalty")->capture_default_str();
  app.add_option("--frequency-penalty", o.frequency_penalty, "OpenAI-style frequency penalty")->capture_default_str();
  app.add_option("--seed", o.seed, "Sampling seed (same seed, same output)")->capture_default_str();
  app.add_option("--stop", o.stop, "Stop when this text appears (repeatable)");
  app.add_flag("--ignore-eos", o.ignore_eos, "Keep generating past end-of-sentence");
  app.add_option("--speculative", o.speculative, "'mtp': MTP speculative decoding (greedy output is unchanged)");
  app.add_option("--draft-vocab", o.draft_vocab,
                 "With --speculative mtp: drafts pick among the first N token ids only (BPE ids follow merge "
                 "order, so these are the frequent tokens), a cheaper draft head; 0 = all ids; auto = the first "
                 "quarter, or all once more than 1/16 of the output lies past it (the output is the same either way)")
      ->capture_default_str();
}

GenerateOptions to_options(const GenOpts& o) {
  GenerateOptions g;
  g.max_tokens = o.n;
  g.sampling.temperature = o.temperature;
  g.sampling.top_p = o.top_p;
  g.sampling.top_k = o.top_k;
  g.sampling.min_p = o.min_p;
  g.sampling.repetition_penalty = o.repetition_penalty;
  g.sampling.presence_penalty = o.presence_penalty;
  g.sampling.frequency_penalty = o.frequency_penalty;
  g.sampling.seed = o.seed;
  g.ignore_eos = o.ignore_eos;
  if (!o.speculative.empty() && o.speculative != "mtp") fail("--speculative: only 'mtp' is supported");
  g.speculative = o.speculative == "mtp";
  if (o.draft_vocab != "auto") {
    const std::string& t = o.draft_vocab;
    int64_t d = -1;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
    if (ec != std::errc() || end != t.data() + t.size() || d < 0)
      fail("--draft-vocab: expected auto or a count >= 0 (0 = all ids), got '{}'", t);
    g.draft_vocab = d;
  }
  return g;
}

// Runs one request to completion on a fresh or shared engine, streaming text through `on_text`.
struct RunResult {
  std::vector<int32_t> tokens;
  FinishInfo info;
};
RunResult run_request(Engine& engine, std::vector<int32_t> prompt, const GenerateOptions& g, const Tokenizer* tok,
                      StopStrings& stops, const std::function<void(const std::string&)>& on_text) {
  RunResult r;
  std::unique_ptr<StreamDecoder> dec = tok ? std::make_unique<StreamDecoder>(*tok, true) : nullptr;
  bool finished = false;
  RequestCallbacks cb;
  cb.on_token = [&](int32_t t, const TokenLogprob*) {
    r.tokens.push_back(t);
    if (!dec) return true;
    const std::string shown = stops.push(dec->push(t));
    if (!shown.empty()) on_text(shown);
    return !stops.stopped();
  };
  cb.on_finish = [&](const FinishInfo& f) {
    r.info = f;
    finished = true;
  };
  engine.submit(std::move(prompt), g, std::move(cb));
  while (!finished) engine.step();
  if (dec) {
    const std::string rest = stops.push(dec->flush()) + stops.flush();
    if (!rest.empty()) on_text(rest);
  }
  if (r.info.reason == "error") fail("generation failed: {}", r.info.error);
  return r;
}

int run_generate(const GenOpts& o) {
  if (o.prompt.empty() == o.prompt_ids.empty()) fail("give exactly one of -p/--prompt and --prompt-ids");
  GenerateOptions g = to_options(o);
  auto model = load_model(o.model);
  std::unique_ptr<Tokenizer> tok;
  if (Tokenizer::available(o.model.dir)) {
    tok = Tokenizer::load(o.model.dir);
    tok->set_vocab_limit(static_cast<int32_t>(model->config().vocab_size));
  }
  std::vector<int32_t> prompt;
  if (!o.prompt_ids.empty()) {
    prompt = parse_ids(o.prompt_ids);
  } else {
    if (!tok) fail("{}: no tokenizer.json; use --prompt-ids", o.model.dir);
    if (o.chat) {
      nlohmann::json msgs = nlohmann::json::array();
      if (!o.system.empty()) msgs.push_back({{"role", "system"}, {"content", o.system}});
      msgs.push_back({{"role", "user"}, {"content", o.prompt}});
      prompt = tok->encode(ChatTemplate::load(o.model.dir).render(msgs, true));
    } else {
      if (!o.no_bos) prompt.push_back(static_cast<int32_t>(model->config().bos_token_id));
      tok->encode_into(o.prompt, prompt, false);
    }
  }
  Engine engine(*model, EngineOptions{});
  StopStrings stops(o.stop);
  std::string text;
  const bool stream = !o.json && tok;
  RunResult r = run_request(engine, prompt, g, tok.get(), stops, [&](const std::string& s) {
    text += s;
    if (stream) {
      fwrite(s.data(), 1, s.size(), stdout);
      fflush(stdout);
    }
  });
  const FinishInfo& f = r.info;
  const double pre_tps = f.prefill_seconds > 0 ? static_cast<double>(f.prompt_tokens) / f.prefill_seconds : 0;
  const double dec_tps = f.decode_seconds > 0 && f.completion_tokens > 1
                             ? static_cast<double>(f.completion_tokens - 1) / f.decode_seconds : 0;
  if (o.json) {
    nlohmann::ordered_json j;
    j["tokens"] = r.tokens;
    j["text"] = tok ? nlohmann::json(text) : nlohmann::json(nullptr);
    j["finish_reason"] = f.reason;
    j["mtp"] = {{"drafted", f.drafted}, {"accepted", f.accepted}};
    j["timings"] = {{"prompt_tokens", f.prompt_tokens}, {"completion_tokens", f.completion_tokens},
                    {"prefill_seconds", f.prefill_seconds}, {"decode_seconds", f.decode_seconds},
                    {"prefill_tok_s", pre_tps}, {"decode_tok_s", dec_tps}};
    fmt::print("{}\n", j.dump());
  } else {
    if (!tok) {
      std::string ids;
      for (int32_t t : r.tokens) ids += (ids.empty() ? "" : ",") + std::to_string(t);
      fmt::print("{}\n", ids);
    } else {
      fmt::print("\n");
    }
    fflush(stdout);  // before the stats line on stderr
    log_info("[{} prompt tokens, {:.1f} tok/s prefill; {} generated, {:.1f} tok/s decode; finish: {}{}]", f.prompt_tokens,
             pre_tps, f.completion_tokens, dec_tps, f.reason,
             g.speculative ? fmt::format("; mtp drafted {} accepted {}", f.drafted, f.accepted) : "");
  }
  return 0;
}

int run_chat(const GenOpts& o) {
  GenerateOptions g = to_options(o);
  auto model = load_model(o.model);
  if (!Tokenizer::available(o.model.dir)) fail("{}: chat needs tokenizer.json and tokenizer_config.json", o.model.dir);
  auto tok = Tokenizer::load(o.model.dir);
  tok->set_vocab_limit(static_cast<int32_t>(model->config().vocab_size));
  const ChatTemplate tmpl = ChatTemplate::load(o.model.dir);
  Engine engine(*model, EngineOptions{});  // shared across turns: the prefix cache reuses history
  nlohmann::json history = nlohmann::json::array();
  if (!o.system.empty()) history.push_back({{"role", "system"}, {"content", o.system}});
  const bool tty = isatty(STDIN_FILENO);
  fmt::print(stderr, "dsv3 chat: {} - /exit to quit, /clear to start over\n", o.model.dir);
  std::string line;
  while (true) {
    if (tty) fmt::print(">>> "), fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/clear") {
      history = nlohmann::json::array();
      if (!o.system.empty()) history.push_back({{"role", "system"}, {"content", o.system}});
      fmt::print(stderr, "(history cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    history.push_back({{"role", "user"}, {"content", line}});
    std::vector<int32_t> prompt = tok->encode(tmpl.render(history, true));
    if (static_cast<int64_t>(prompt.size()) >= model->ctx()) {
      fmt::print(stderr, "error: the conversation ({} tokens) no longer fits the context of {}; /clear\n",
                 prompt.size(), model->ctx());
      history.erase(history.end() - 1);
      continue;
    }
    StopStrings stops(o.stop);
    std::string answer;
    RunResult r = run_request(engine, prompt, g, tok.get(), stops, [&](const std::string& s) {
      answer += s;
      fwrite(s.data(), 1, s.size(), stdout);
      fflush(stdout);
    });
    fmt::print("\n");
    fflush(stdout);  // before the stats line on stderr
    const FinishInfo& f = r.info;
    const double tps = f.decode_seconds > 0 && f.completion_tokens > 1
                           ? static_cast<double>(f.completion_tokens - 1) / f.decode_seconds : 0;
    // With --speculative mtp, how many of the MTP head's drafts the main model accepted.
    const std::string mtp = g.speculative ? fmt::format(", MTP accepted {}/{} drafts ({:.0f}%)", f.accepted, f.drafted,
                                                        f.drafted ? 100.0 * f.accepted / f.drafted : 0.0)
                                          : "";
    fmt::print(stderr, "[{} tokens, {:.1f} tok/s, {} prompt tokens ({} cached){}]\n", f.completion_tokens, tps,
               f.prompt_tokens, f.cached_tokens, mtp);
    history.push_back({{"role", "assistant"}, {"content", answer}});
  }
  return 0;
}

const bool reg_generate = register_command(
    {"generate", "Generate a completion (streams text; --json for one JSON object)", [](CLI::App& app) {
       auto o = std::make_shared<GenOpts>();
       add_model_args(app, o->model);
       app.add_option("-p,--prompt", o->prompt, "Prompt text (needs tokenizer.json in the model directory)");
       app.add_option("--prompt-ids", o->prompt_ids, "Prompt as comma-separated token ids");
       app.add_flag("--chat", o->chat, "Wrap the prompt as a user message with the chat template");
       app.add_option("--system", o->system, "System prompt (with --chat)");
       app.add_flag("--no-bos", o->no_bos, "Do not prepend BOS to a plain -p prompt");
       app.add_flag("--json", o->json, "Print {tokens, text, finish_reason, mtp, timings}");
       add_sampling_args(app, *o);
       return [o] { return run_generate(*o); };
     }});

const bool reg_chat = register_command(
    {"chat", "Interactive chat (/exit, /clear); streams answers and prints tok/s", [](CLI::App& app) {
       auto o = std::make_shared<GenOpts>();
       o->n = 512;
       add_model_args(app, o->model);
       app.add_option("--system", o->system, "System prompt");
       add_sampling_args(app, *o);
       return [o] { return run_chat(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
