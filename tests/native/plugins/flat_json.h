// Test helper: reads a flat JSON object of string, integer and boolean values, enough
// for the test stages' configs. Not part of the SDK.
#pragma once

#include <cctype>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

namespace test_util {

// Values are kept as their JSON text, strings without quotes. Throws std::invalid_argument.
inline std::map<std::string, std::string> ParseFlatJson(std::string_view json) {
  std::map<std::string, std::string> values;
  size_t i = 0;
  auto skip = [&] {
    while (i < json.size() && std::isspace(static_cast<unsigned char>(json[i])) != 0) ++i;
  };
  auto expect = [&](char c) {
    skip();
    if (i >= json.size() || json[i] != c) throw std::invalid_argument(std::string("expected '") + c + "'");
    ++i;
  };
  auto string = [&] {
    expect('"');
    size_t end = json.find('"', i);
    if (end == std::string_view::npos) throw std::invalid_argument("unterminated string");
    std::string text(json.substr(i, end - i));
    i = end + 1;
    return text;
  };
  expect('{');
  skip();
  while (i < json.size() && json[i] != '}') {
    std::string key = string();
    expect(':');
    skip();
    if (i < json.size() && json[i] == '"') {
      values[key] = string();
    } else {
      size_t start = i;
      while (i < json.size() && json[i] != ',' && json[i] != '}') ++i;
      std::string text(json.substr(start, i - start));
      while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0) text.pop_back();
      values[key] = text;
    }
    skip();
    if (i < json.size() && json[i] == ',') ++i;
    skip();
  }
  return values;
}

inline long ToInt(const std::string& key, const std::string& text) {
  char* end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0') throw std::invalid_argument("config." + key + " must be an integer");
  return value;
}

}  // namespace test_util
