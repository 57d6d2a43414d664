// OpenAI-style errors: {"error": {"message", "type", "param", "code"}} with an HTTP status.
#pragma once
#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace dsv3::server {

struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status_, std::string message, std::string type_, std::string param_ = "", std::string code_ = "")
      : std::runtime_error(std::move(message)), status(status_), type(std::move(type_)), param(std::move(param_)),
        code(std::move(code_)) {}
};

// 400 invalid_request_error naming the offending parameter.
[[noreturn]] inline void bad_request(const std::string& param, const std::string& message,
                                     const std::string& code = "invalid_value") {
  throw ApiError(400, message, "invalid_request_error", param, code);
}

inline nlohmann::json error_body(int status, const std::string& message, const std::string& type,
                                 const std::string& param = "", const std::string& code = "") {
  (void)status;
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
            {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code)}}}};
}
inline nlohmann::json error_body(const ApiError& e) { return error_body(e.status, e.what(), e.type, e.param, e.code); }

// JSON text that never throws on invalid UTF-8 (replaced by U+FFFD).
inline std::string to_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
inline std::string to_text(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace dsv3::server
