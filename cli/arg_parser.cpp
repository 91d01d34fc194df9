// SPDX-License-Identifier: GPL-3.0-or-later
#include "cli/arg_parser.h"

#include <iostream>
#include <sstream>

namespace unibiomed::cli {

ArgParser::ArgParser(std::string usage, std::string description)
    : usage_(std::move(usage)), description_(std::move(description)) {
  flag("--help", "show this help and exit");
}

ArgParser& ArgParser::option(const std::string& name, const std::string& value_name, const std::string& help,
                             std::optional<std::string> default_value, bool repeatable) {
  order_.push_back(name);
  options_[name] = Option{value_name, help, std::move(default_value), repeatable, false};
  return *this;
}

ArgParser& ArgParser::flag(const std::string& name, const std::string& help) {
  order_.push_back(name);
  options_[name] = Option{"", help, std::nullopt, false, true};
  return *this;
}

ArgParser& ArgParser::positional(const std::string& name, const std::string& help, size_t min_count,
                                 size_t max_count) {
  positional_name_ = name;
  positional_help_ = help;
  positional_min_ = min_count;
  positional_max_ = max_count;
  return *this;
}

bool ArgParser::parse(const std::vector<std::string>& args) {
  bool only_positionals = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (only_positionals || a.size() < 2 || a[0] != '-' || a == "-") {
      positionals_.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positionals = true;
      continue;
    }
    std::string name = a, value;
    bool inline_value = false;
    if (auto eq = a.find('='); eq != std::string::npos && a.rfind("--", 0) == 0) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    auto it = options_.find(name);
    if (it == options_.end()) throw UsageError("unknown option '" + name + "'");
    if (it->second.is_flag) {
      if (inline_value) throw UsageError("option '" + name + "' takes no value");
      values_[name].push_back("1");
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= args.size()) throw UsageError("option '" + name + "' needs a value (" + it->second.value_name + ")");
      value = args[++i];
    }
    auto& slot = values_[name];
    if (!slot.empty() && !it->second.repeatable) throw UsageError("option '" + name + "' given more than once");
    slot.push_back(value);
  }
  if (is_set("--help")) {
    std::cout << help();
    return false;
  }
  if (positionals_.size() < positional_min_)
    throw UsageError("missing " + (positional_name_.empty() ? std::string("argument") : positional_name_));
  if (positionals_.size() > positional_max_)
    throw UsageError("unexpected argument '" + positionals_[positional_max_] + "'");
  return true;
}

bool ArgParser::has(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end() && !it->second.empty()) return true;
  auto o = options_.find(name);
  return o != options_.end() && o->second.default_value.has_value();
}

std::optional<std::string> ArgParser::get_optional(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end() && !it->second.empty()) return it->second.back();
  auto o = options_.find(name);
  if (o != options_.end()) return o->second.default_value;
  return std::nullopt;
}

std::string ArgParser::get(const std::string& name) const {
  auto v = get_optional(name);
  if (!v) throw UsageError("option '" + name + "' is required");
  return *v;
}

std::vector<std::string> ArgParser::get_all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

bool ArgParser::is_set(const std::string& flag_name) const {
  auto it = values_.find(flag_name);
  return it != values_.end() && !it->second.empty();
}

long ArgParser::get_int(const std::string& name) const {
  std::string v = get(name);
  try {
    size_t used = 0;
    long n = std::stol(v, &used);
    if (used != v.size()) throw std::invalid_argument(v);
    return n;
  } catch (const std::exception&) {
    throw UsageError("option '" + name + "' needs an integer, got '" + v + "'");
  }
}

uint64_t ArgParser::get_seed(const std::string& name) const {
  const std::string v = get(name);
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 19)
    throw UsageError(name + " must be an unsigned integer, not '" + v + "'");
  return std::stoull(v);
}

std::string ArgParser::help() const {
  std::ostringstream out;
  out << "usage: " << usage_ << "\n\n" << description_ << "\n";
  if (!positional_name_.empty()) out << "\n  " << positional_name_ << "\n      " << positional_help_ << "\n";
  out << "\noptions:\n";
  for (const auto& name : order_) {
    const Option& o = options_.at(name);
    std::string head = name + (o.is_flag ? "" : " " + o.value_name);
    out << "  " << head << "\n      " << o.help;
    if (o.default_value) out << " (default: " << *o.default_value << ")";
    if (o.repeatable) out << " (may be repeated)";
    out << "\n";
  }
  return out.str();
}

}  // namespace unibiomed::cli
