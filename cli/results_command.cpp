// Placeholder until this command's module lands; replaced by the module's own implementation.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <iostream>
#include "cli/commands.h"
namespace unibiomed::cli {
int run_results_write(const Args&) {
  std::cerr << "unibiomed: this command is not available in this build yet\n";
  return kExitFailure;
}
}  // namespace unibiomed::cli
