// Stop strings over streamed text: text is released as soon as it cannot be the start of a
// stop string; when a stop string appears, the text before it is released and matching ends.
#pragma once
#include <string>
#include <vector>

namespace dsv3 {

class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Adds generated text; returns what may be shown now.
  std::string push(const std::string& piece);
  // At the end of generation: whatever was held back.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace dsv3
