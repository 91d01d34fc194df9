// `unibiomed`: the node's command-line tool on files. Dispatches to one function per command.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "cli/arg_parser.h"
#include "cli/commands.h"

namespace {

using unibiomed::cli::Args;

struct Command {
  const char* words;  // e.g. "model tokenize"
  int (*run)(const Args&);
  const char* summary;
};

const Command kCommands[] = {
    {"analyze", unibiomed::cli::run_analyze, "analyse DICOM files or folders into grounded findings (SEG + SR)"},
    {"ask", unibiomed::cli::run_ask, "ask the model a question about one image (PNG, JPEG or DICOM)"},
    {"dicom inspect", unibiomed::cli::run_dicom_inspect, "list series, modality class, geometry and problems"},
    {"dicom render", unibiomed::cli::run_dicom_render, "write the model's views of a series as PNG with provenance"},
    {"results write", unibiomed::cli::run_results_write, "write SEG + SR from a label map and findings"},
    {"samples write", unibiomed::cli::run_samples_write, "write the synthetic sample studies"},
    {"model tokenize", unibiomed::cli::run_model_tokenize, "print the token ids of a text as JSON"},
    {"model generate", unibiomed::cli::run_model_generate, "greedy text generation with the language model"},
    {"model make-random", unibiomed::cli::run_model_make_random, "write a random checkpoint of the real layout"},
    {"model info", unibiomed::cli::run_model_info, "architecture, parameter counts, dtypes, weights hash"},
    {"model train", unibiomed::cli::run_model_train, "train the demo checkpoint on synthetic studies"},
    {"model evaluate", unibiomed::cli::run_model_evaluate, "Dice and answer accuracy on held-out synthetic examples"},
};

void print_overview(std::ostream& out) {
  out << "usage: unibiomed COMMAND [ARGS...]   (unibiomed COMMAND --help for details)\n\ncommands:\n";
  for (const auto& c : kCommands) {
    std::string w = c.words;
    out << "  " << w << std::string(w.size() < 20 ? 20 - w.size() : 1, ' ') << c.summary << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  if (words.empty() || words[0] == "--help" || words[0] == "-h" || words[0] == "help") {
    print_overview(words.empty() ? std::cerr : std::cout);
    return words.empty() ? unibiomed::cli::kExitUsage : unibiomed::cli::kExitOk;
  }
  if (words[0] == "--version") {
    std::cout << "unibiomed " << UNIBIOMED_VERSION << "\n";
    return 0;
  }
  // Longest match of command words.
  const Command* best = nullptr;
  size_t best_len = 0;
  for (const auto& c : kCommands) {
    std::vector<std::string> cw;
    for (const char* p = c.words; *p;) {
      const char* sp = std::strchr(p, ' ');
      cw.emplace_back(p, sp ? sp : p + std::strlen(p));
      p = sp ? sp + 1 : p + std::strlen(p);
    }
    if (cw.size() <= words.size() && std::equal(cw.begin(), cw.end(), words.begin()) && cw.size() > best_len) {
      best = &c;
      best_len = cw.size();
    }
  }
  if (!best) {
    std::cerr << "unibiomed: unknown command '" << words[0] << "'\n";
    print_overview(std::cerr);
    return unibiomed::cli::kExitUsage;
  }
  Args rest(words.begin() + static_cast<long>(best_len), words.end());
  try {
    return best->run(rest);
  } catch (const unibiomed::cli::UsageError& e) {
    std::cerr << "unibiomed " << best->words << ": " << e.what() << " (see --help)\n";
    return unibiomed::cli::kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "unibiomed " << best->words << ": error: " << e.what() << "\n";
    return unibiomed::cli::kExitFailure;
  }
}
