// The chat page served at GET /: plain HTML + JS, no build step.
#pragma once
#include <string>

namespace dsv3::server {
const std::string& web_page();
}
