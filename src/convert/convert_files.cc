#include "convert/convert_files.h"

#include "model/config.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"
#include "io/mapped_file.h"

namespace dsv3 {

namespace fs = std::filesystem;

std::string fp8_quantization_config_json() {
  return R"({"activation_scheme":"dynamic","fmt":"e4m3","quant_method":"fp8","weight_block_size":[128,128]})";
}

std::string converted_config(const std::string& in_config_path, const ConvertOptions& opt) {
  const ConvertTo to = opt.to;
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(read_text_file(in_config_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed JSON: {}", in_config_path, e.what());
  }
  if (!j.is_object()) fail("{}: not a JSON object", in_config_path);
  if (to == ConvertTo::kBF16) {
    j.erase("quantization_config");
  } else if (to == ConvertTo::kINT4) {
    // Module-name patterns of the Linears that keep their dtype (compressed-tensors `ignore`).
    std::vector<std::string> ignore = {"lm_head", "re:.*mlp\\.gate$", "re:.*eh_proj$", "re:.*shared_head\\.head$"};
    if (!opt.int4_all)
      for (const char* p : {"re:.*self_attn\\..*", "re:.*shared_experts\\..*", "re:.*mlp\\.(gate|up|down)_proj$"})
        ignore.push_back(p);
    j["quantization_config"] = nlohmann::ordered_json::parse(compressed_tensors_config_json(opt.group, ignore));
  } else
    j["quantization_config"] = nlohmann::ordered_json::parse(fp8_quantization_config_json());
  return j.dump(2) + "\n";
}

namespace {
bool ends_with(const std::string& s, std::string_view suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
// Weight formats other than safetensors (e.g. original PyTorch .bin files) are not copied:
// they are as large as the checkpoint and would not match the converted dtype.
bool is_weight_file(const std::string& name) {
  for (const char* ext : {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx"})
    if (ends_with(name, ext)) return true;
  return ends_with(name, ".partial");
}
constexpr uintmax_t kMaxAuxFile = 256ull << 20;
}  // namespace

void copy_aux_files(const std::string& in_dir, const std::string& out_dir, const std::string& skip) {
  const fs::path in = fs::path(in_dir);
  std::error_code ec;
  fs::recursive_directory_iterator it(in, ec), end;
  if (ec) fail("{}: cannot list: {}", in_dir, ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) fail("{}: cannot list: {}", in_dir, ec.message());
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    const bool hidden = !name.empty() && name[0] == '.';
    if (hidden || (!skip.empty() && fs::weakly_canonical(p) == fs::path(skip))) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_directory()) continue;
    if (!it->is_regular_file()) continue;
    const fs::path rel = fs::relative(p, in);
    if (rel == "config.json" || rel == "model.safetensors.index.json") continue;
    if (is_weight_file(name)) {
      if (!ends_with(name, ".safetensors") && !ends_with(name, ".partial"))
        log_warn("{}: weight file in another format not copied", p.string());
      continue;
    }
    if (it->file_size() > kMaxAuxFile) {
      log_warn("{}: {} MB non-weight file not copied (too large)", p.string(), it->file_size() >> 20);
      continue;
    }
    const fs::path dst = fs::path(out_dir) / rel;
    fs::create_directories(dst.parent_path(), ec);
    if (ec) fail("{}: cannot create: {}", dst.parent_path().string(), ec.message());
    fs::copy_file(p, dst, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      std::error_code ec2;
      fs::remove(dst, ec2);  // never leave a truncated copy behind
      fail("{}: cannot copy to {}: {}", p.string(), dst.string(), ec.message());
    }
  }
}

std::string ConvertState::to_json() const {
  nlohmann::ordered_json j;
  j["input"] = input;
  j["to"] = to;
  j["shards"] = shards;
  return j.dump(2) + "\n";
}

bool ConvertState::parse(const std::string& text, ConvertState* out) {
  try {
    const auto j = nlohmann::json::parse(text);
    out->input = j.at("input").get<std::string>();
    out->to = j.at("to").get<std::string>();
    out->shards = j.at("shards").get<std::map<std::string, std::string>>();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace dsv3
