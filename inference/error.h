// The one error type that leaves inference/: says which file, tensor or setting is wrong.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <stdexcept>
#include <string>

namespace unibiomed::inference {

class InferenceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace unibiomed::inference
