// `unibiomed model tokenize` and `unibiomed model generate`: the tokenizer and the language model
// alone, for checking a model folder (and the implementation) against the reference.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <optional>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "inference/checkpoint_layout.h"
#include "inference/device.h"
#include "inference/error.h"
#include "inference/generation.h"
#include "inference/model_config.h"
#include "inference/prompt.h"
#include "inference/qwen2.h"
#include "inference/runtime.h"
#include "inference/tokenizer.h"
#include "inference/weights.h"

namespace unibiomed::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A libtorch error of `step` as one line (device.h throw_inference_error): out of memory on the
// device says so and what to change; any other error loses libtorch's C++ backtrace.
std::string torch_failure(const std::string& step, const c10::Error& error, const std::string& device) {
  try {
    inference::throw_inference_error(step, error, device);
  } catch (const inference::InferenceError& e) {
    return e.what();
  }
  return step;  // not reached: throw_inference_error always throws
}

std::vector<int64_t> parse_ids(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception&) {
    throw UsageError("--prompt-ids must be a JSON array of token ids, e.g. [1,2,3]");
  }
  if (!j.is_array() || j.empty()) throw UsageError("--prompt-ids must be a non-empty JSON array of token ids");
  std::vector<int64_t> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer()) throw UsageError("--prompt-ids: " + v.dump() + " is not an integer token id");
    ids.push_back(v.get<int64_t>());
  }
  return ids;
}

}  // namespace

int run_model_tokenize(const Args& args) {
  ArgParser p("unibiomed model tokenize [options] DIR TEXT",
              "Prints the token ids of TEXT as a JSON array, as the model's tokenizer (Qwen2 byte-level BPE with the "
              "model's added tokens) encodes it. DIR needs only the tokenizer files (vocab.json + merges.txt or "
              "tokenizer.json, tokenizer_config.json / added_tokens.json). TEXT is tokenized as it is: no chat "
              "template, no BOS.");
  p.flag("--tokens", "print {\"ids\": [...], \"tokens\": [...]} with each id's text as well")
      .positional("DIR TEXT", "tokenizer folder and the text", 2, 2);
  if (!p.parse(args)) return kExitOk;
  std::optional<inference::Tokenizer> tokenizer;
  try {
    tokenizer = inference::Tokenizer::load(p.positionals()[0]);
  } catch (const inference::InferenceError& e) {
    std::cerr << "unibiomed model tokenize: " << e.what() << "\n";
    return kExitBadInput;
  }
  std::vector<int64_t> ids;
  try {
    ids = tokenizer->encode(p.positionals()[1]);
  } catch (const inference::InferenceError& e) {
    std::cerr << "unibiomed model tokenize: " << e.what() << "\n";
    return kExitBadInput;
  }
  if (p.is_set("--tokens")) {
    json tokens = json::array();
    for (int64_t id : ids) tokens.push_back(tokenizer->decode({id}));
    std::cout << json{{"ids", ids}, {"tokens", tokens}}.dump() << "\n";
  } else {
    std::cout << json(ids).dump() << "\n";
  }
  return kExitOk;
}

int run_model_generate(const Args& args) {
  ArgParser p("unibiomed model generate [options] DIR (--prompt-ids JSON | --text TEXT)",
              "Greedy text generation with the model's language model alone (no image): a check of the language "
              "model. Prints {\"ids\": [...], \"text\": \"...\", \"stop_reason\": \"...\"} where ids are the newly "
              "generated tokens only and text is their decoding (special tokens kept). --text is tokenized as it "
              "is, without the chat template; wrap it yourself (phi3_chat: \"<|user|>\\nTEXT<|end|>\\n<|assistant|>\\n\") "
              "to ask the model a question. Generation stops at the tokenizer's eos token, when the text ends with "
              "a stop word (the template's: \"<|end|>\" for phi3_chat), or after --max-new-tokens. DIR holds "
              "config.json, model.safetensors (or a sharded index) and the tokenizer files.");
  p.option("--prompt-ids", "JSON", "prompt token ids, e.g. [1,2,3]")
      .option("--text", "TEXT", "prompt text, tokenized as it is")
      .option("--max-new-tokens", "N", "generation limit", std::string("2048"))
      .option("--stop-word", "S", "stop when the text (newlines removed) ends with S; replaces the "
              "template's stop words", std::nullopt, true)
      .flag("--no-stop-words", "stop only at eos or the limit")
      .option("--tokenizer", "DIR", "tokenizer files from another folder (default: DIR)")
      .option("--device", "D", "cpu, cuda or cuda:N", std::string("cpu"))
      .option("--dtype", "T", "auto (bfloat16 on CUDA and on a CPU with bfloat16 dot products, else float32), float32, bfloat16, float16", std::string("auto"))
      .option("--threads", "N", "CPU threads (0 = every core this process may use)", std::string("0"))
      .positional("DIR", "model folder", 1, 1);
  if (!p.parse(args)) return kExitOk;
  const bool have_ids = p.has("--prompt-ids"), have_text = p.has("--text");
  if (have_ids == have_text) throw UsageError("give exactly one of --prompt-ids and --text");
  const long max_new = p.get_int("--max-new-tokens");
  if (max_new < 1 || max_new > 1'000'000) throw UsageError("--max-new-tokens must be between 1 and 1000000");
  const long threads = p.get_int("--threads");
  if (threads < 0 || threads > 4096) throw UsageError("--threads must be 0 or a positive count");
  if (p.is_set("--no-stop-words") && p.has("--stop-word")) throw UsageError("--stop-word and --no-stop-words conflict");
  std::vector<int64_t> ids;
  if (have_ids) ids = parse_ids(p.get("--prompt-ids"));

  const fs::path dir = p.positionals()[0];
  if (!fs::is_directory(dir)) {
    std::cerr << "unibiomed model generate: model folder " << dir.string() << " does not exist\n";
    return kExitBadInput;
  }
  const fs::path tokenizer_dir = p.has("--tokenizer") ? fs::path(p.get("--tokenizer")) : dir;
  inference::configure_cpu_threads(static_cast<int>(threads));

  std::optional<inference::ModelConfig> config;
  std::optional<inference::Tokenizer> tokenizer;
  std::unique_ptr<inference::Weights> weights;
  std::unique_ptr<inference::Qwen2Model> model;
  try {
    config = inference::ModelConfig::load(dir / "config.json");
    tokenizer = inference::Tokenizer::load(tokenizer_dir);
    if (!config->special_token_ids.empty())
      tokenizer->check_token_ids(config->special_token_ids, (dir / "config.json").string());
    const auto options = inference::ComputeOptions::from_strings(p.get("--device"), p.get("--dtype"));
    weights = std::make_unique<inference::Weights>(inference::Checkpoint::open(dir), options);
    model = std::make_unique<inference::Qwen2Model>(*weights, config->llm);
  } catch (const inference::InferenceError& e) {
    std::cerr << "unibiomed model generate: cannot load the language model: " << e.what() << "\n";
    return kExitModelError;
  } catch (const c10::Error& e) {
    std::cerr << "unibiomed model generate: " << torch_failure("loading the language model", e, p.get("--device"))
              << "\n";
    return kExitModelError;
  }
  // Tensors of the language model that it did not use point at a checkpoint of another layout.
  for (const auto& name : weights->unused())
    if (inference::block_of(name) == inference::CheckpointBlock::kLanguage)
      std::cerr << "unibiomed model generate: warning: checkpoint tensor '" << name << "' is not used\n";

  if (have_text) {
    try {
      ids = tokenizer->encode(p.get("--text"));
    } catch (const inference::InferenceError& e) {
      std::cerr << "unibiomed model generate: " << e.what() << "\n";
      return kExitBadInput;
    }
    if (ids.empty()) throw UsageError("--text gives no tokens");
  }
  for (int64_t id : ids)
    if (id < 0 || id >= config->llm.vocab_size) {
      std::cerr << "unibiomed model generate: prompt token id " << id << " is outside the vocabulary of "
                << config->llm.vocab_size << "\n";
      return kExitBadInput;
    }

  inference::GenerationOptions g;
  g.max_new_tokens = static_cast<int>(max_new);
  if (p.is_set("--no-stop-words"))
    g.stop_words.clear();
  else if (p.has("--stop-word"))
    g.stop_words = p.get_all("--stop-word");
  else
    g.stop_words = inference::chat_template(config->template_name).stop_words;
  if (!tokenizer->eos_token_id()) g.eos_token_id = config->llm.eos_token_id;
  try {
    const torch::Tensor prompt =
        torch::tensor(ids, torch::TensorOptions().dtype(torch::kLong)).view({1, static_cast<int64_t>(ids.size())});
    const auto results = inference::generate_greedy(*model, *tokenizer, model->embed(prompt), g);
    const auto& r = results.at(0);
    std::cout << json{{"ids", r.ids}, {"text", r.text}, {"stop_reason", inference::stop_reason_name(r.stop_reason)}}
                     .dump()
              << "\n";
  } catch (const inference::InferenceError& e) {
    std::cerr << "unibiomed model generate: " << e.what() << "\n";
    return kExitFailure;
  } catch (const c10::Error& e) {
    std::cerr << "unibiomed model generate: " << torch_failure("generating", e, p.get("--device")) << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace unibiomed::cli
