// SPDX-License-Identifier: GPL-3.0-or-later
// The tensors to write, their names and shapes, come from the layout table
// (inference/checkpoint_layout.h); this file chooses their values.
#include "inference/random_checkpoint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "inference/error.h"
#include "inference/tokenizer.h"

namespace unibiomed::inference {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

// The added tokens of the released tokenizer (Qwen2.5 + InternVL2.5 + UniBiomed), with their
// ids (the released Qwen2.5 tokenizer's tokenizer_config.json).
const std::pair<const char*, int64_t> kRealAddedTokens[] = {
    {"<|endoftext|>", 151643},      {"<|im_start|>", 151644},   {"<|im_end|>", 151645},
    {"<|object_ref_start|>", 151646}, {"<|object_ref_end|>", 151647}, {"<|box_start|>", 151648},
    {"<|box_end|>", 151649},        {"<|quad_start|>", 151650}, {"<|quad_end|>", 151651},
    {"<|vision_start|>", 151652},   {"<|vision_end|>", 151653}, {"<|vision_pad|>", 151654},
    {"<|image_pad|>", 151655},      {"<|video_pad|>", 151656},  {"<tool_call>", 151657},
    {"</tool_call>", 151658},       {"<|fim_prefix|>", 151659}, {"<|fim_middle|>", 151660},
    {"<|fim_suffix|>", 151661},     {"<|fim_pad|>", 151662},    {"<|repo_name|>", 151663},
    {"<|file_sep|>", 151664},       {"<img>", 151665},          {"</img>", 151666},
    {"<IMG_CONTEXT>", 151667},      {"<quad>", 151668},         {"</quad>", 151669},
    {"<ref>", 151670},              {"</ref>", 151671},         {"<box>", 151672},
    {"</box>", 151673},             {"[SEG]", 151674},          {"<p>", 151675},
    {"</p>", 151676},               {"<vp>", 151677},           {"</vp>", 151678}};

// The tiny vocabulary of the reference checkpoint (tests/reference/tiny_vocab.json): bytes 0..255,
// then these.
const char* const kTinySpecials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>",
                                     "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>",
                                     "</box>", "[SEG]", "<p>", "</p>", "<vp>", "</vp>"};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Initial values: norms around 1, layer scales 0.1, biases small, matrices with a standard
// deviation of 1/sqrt(fan_in) (so that activations keep their scale through the stacks), learned
// embeddings 0.02, SAM2's random-Fourier matrix N(0, 1).
struct Init {
  double center = 0, half_width = 0;
};
Init init_for(const TensorSpec& t) {
  const double sqrt3 = std::sqrt(3.0);
  const std::string& n = t.name;
  if (ends_with(n, "ls1") || ends_with(n, "ls2") || ends_with(n, "g_weight")) return {0.1, 0.0};
  if (ends_with(n, ".bias")) return {0.0, 0.02 * sqrt3};
  if (ends_with(n, "positional_encoding_gaussian_matrix")) return {0.0, sqrt3};
  if (t.shape.size() == 1 && ends_with(n, ".weight")) return {1.0, 0.05};  // LayerNorm / RMSNorm
  const bool embedding = n.find("embed") != std::string::npos || ends_with(n, "_token.weight") ||
                         ends_with(n, "mask_tokens.weight") || ends_with(n, "tpos_enc") || ends_with(n, "pos_enc") ||
                         ends_with(n, "no_obj_ptr");
  if (embedding && n.find("patch_embed") == std::string::npos) return {0.0, 0.02 * sqrt3};
  int64_t fan_in = 1;
  for (size_t i = 1; i < t.shape.size(); ++i) fan_in *= t.shape[i];
  return {0.0, sqrt3 / std::sqrt(static_cast<double>(std::max<int64_t>(fan_in, 1)))};
}

// splitmix64 (Steele, Lea, Flood 2014): a fast, well-mixed generator; seeded per tensor from
// the seed and the name so that values do not depend on the order of writing.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

uint64_t name_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ULL ^ seed;  // FNV-1a over the name
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  return h;
}

uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest even (no NaNs are produced here)
  return static_cast<uint16_t>(bits >> 16);
}

uint16_t to_f16(float f) {
  // IEEE half, round to nearest even; the values written here are small and finite.
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xFF) - 127 + 15;
  uint32_t mant = x & 0x7FFFFFu;
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7C00u);
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(half);
}

// One value in the stored dtype (F32, BF16 or F16), little-endian, at `p`.
void store_value(float v, DType dtype, uint8_t* p) {
  if (dtype == DType::F32) {
    std::memcpy(p, &v, 4);
  } else {
    const uint16_t h = dtype == DType::BF16 ? to_bf16(v) : to_f16(v);
    p[0] = static_cast<uint8_t>(h);
    p[1] = static_cast<uint8_t>(h >> 8);
  }
}

ojson tiny_config() {
  ojson special;
  for (size_t i = 0; i < std::size(kTinySpecials); ++i) special[kTinySpecials[i]] = 256 + static_cast<int64_t>(i);
  return ojson{
      {"architectures", {"Sa2VAChatModel"}},
      {"model_type", "sa2va_chat"},
      {"torch_dtype", "float32"},
      {"downsample_ratio", 0.5},
      {"dynamic_image_size", true},
      {"force_image_size", 56},
      {"max_dynamic_patch", 12},
      {"min_dynamic_patch", 1},
      {"pad2square", false},
      {"ps_version", "v2"},
      {"select_layer", -1},
      {"template", "phi3_chat"},
      {"use_thumbnail", true},
      {"tie_word_embeddings", false},
      {"hidden_size", 64},
      {"vision_config",
       {{"architectures", {"InternVisionModel"}}, {"model_type", "intern_vit_6b"}, {"hidden_act", "gelu"},
        {"hidden_size", 64}, {"image_size", 56}, {"intermediate_size", 128}, {"layer_norm_eps", 1e-6},
        {"norm_type", "layer_norm"}, {"num_attention_heads", 4}, {"num_channels", 3}, {"num_hidden_layers", 2},
        {"patch_size", 14}, {"qk_normalization", false}, {"qkv_bias", true}}},
      {"llm_config",
       {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"bos_token_id", 256}, {"eos_token_id", 258},
        {"hidden_act", "silu"}, {"hidden_size", 64}, {"intermediate_size", 128}, {"max_position_embeddings", 1024},
        {"num_attention_heads", 4}, {"num_hidden_layers", 2}, {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-6},
        {"rope_theta", 1000000.0}, {"tie_word_embeddings", false}, {"use_sliding_window", false},
        {"vocab_size", 512}}},
      {"grounding_encoder_config",
       {{"image_size", 128},
        {"scalp", 1},
        {"hiera",
         {{"embed_dim", 16}, {"num_heads", 1}, {"stages", {1, 2, 3, 2}}, {"global_att_blocks", {5}},
          {"window_pos_embed_bkg_spatial_size", {7, 7}}, {"window_spec", {8, 4, 4, 3}}, {"q_pool", 3},
          {"q_stride", {2, 2}}, {"dim_mul", 2.0}, {"head_mul", 2.0}, {"patch_kernel_size", {7, 7}},
          {"patch_stride", {4, 4}}, {"patch_padding", {3, 3}}, {"mlp_ratio", 4.0}, {"norm_eps", 1e-6}}},
        {"neck",
         {{"d_model", 32}, {"backbone_channel_list", {128, 64, 32, 16}}, {"fpn_top_down_levels", {2, 3}},
          {"fpn_interp_model", "nearest"}, {"kernel_size", 1}}},
        {"memory_attention", {{"d_model", 32}, {"kv_in_dim", 16}, {"dim_feedforward", 64}, {"num_layers", 2}}},
        {"memory_encoder", {{"out_dim", 16}}}}},
      {"tiny_test",
       {{"internvl_tile_size", 56},
        {"sam_target_length", 128},
        {"max_dynamic_patch_used_by_predict_forward", 12},
        {"min_dynamic_patch_used_by_predict_forward", 1},
        {"use_thumbnail", true},
        {"special_token_ids", special},
        {"eos_token_id", 258},
        {"pad_token_id", 256}}}};
}

ojson real_config() {
  // The released model's fields (configuration_sa2va_chat.py with InternVL2.5-1B's vision and
  // Qwen2.5-0.5B-Instruct's language sizes); SAM2 sizes are fixed in the reference code.
  return ojson{
      {"architectures", {"Sa2VAChatModel"}},
      {"model_type", "sa2va_chat"},
      {"torch_dtype", "bfloat16"},
      {"downsample_ratio", 0.5},
      {"dynamic_image_size", true},
      {"force_image_size", 448},
      {"max_dynamic_patch", 12},
      {"min_dynamic_patch", 1},
      {"pad2square", false},
      {"ps_version", "v2"},
      {"select_layer", -1},
      {"template", "phi3_chat"},
      {"use_thumbnail", true},
      {"tie_word_embeddings", false},
      {"hidden_size", 896},
      {"vision_config",
       {{"architectures", {"InternVisionModel"}}, {"model_type", "intern_vit_6b"}, {"hidden_act", "gelu"},
        {"hidden_size", 1024}, {"image_size", 448}, {"intermediate_size", 4096}, {"layer_norm_eps", 1e-6},
        {"norm_type", "layer_norm"}, {"num_attention_heads", 16}, {"num_channels", 3}, {"num_hidden_layers", 24},
        {"patch_size", 14}, {"qk_normalization", false}, {"qkv_bias", true}}},
      {"llm_config",
       {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"bos_token_id", 151643},
        {"eos_token_id", 151645}, {"hidden_act", "silu"}, {"hidden_size", 896}, {"intermediate_size", 4864},
        {"max_position_embeddings", 32768}, {"num_attention_heads", 14}, {"num_hidden_layers", 24},
        {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0},
        {"tie_word_embeddings", false}, {"use_sliding_window", false}, {"vocab_size", 151679}}}};
}

void copy_tokenizer(const fs::path& from, const fs::path& to) {
  if (!fs::is_directory(from)) throw InferenceError("tokenizer folder " + from.string() + " does not exist");
  bool any = false;
  for (const char* name : {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "added_tokens.json",
                           "special_tokens_map.json"}) {
    if (!fs::exists(from / name)) continue;
    std::error_code ec;
    fs::copy_file(from / name, to / name, fs::copy_options::overwrite_existing, ec);
    if (ec) throw InferenceError("cannot copy " + (from / name).string() + " to " + to.string() + ": " + ec.message());
    any = true;
  }
  if (!any)
    throw InferenceError("tokenizer folder " + from.string() +
                         " has none of vocab.json, merges.txt, tokenizer.json, tokenizer_config.json");
}

// The --answer fixture. With every decoder layer's o_proj and down_proj at zero, attention and
// MLP add nothing to the residual stream, so the final hidden state at a position is
// RMSNorm(embedding of that position's input token) whatever came before (images included). The
// tokens of the chain "last prompt token, answer..., end token" get orthogonal embeddings (the
// k-th gets the k-th unit vector, scaled) and the final norm weight 1, so their normalised
// hidden states are sqrt(H) times unit vectors; the lm_head row of the k+1-th token is the k-th
// unit vector and every other row zero. Greedy decoding then walks the chain: at chain token k
// the next token's logit is sqrt(H) and every other logit 0.
void make_answer_fixed(const fs::path& dir, const ModelConfig& config, const nlohmann::json& header,
                       uint64_t data_start, DType dtype, const std::string& answer) {
  const Tokenizer tokenizer = Tokenizer::load(dir);
  const auto template_tail = tokenizer.encode("<|end|>\n<|assistant|>\n");  // phi3_chat's prompt end
  std::vector<int64_t> chain = {template_tail.back()};
  for (int64_t id : tokenizer.encode(answer)) chain.push_back(id);
  const auto end = tokenizer.eos_token_id();
  chain.push_back(end ? *end : tokenizer.token_id("<|im_end|>"));
  const auto& llm = config.llm;
  const int64_t H = llm.hidden_size;
  if (llm.tie_word_embeddings) throw InferenceError("make-random --answer: needs an untied lm_head");
  if (static_cast<int64_t>(chain.size()) > H)
    throw InferenceError("make-random --answer: the answer has more tokens than the hidden size (" + std::to_string(H) + ")");
  for (size_t i = 0; i < chain.size(); ++i)
    for (size_t j = i + 1; j < chain.size(); ++j)
      if (chain[i] == chain[j])
        throw InferenceError("make-random --answer: token " + std::to_string(chain[i]) + " (\"" +
                             tokenizer.decode({chain[i]}) +
                             "\") occurs twice in the prompt end + answer + end token; choose a text whose tokens all differ");

  std::fstream file(dir / "model.safetensors", std::ios::binary | std::ios::in | std::ios::out);
  if (!file) throw InferenceError("cannot reopen " + (dir / "model.safetensors").string());
  const size_t elem = dtype_size(dtype);
  auto write_value = [&](const std::string& name, int64_t index, float v) {
    const auto& entry = header.at(name);
    const uint64_t at = data_start + entry.at("data_offsets").at(0).get<uint64_t>() + static_cast<uint64_t>(index) * elem;
    uint8_t bytes[4];
    store_value(v, dtype, bytes);
    file.seekp(static_cast<std::streamoff>(at));
    file.write(reinterpret_cast<const char*>(bytes), static_cast<std::streamsize>(elem));
  };
  auto fill = [&](const std::string& name, float v) {
    int64_t n = 1;
    for (const auto& d : header.at(name).at("shape")) n *= d.get<int64_t>();
    std::vector<uint8_t> bytes(static_cast<size_t>(n) * elem);
    for (int64_t i = 0; i < n; ++i) {
      uint8_t* p = bytes.data() + static_cast<size_t>(i) * elem;
      store_value(v, dtype, p);
    }
    file.seekp(static_cast<std::streamoff>(data_start + header.at(name).at("data_offsets").at(0).get<uint64_t>()));
    file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  };
  for (int i = 0; i < llm.num_hidden_layers; ++i) {
    const auto layer = layout::language_layer(i);
    fill(layer.o_proj_weight, 0.0f);
    fill(layer.down_proj_weight, 0.0f);
  }
  const auto lm = layout::language_model();
  fill(lm.norm_weight, 1.0f);
  fill(lm.lm_head_weight, 0.0f);
  for (size_t k = 0; k < chain.size(); ++k)
    for (int64_t c = 0; c < H; ++c)
      write_value(lm.embed_tokens_weight, chain[k] * H + c, c == static_cast<int64_t>(k) ? 0.05f : 0.0f);
  for (size_t k = 0; k + 1 < chain.size(); ++k)
    write_value(lm.lm_head_weight, chain[k + 1] * H + static_cast<int64_t>(k), 1.0f);
  // Masks that are never empty: every mask token's hypernetwork output is all ones, so a mask
  // logit is the sum over channels of the upscaled image embedding (after GELU, mostly positive)
  // instead of a random projection of it that may be negative everywhere on plain images.
  const auto decoder = layout::mask_decoder();
  for (int i = 0; i <= config.grounding.num_multimask_outputs; ++i) {
    const auto last = decoder.output_hypernetwork(i).layer(2);
    fill(last.weight, 0.0f);
    fill(last.bias, 1.0f);
  }
  file.flush();
  if (!file) throw InferenceError("cannot write " + (dir / "model.safetensors").string() + " (disk full?)");
}

}  // namespace

std::string random_config_json(const std::string& kind) {
  if (kind == "tiny") return tiny_config().dump(2);
  if (kind == "real") return real_config().dump(2);
  throw InferenceError("model kind \"" + kind + "\" is not known (tiny or real)");
}

Sam2MemoryConfig memory_config_for(const std::string& kind) {
  return memory_config_from_json(random_config_json(kind), "generated " + kind + " config.json");
}

RandomCheckpointSummary write_random_checkpoint(const fs::path& dir, const RandomCheckpointOptions& options) {
  const std::string config_text = random_config_json(options.kind);
  const ModelConfig config = ModelConfig::parse(config_text, "generated " + options.kind + " config.json");
  const DType dtype = options.dtype.value_or(options.kind == "real" ? DType::BF16 : DType::F32);
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    throw InferenceError(std::string("make-random: dtype ") + dtype_name(dtype) + " is not a weight dtype (F32, BF16, F16)");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) throw InferenceError("cannot create the folder " + dir.string());

  {
    std::ofstream out(dir / "config.json");
    out << config_text << "\n";
    if (!out) throw InferenceError("cannot write " + (dir / "config.json").string());
  }

  // model.safetensors, streamed: header first, then each tensor generated and written in turn.
  const std::vector<TensorSpec> layout = checkpoint_layout(config, memory_config_for(options.kind));
  const size_t elem = dtype_size(dtype);
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  RandomCheckpointSummary summary;
  for (const auto& t : layout) {
    const uint64_t n = static_cast<uint64_t>(t.numel()) * elem;
    header[t.name] = {{"dtype", dtype_name(dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    summary.parameters += t.numel();
  }
  header["__metadata__"] = {{"format", "pt"},
                            {"generator", "unibiomed model make-random"},
                            {"kind", options.kind},
                            {"seed", std::to_string(options.seed)}};
  std::string text = header.dump();
  while ((8 + text.size()) % 8) text += ' ';  // data block 8-byte aligned, as the reference writer pads
  const fs::path model_path = dir / "model.safetensors";
  const fs::path tmp_path = dir / "model.safetensors.partial";
  {
    std::ofstream out(tmp_path, std::ios::binary | std::ios::trunc);
    if (!out) throw InferenceError("cannot write " + tmp_path.string());
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    std::vector<uint8_t> buffer;
    constexpr int64_t kChunk = int64_t{1} << 20;
    for (const auto& t : layout) {
      const Init init = init_for(t);
      SplitMix64 rng{name_seed(options.seed, t.name)};
      for (int64_t done = 0, n = t.numel(); done < n; done += kChunk) {
        const int64_t count = std::min(kChunk, n - done);
        buffer.resize(static_cast<size_t>(count) * elem);
        for (int64_t i = 0; i < count; ++i) {
          // Uniform in [center - w, center + w): 24 random bits.
          const double u = static_cast<double>(rng.next() >> 40) * (1.0 / 16777216.0);
          const auto v = static_cast<float>(init.center + init.half_width * (2.0 * u - 1.0));
          uint8_t* p = buffer.data() + static_cast<size_t>(i) * elem;
          store_value(v, dtype, p);
        }
        out.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
      }
      ++summary.tensors;
    }
    out.flush();
    if (!out) throw InferenceError("cannot write " + tmp_path.string() + " (disk full?)");
  }
  fs::rename(tmp_path, model_path, ec);
  if (ec) throw InferenceError("cannot rename " + tmp_path.string() + " to " + model_path.string() + ": " + ec.message());
  summary.bytes = fs::file_size(model_path);
  // A stale hash cache of an earlier checkpoint in this folder must not survive.
  fs::remove(dir / "unibiomed-weights-hash.json", ec);

  if (options.tokenizer_dir) {
    copy_tokenizer(*options.tokenizer_dir, dir);
  } else {
    std::map<std::string, int64_t> added;
    if (options.kind == "tiny")
      for (size_t i = 0; i < std::size(kTinySpecials); ++i) added[kTinySpecials[i]] = 256 + static_cast<int64_t>(i);
    else
      for (const auto& [token, id] : kRealAddedTokens) added[token] = id;
    write_byte_level_tokenizer(dir, added);
  }
  if (options.fixed_answer) {
    // An answer the fixture cannot give leaves no checkpoint behind: a plain random one in its
    // place would load and answer something else.
    try {
      make_answer_fixed(dir, config, header, 8 + text.size(), dtype, *options.fixed_answer);
    } catch (...) {
      fs::remove(model_path, ec);
      throw;
    }
  }
  return summary;
}

}  // namespace unibiomed::inference
