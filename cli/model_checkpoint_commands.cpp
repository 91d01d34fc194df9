// `unibiomed model make-random` (a checkpoint of the real layout with seeded random weights) and
// `unibiomed model info` (architecture, parameters per part, dtypes, layout check, weights hash).
// Both read and write files only; no libtorch is involved.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "inference/error.h"
#include "inference/model_config.h"
#include "inference/checkpoint_layout.h"
#include "inference/random_checkpoint.h"
#include "inference/safetensors_file.h"
#include "inference/weights_hash.h"
#include "inference/runtime.h"

namespace unibiomed::cli {

namespace fs = std::filesystem;
using inference::InferenceError;

namespace {

std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000) std::snprintf(buf, sizeof buf, "%.2f B", static_cast<double>(n) / 1e9);
  else if (n >= 1'000'000) std::snprintf(buf, sizeof buf, "%.1f M", static_cast<double>(n) / 1e6);
  else if (n >= 1'000) std::snprintf(buf, sizeof buf, "%.1f k", static_cast<double>(n) / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

std::string list_str(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) throw InferenceError("cannot read " + path.string());
  return text.str();
}

// The parts `model info` reports, in this order, then "other" for names outside the layout.
const char* part_of(const std::string& name) {
  const auto block = inference::block_of(name);
  return block ? inference::block_name(*block) : "other";
}

const inference::CheckpointBlock kPartOrder[] = {
    inference::CheckpointBlock::kVision,   inference::CheckpointBlock::kProjector,
    inference::CheckpointBlock::kLanguage, inference::CheckpointBlock::kSegHead,
    inference::CheckpointBlock::kSam2,     inference::CheckpointBlock::kSam2VideoOnly};

std::vector<std::string> part_order() {
  std::vector<std::string> order;
  for (const auto block : kPartOrder) order.push_back(inference::block_name(block));
  order.push_back("other");
  return order;
}

}  // namespace

int run_model_make_random(const Args& args) {
  ArgParser p("unibiomed model make-random --config tiny|real [--seed N] [--dtype D] [--tokenizer DIR] [--answer TEXT] DIR",
              "Writes a checkpoint folder of the real UniBiomed layout (config.json, model.safetensors with every "
              "tensor name and shape of the release, tokenizer files) with seeded random weights, for tests and "
              "benchmarks. 'tiny' has the sizes of the small reference checkpoint (a few MB); 'real' the released "
              "sizes (1.16 B parameters, about 2.3 GB in bfloat16). The values depend only on the seed and the "
              "tensor name.");
  p.option("--config", "KIND", "tiny or real", std::string("tiny"))
      .option("--seed", "N", "random seed (unsigned integer)", std::string("0"))
      .option("--dtype", "D", "stored dtype: float32, bfloat16 or float16 (default: float32 for tiny, bfloat16 for real)")
      .option("--tokenizer", "DIR",
              "copy these tokenizer files (vocab.json, merges.txt, tokenizer.json, tokenizer_config.json...) instead "
              "of writing a byte-level vocabulary")
      .option("--answer", "TEXT",
              "a test fixture, not a model: rewire the language model so that its greedy answer to any prompt is "
              "TEXT (e.g. \"Sure, [SEG].\"); images and [SEG] masks still go through the random vision and SAM2 "
              "weights. The tokens of TEXT must all differ")
      .positional("DIR", "the folder to write (created when missing)", 1, 1);
  if (!p.parse(args)) return kExitOk;
  inference::RandomCheckpointOptions o;
  if (auto a = p.get_optional("--answer")) o.fixed_answer = *a;
  o.kind = p.get("--config");
  if (o.kind != "tiny" && o.kind != "real") throw UsageError("--config must be tiny or real, not '" + o.kind + "'");
  o.seed = p.get_seed("--seed");
  if (auto d = p.get_optional("--dtype")) {
    if (*d == "float32" || *d == "f32") o.dtype = inference::DType::F32;
    else if (*d == "bfloat16" || *d == "bf16") o.dtype = inference::DType::BF16;
    else if (*d == "float16" || *d == "f16") o.dtype = inference::DType::F16;
    else throw UsageError("--dtype must be float32, bfloat16 or float16, not '" + *d + "'");
  }
  if (auto t = p.get_optional("--tokenizer")) o.tokenizer_dir = fs::path(*t);
  const fs::path dir = p.positionals()[0];
  const auto start = std::chrono::steady_clock::now();
  try {
    const auto s = inference::write_random_checkpoint(dir, o);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "wrote " << dir.string() << ": " << o.kind << " config, seed " << o.seed << ", " << s.tensors
              << " tensors, " << human_count(s.parameters) << " parameters, " << s.bytes << " bytes in "
              << secs << " s\n";
  } catch (const InferenceError& e) {
    std::cerr << "unibiomed model make-random: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

int run_model_info(const Args& args) {
  ArgParser p("unibiomed model info [--json] [--no-hash] [--no-cache] DIR",
              "Describes a checkpoint folder without loading it into memory: the architecture from config.json, "
              "parameters per part, stored dtypes, whether every tensor of the expected layout is there with its "
              "shape, and the weights hash (SHA-256 of model.safetensors, or of the shards concatenated in name "
              "order; cached in DIR/unibiomed-weights-hash.json).");
  p.flag("--json", "print one JSON object instead of text")
      .flag("--no-hash", "skip the weights hash")
      .flag("--no-cache", "compute the hash without reading or writing the cache file")
      .positional("DIR", "the model folder (config.json + model.safetensors or a sharded index)", 1, 1);
  if (!p.parse(args)) return kExitOk;
  const fs::path dir = p.positionals()[0];
  try {
    if (!fs::is_directory(dir)) throw InferenceError("model folder " + dir.string() + " does not exist");
    if (!fs::is_regular_file(dir / "config.json")) throw InferenceError("model folder " + dir.string() + " has no config.json");
    const auto config = inference::ModelConfig::load(dir / "config.json");
    const auto checkpoint = inference::Checkpoint::open(dir);

    std::map<std::string, std::pair<int64_t, int64_t>> parts;  // tensors, parameters
    std::map<std::string, std::pair<int64_t, int64_t>> dtypes;
    int64_t total = 0;
    for (const auto& name : checkpoint->names()) {
      const auto* v = checkpoint->find(name);
      auto& pt = parts[part_of(name)];
      ++pt.first;
      pt.second += v->numel();
      auto& dt = dtypes[inference::dtype_name(v->dtype)];
      ++dt.first;
      dt.second += v->numel();
      total += v->numel();
    }
    // Layout check against the names and shapes the code expects for this config.
    std::vector<std::string> missing, wrong_shape, unexpected;
    const auto layout =
        inference::checkpoint_layout(config, inference::memory_config_from_json(
                                                 read_text(dir / "config.json"), (dir / "config.json").string()));
    std::map<std::string, std::vector<int64_t>> expected;
    for (const auto& t : layout) expected[t.name] = t.shape;
    for (const auto& [name, shape] : expected) {
      const auto* v = checkpoint->find(name);
      if (!v) missing.push_back(name);
      else if (v->shape != shape) wrong_shape.push_back(name + " " + v->shape_string());
    }
    for (const auto& name : checkpoint->names())
      if (!expected.count(name)) unexpected.push_back(name);

    std::optional<inference::WeightsHash> hash;
    if (!p.is_set("--no-hash")) hash = inference::weights_hash(dir, !p.is_set("--no-cache"));

    const auto& g = config.grounding;
    const auto& h = g.hiera;
    // What --dtype auto / "DataType": "auto" computes in on this machine's CPU
    // (ComputeOptions::auto_dtype; this file stays free of libtorch headers).
    const std::string auto_cpu = inference::cpu_has_native_bfloat16() ? "bfloat16" : "float32";
    if (p.is_set("--json")) {
      nlohmann::ordered_json j;
      j["dir"] = dir.string();
      j["model_type"] = config.model_type;
      j["template"] = config.template_name;
      j["vision"] = {{"hidden_size", config.vision.hidden_size}, {"layers", config.vision.num_hidden_layers},
                     {"heads", config.vision.num_attention_heads}, {"patch_size", config.vision.patch_size},
                     {"tile_size", config.tile_size}, {"tokens_per_tile", config.tokens_per_tile()}};
      j["language_model"] = {{"hidden_size", config.llm.hidden_size}, {"layers", config.llm.num_hidden_layers},
                             {"heads", config.llm.num_attention_heads}, {"kv_heads", config.llm.num_key_value_heads},
                             {"intermediate_size", config.llm.intermediate_size}, {"vocab_size", config.llm.vocab_size},
                             {"rope_theta", config.llm.rope_theta}};
      j["sam2"] = {{"image_size", g.image_size}, {"embed_dim", h.embed_dim}, {"heads", h.num_heads},
                   {"stages", h.stages}, {"window_spec", h.window_spec}, {"global_att_blocks", h.global_att_blocks},
                   {"neck_d_model", g.neck.d_model}, {"backbone_channel_list", g.neck.backbone_channel_list},
                   {"from_checkpoint_config", g.from_checkpoint_config}};
      j["parameters"] = total;
      j["tensors"] = checkpoint->size();
      for (const auto& part : part_order())
        if (parts.count(part)) j["parts"][part] = {{"tensors", parts[part].first}, {"parameters", parts[part].second}};
      for (const auto& [d, c] : dtypes) j["dtypes"][d] = {{"tensors", c.first}, {"parameters", c.second}};
      j["layout"] = {{"missing", missing}, {"wrong_shape", wrong_shape}, {"unexpected", unexpected}};
      if (hash) j["weights_hash"] = {{"sha256", hash->sha256}, {"method", hash->method}, {"from_cache", hash->from_cache}};
      j["compute"] = {{"auto_dtype_cpu", auto_cpu}, {"auto_dtype_cuda", "bfloat16"},
                      {"cpu_bfloat16_dot_products", inference::cpu_has_native_bfloat16()}};
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << "model folder   " << dir.string() << "\n"
                << "architecture   " << config.model_type << " (template " << config.template_name << ")\n"
                << "  vision       InternViT: hidden " << config.vision.hidden_size << ", " << config.vision.num_hidden_layers
                << " layers, " << config.vision.num_attention_heads << " heads, patch " << config.vision.patch_size
                << ", tiles of " << config.tile_size << " px -> " << config.tokens_per_tile() << " tokens\n"
                << "  language     Qwen2: hidden " << config.llm.hidden_size << ", " << config.llm.num_hidden_layers
                << " layers, " << config.llm.num_attention_heads << "/" << config.llm.num_key_value_heads
                << " heads (q/kv), MLP " << config.llm.intermediate_size << ", vocabulary " << config.llm.vocab_size << "\n"
                << "  grounding    SAM2 Hiera: input " << g.image_size << " px, embed " << h.embed_dim << ", stages "
                << list_str(h.stages) << ", windows " << list_str(h.window_spec) << ", global blocks "
                << list_str(h.global_att_blocks) << "; FPN d_model " << g.neck.d_model
                << (g.from_checkpoint_config ? " (grounding_encoder_config)" : " (Hiera-L constants)") << "\n"
                << "parameters     " << human_count(total) << " (" << total << ") in " << checkpoint->size() << " tensors\n";
      for (const auto& part : part_order())
        if (parts.count(part))
          std::cout << "  " << part << ": " << human_count(parts[part].second) << " (" << parts[part].first
                    << " tensors)\n";
      std::cout << "dtypes        ";
      for (const auto& [d, c] : dtypes) std::cout << " " << d << ": " << c.first << " tensors, " << human_count(c.second);
      std::cout << "\nlayout         " << (missing.empty() && wrong_shape.empty() && unexpected.empty() ? "complete" : "DIFFERS")
                << " (" << missing.size() << " missing, " << wrong_shape.size() << " with another shape, "
                << unexpected.size() << " unexpected)\n";
      auto show = [](const char* what, const std::vector<std::string>& v) {
        for (size_t i = 0; i < v.size() && i < 10; ++i) std::cout << "  " << what << ": " << v[i] << "\n";
        if (v.size() > 10) std::cout << "  ... " << v.size() - 10 << " more " << what << "\n";
      };
      show("missing", missing);
      show("other shape", wrong_shape);
      show("unexpected", unexpected);
      std::cout << "compute        dtype auto: " << auto_cpu << " on this CPU ("
                << (inference::cpu_has_native_bfloat16() ? "it has" : "it has no")
                << " bfloat16 dot products), bfloat16 on a GPU; --dtype / \"DataType\" override it\n";
      if (hash)
        std::cout << "weights hash   " << hash->sha256 << " (" << hash->method << (hash->from_cache ? ", cached" : "")
                  << ")\n";
    }
  } catch (const InferenceError& e) {
    std::cerr << "unibiomed model info: " << e.what() << "\n";
    return kExitBadInput;
  }
  return kExitOk;
}

}  // namespace unibiomed::cli
