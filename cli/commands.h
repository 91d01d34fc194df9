// The `unibiomed` command line: one function per command group, each in its own file.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <string>
#include <vector>

namespace unibiomed::cli {

// Exit codes that scripts can rely on (documented in the README).
enum ExitCode : int {
  kExitOk = 0,          // everything asked for was done
  kExitFailure = 1,     // the operation failed (see the message)
  kExitUsage = 2,       // bad command line
  kExitBadInput = 3,    // an input file or folder is unreadable or invalid
  kExitModelError = 4,  // the model could not be loaded
  kExitPartial = 5,     // some series/items failed, the rest was delivered
};

using Args = std::vector<std::string>;  // arguments after the command words

int run_model_tokenize(const Args& args);
int run_model_generate(const Args& args);
int run_model_make_random(const Args& args);
int run_model_train(const Args& args);
int run_model_evaluate(const Args& args);
int run_model_info(const Args& args);
int run_ask(const Args& args);
int run_dicom_inspect(const Args& args);
int run_dicom_render(const Args& args);
int run_samples_write(const Args& args);
int run_results_write(const Args& args);
int run_analyze(const Args& args);

}  // namespace unibiomed::cli
