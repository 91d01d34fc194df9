// A small command-line parser shared by the commands: --flag VALUE, --flag=VALUE,
// boolean switches and positional arguments, with a generated --help text.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace unibiomed::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ArgParser {
 public:
  ArgParser(std::string usage, std::string description);

  // Declares an option taking a value; `repeatable` collects every occurrence.
  ArgParser& option(const std::string& name, const std::string& value_name, const std::string& help,
                    std::optional<std::string> default_value = std::nullopt, bool repeatable = false);
  // Declares a boolean switch.
  ArgParser& flag(const std::string& name, const std::string& help);
  // Declares positional arguments for the help text; min/max are enforced.
  ArgParser& positional(const std::string& name, const std::string& help, size_t min_count, size_t max_count);

  // Parses; returns false when --help was given (the help was printed to stdout).
  // Throws UsageError on unknown options, missing values or wrong positional counts.
  bool parse(const std::vector<std::string>& args);

  bool has(const std::string& name) const;
  std::string get(const std::string& name) const;  // value or default; UsageError if neither
  std::optional<std::string> get_optional(const std::string& name) const;
  std::vector<std::string> get_all(const std::string& name) const;
  bool is_set(const std::string& flag_name) const;
  long get_int(const std::string& name) const;
  uint64_t get_seed(const std::string& name) const;  // an unsigned integer (random seeds)
  const std::vector<std::string>& positionals() const { return positionals_; }

  std::string help() const;

 private:
  struct Option {
    std::string value_name, help;
    std::optional<std::string> default_value;
    bool repeatable = false;
    bool is_flag = false;
  };
  std::string usage_, description_;
  std::vector<std::string> order_;
  std::map<std::string, Option> options_;
  std::map<std::string, std::vector<std::string>> values_;
  std::string positional_name_, positional_help_;
  size_t positional_min_ = 0, positional_max_ = 0;
  std::vector<std::string> positionals_;
};

}  // namespace unibiomed::cli
