// The one error type leaving config/: a task-rules file that cannot be read, is not JSON, or
// breaks the schema of TASK-RULES.md. The message names the file (or "built-in defaults") and
// the place in it, e.g. "rules[2].tasks[0].targets[1]".
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <stdexcept>
#include <string>

namespace unibiomed::config {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace unibiomed::config
