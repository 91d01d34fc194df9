// The Qwen2 decoder against the reference (tests/reference llm.safetensors: text-only forward and
// greedy decoding; e2e.safetensors: the prefill with image tokens), block by block, with the max
// error printed next to the tolerance; and the checkpoint/config mismatches a user can make.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <algorithm>

#include "inference/error.h"
#include "inference/qwen2.h"
#include "tests/inference/llm_test_support.h"

namespace unibiomed::inference {
namespace {

using test::close_to;
using test::golden_tensor;

class Qwen2Reference : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    ASSERT_TRUE(test::test_device_usable());
    tiny_ = std::make_unique<test::TinyLlm>();
  }
  std::unique_ptr<test::TinyLlm> tiny_;
};

TEST_F(Qwen2Reference, RopeTablesAreTheReference) {
  const Qwen2Model& m = *tiny_->model;
  EXPECT_TRUE(close_to("rope_inv_freq", m.rope_inv_freq(), golden_tensor("llm.safetensors", "rope_inv_freq"), 1e-6));
  // The golden tables hold the first positions (rows) of all head_dim columns (cat(freqs, freqs)).
  const torch::Tensor cos = golden_tensor("llm.safetensors", "rope_cos_first64");
  const torch::Tensor sin = golden_tensor("llm.safetensors", "rope_sin_first64");
  EXPECT_TRUE(close_to("rope_cos_first64", m.rope_cos().narrow(0, 0, cos.size(0)), cos, 1e-6));
  EXPECT_TRUE(close_to("rope_sin_first64", m.rope_sin().narrow(0, 0, sin.size(0)), sin, 1e-6));
}

TEST_F(Qwen2Reference, TextForwardEveryBlockMatches) {
  Qwen2Model& m = *tiny_->model;
  const torch::Tensor ids = golden_tensor("llm.safetensors", "text_input_ids").view({1, -1});
  const int64_t T = ids.size(1);
  const torch::Tensor embeds = m.embed(ids);
  EXPECT_TRUE(close_to("text_hidden_states.0 (embeddings)", embeds[0], golden_tensor("llm.safetensors", "text_hidden_states.0"), 0.0));
  // One chunk, then chunks of 5 positions (prefill in pieces must give the same numbers).
  const int L = tiny_->config.llm.num_hidden_layers;
  for (int64_t chunk : {std::max<int64_t>(T, 512), int64_t{5}}) {
    m.set_prefill_chunk(chunk);
    KvCache cache = m.make_cache(1, T);
    std::vector<torch::Tensor> layers;
    const torch::Tensor hidden = m.forward(embeds, cache, &layers);
    EXPECT_EQ(hidden.device(), test::test_device());  // UNIBIOMED_TEST_DEVICE
    EXPECT_EQ(cache.length(), T);
    ASSERT_EQ(layers.size(), static_cast<size_t>(L));
    const std::string c = " (prefill chunk " + std::to_string(chunk) + ")";
    // hidden_states.i (0 < i < L) is the output of layer i - 1; .L is the final norm's.
    for (int i = 1; i < L; ++i) {
      const std::string name = "text_hidden_states." + std::to_string(i);
      EXPECT_TRUE(close_to(name + " (layer " + std::to_string(i - 1) + ")" + c, layers[static_cast<size_t>(i - 1)][0],
                           golden_tensor("llm.safetensors", name)));
    }
    EXPECT_TRUE(close_to("text_hidden_states." + std::to_string(L) + " (final norm)" + c, hidden[0],
                         golden_tensor("llm.safetensors", "text_hidden_states." + std::to_string(L))));
    EXPECT_TRUE(close_to("text_logits" + c, m.logits(hidden)[0], golden_tensor("llm.safetensors", "text_logits")));
  }
}

TEST_F(Qwen2Reference, IncrementalDecodeEqualsFullForward) {
  // Feeding the prompt one position at a time through the KV cache gives the full forward.
  Qwen2Model& m = *tiny_->model;
  const torch::Tensor ids = golden_tensor("llm.safetensors", "text_input_ids").view({1, -1});
  const int64_t T = ids.size(1);
  KvCache cache = m.make_cache(1, T);
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < T; ++t) steps.push_back(m.forward(m.embed(ids.narrow(1, t, 1)), cache));
  EXPECT_TRUE(close_to("text logits, one position at a time", m.logits(torch::cat(steps, 1))[0],
                       golden_tensor("llm.safetensors", "text_logits")));
}

TEST_F(Qwen2Reference, LongPromptsAcrossAttentionBlocksAndChunks) {
  // 300 positions span three 128-query attention blocks: the whole prompt at once, in chunks
  // of 100, and one position at a time must agree (two sequences, random embeddings).
  Qwen2Model& m = *tiny_->model;
  torch::manual_seed(3);
  const torch::Tensor embeds = torch::randn({2, 300, int64_t{tiny_->config.llm.hidden_size}});
  auto run = [&](int64_t chunk) {
    m.set_prefill_chunk(chunk);
    KvCache cache = m.make_cache(2, 300);
    return m.forward(embeds, cache);
  };
  const torch::Tensor whole = run(512);
  EXPECT_TRUE(close_to("300 positions, chunks of 100 vs whole", run(100), whole, 1e-5));
  EXPECT_TRUE(close_to("300 positions, one at a time vs whole", run(1), whole, 1e-5));
}

TEST_F(Qwen2Reference, E2ePrefillWithImageTokensMatches) {
  Qwen2Model& m = *tiny_->model;
  const torch::Tensor embeds = golden_tensor("e2e.safetensors", "prefill_inputs_embeds").unsqueeze(0);
  const int64_t T = embeds.size(1);
  KvCache cache = m.make_cache(1, T);
  std::vector<torch::Tensor> layers;
  const torch::Tensor hidden = m.forward(embeds, cache, &layers);
  const int L = tiny_->config.llm.num_hidden_layers;
  ASSERT_EQ(layers.size(), static_cast<size_t>(L));
  for (int i = 1; i < L; ++i) {
    const std::string name = "prefill_hidden_states." + std::to_string(i);
    EXPECT_TRUE(close_to(name, layers[static_cast<size_t>(i - 1)][0], golden_tensor("e2e.safetensors", name)));
  }
  EXPECT_TRUE(close_to("prefill_hidden_states." + std::to_string(L) + " (final norm)", hidden[0],
                       golden_tensor("e2e.safetensors", "prefill_hidden_states." + std::to_string(L))));
  EXPECT_TRUE(close_to("prefill_last_hidden_post_norm", hidden[0], golden_tensor("e2e.safetensors", "prefill_last_hidden_post_norm")));
  EXPECT_TRUE(close_to("prefill_logits", m.logits(hidden)[0], golden_tensor("e2e.safetensors", "prefill_logits")));
}

TEST_F(Qwen2Reference, BfloatSixteenStaysNearTheReference) {
  // Real inference runs in bfloat16: same model, weights and activations rounded to 8 bits of
  // mantissa. manifest.json advises ~1e-2 relative; held to 2.5% of the largest logit.
  test::TinyLlm bf16(test::test_compute(torch::kBFloat16));
  const torch::Tensor ids = golden_tensor("llm.safetensors", "text_input_ids").view({1, -1});
  KvCache cache = bf16.model->make_cache(1, ids.size(1));
  const torch::Tensor logits = bf16.model->logits(bf16.model->forward(bf16.model->embed(ids), cache));
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  const torch::Tensor expected = golden_tensor("llm.safetensors", "text_logits");
  EXPECT_TRUE(close_to("text_logits in bfloat16", logits[0], expected, 0.025 * expected.abs().max().item<double>()));
}

TEST_F(Qwen2Reference, UsesEveryLanguageModelTensor) {
  const auto unused = tiny_->weights->unused({"vision_model.", "mlp1.", "grounding_encoder.", "text_hidden_fcs."});
  EXPECT_TRUE(unused.empty()) << "unused: " << (unused.empty() ? "" : unused[0]);
}

TEST_F(Qwen2Reference, MisuseIsAnError) {
  Qwen2Model& m = *tiny_->model;
  // The sizes of the reference checkpoint (config.json llm_config).
  const LlmConfig& c = tiny_->config.llm;
  const int64_t H = c.hidden_size, V = c.vocab_size, P = c.max_position_embeddings;
  KvCache cache = m.make_cache(1, 4);
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const InferenceError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  // Inputs that do not fit: one position too many, two sequences, half the width, the first id
  // past the vocabulary.
  const torch::Tensor too_long = torch::zeros({1, 5, H}), two = torch::zeros({2, 1, H}),
                      narrow = torch::zeros({1, 1, H / 2});
  const torch::Tensor past_vocabulary = torch::tensor({int64_t{1}, V}, torch::kLong).view({1, 2});
  const std::string v = std::to_string(V);
  EXPECT_NE(message([&] { m.forward(too_long, cache); }).find("exceed the KV cache capacity of 4"), std::string::npos);
  EXPECT_NE(message([&] { m.forward(two, cache); }).find("2 sequences but the KV cache holds 1"), std::string::npos);
  EXPECT_NE(message([&] { m.forward(narrow, cache); }).find("[batch, length, " + std::to_string(H) + "]"),
            std::string::npos);
  EXPECT_NE(message([&] { m.embed(past_vocabulary); }).find("token id " + v + " is outside the vocabulary of " + v),
            std::string::npos);
  EXPECT_NE(message([&] { m.embed(torch::tensor({{-1}}, torch::kLong)); }).find("token id -1"), std::string::npos);
  EXPECT_NE(message([&] { m.make_cache(1, P + 1); }).find("exceeds max_position_embeddings " + std::to_string(P)),
            std::string::npos);
  EXPECT_NE(message([&] { cache.keep_rows({1}); }).find("row 1 outside the batch of 1"), std::string::npos);
}

// --- checkpoints and configs that do not fit together --------------------------------------

std::string load_error(const std::filesystem::path& checkpoint, const LlmConfig& config) {
  try {
    Weights w(Checkpoint::open(checkpoint), ComputeOptions{});
    Qwen2Model m(w, config);
  } catch (const InferenceError& e) {
    return e.what();
  }
  return "(no error)";
}

class BrokenCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    config_ = ModelConfig::load(test::reference_dir() / "config.json").llm;
  }
  test::TempDir dir_;
  LlmConfig config_;
};

TEST_F(BrokenCheckpoint, WrongShapeInALayer) {
  // The last layer's up_proj one row short.
  const std::string name =
      "language_model.model.layers." + std::to_string(config_.num_hidden_layers - 1) + ".mlp.up_proj.weight";
  const int64_t I = config_.intermediate_size, H = config_.hidden_size;
  test::rewrite_reference_checkpoint(dir_ / "m.safetensors", [&](auto& blobs) {
    for (auto& b : blobs)
      if (b.name == name) {
        b.shape = {I - 1, H};
        b.bytes.resize(static_cast<size_t>((I - 1) * H * 4));
      }
  });
  const std::string m = load_error(dir_ / "m.safetensors", config_);
  EXPECT_NE(m.find("'" + name + "' has shape [" + std::to_string(I - 1) + ", " + std::to_string(H) + "], expected [" +
                   std::to_string(I) + ", " + std::to_string(H) + "]"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("m.safetensors"), std::string::npos) << m;
}

TEST_F(BrokenCheckpoint, MissingLayer) {
  // Every tensor of the last layer removed.
  const std::string layer = "language_model.model.layers." + std::to_string(config_.num_hidden_layers - 1) + ".";
  test::rewrite_reference_checkpoint(dir_ / "m.safetensors", [&](auto& blobs) {
    blobs.erase(std::remove_if(blobs.begin(), blobs.end(), [&](const auto& b) { return b.name.rfind(layer, 0) == 0; }),
                blobs.end());
  });
  const std::string m = load_error(dir_ / "m.safetensors", config_);
  EXPECT_NE(m.find("missing tensor '" + layer + "input_layernorm.weight'"), std::string::npos) << m;
}

TEST_F(BrokenCheckpoint, MissingLmHeadUnlessTied) {
  test::rewrite_reference_checkpoint(dir_ / "m.safetensors", [](auto& blobs) {
    blobs.erase(std::remove_if(blobs.begin(), blobs.end(),
                               [](const auto& b) { return b.name == "language_model.lm_head.weight"; }),
                blobs.end());
  });
  EXPECT_NE(load_error(dir_ / "m.safetensors", config_).find("missing tensor 'language_model.lm_head.weight'"),
            std::string::npos);
  config_.tie_word_embeddings = true;  // Qwen2.5-0.5B itself ties lm_head to the embeddings
  EXPECT_EQ(load_error(dir_ / "m.safetensors", config_), "(no error)");
}

TEST_F(BrokenCheckpoint, ConfigDisagreesWithTheTensors) {
  // The sizes of the reference checkpoint (config.json llm_config) and shapes that differ from them.
  const int L = config_.num_hidden_layers;
  const int64_t H = config_.hidden_size, I = config_.intermediate_size, V = config_.vocab_size;
  auto shape = [](int64_t rows, int64_t cols) {
    return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  };
  LlmConfig more_layers = config_;
  more_layers.num_hidden_layers = L + 1;
  EXPECT_NE(load_error(test::reference_dir(), more_layers)
                .find("missing tensor 'language_model.model.layers." + std::to_string(L) + "."),
            std::string::npos);
  LlmConfig wider_mlp = config_;
  wider_mlp.intermediate_size = static_cast<int>(2 * I);
  EXPECT_NE(load_error(test::reference_dir(), wider_mlp)
                .find("'language_model.model.layers.0.mlp.gate_proj.weight' has shape " + shape(I, H) + ", expected " +
                      shape(2 * I, H)),
            std::string::npos);
  // As many key/value heads as query heads (no grouping): wider k_proj.
  ASSERT_LT(config_.num_key_value_heads, config_.num_attention_heads);
  LlmConfig more_kv_heads = config_;
  more_kv_heads.num_key_value_heads = config_.num_attention_heads;
  EXPECT_NE(load_error(test::reference_dir(), more_kv_heads)
                .find("'language_model.model.layers.0.self_attn.k_proj.weight' has shape " +
                      shape(config_.num_key_value_heads * config_.head_dim(), H) + ", expected " +
                      shape(config_.num_attention_heads * config_.head_dim(), H)),
            std::string::npos);
  LlmConfig bigger_vocab = config_;
  bigger_vocab.vocab_size = 151679;  // the released vocabulary
  EXPECT_NE(load_error(test::reference_dir(), bigger_vocab)
                .find("'language_model.model.embed_tokens.weight' has shape " + shape(V, H) + ", expected " +
                      shape(151679, H)),
            std::string::npos);
  LlmConfig odd_heads = config_;
  odd_heads.num_attention_heads = 5;
  while (H % odd_heads.num_attention_heads == 0) ++odd_heads.num_attention_heads;  // a count that does not divide H
  EXPECT_NE(load_error(test::reference_dir(), odd_heads).find("heads must divide the hidden size"), std::string::npos);
  LlmConfig gelu = config_;
  gelu.hidden_act = "gelu";
  EXPECT_NE(load_error(test::reference_dir(), gelu).find("hidden_act \"gelu\" is not silu"), std::string::npos);
}

TEST_F(BrokenCheckpoint, IntegerWeights) {
  test::rewrite_reference_checkpoint(dir_ / "m.safetensors", [](auto& blobs) {
    for (auto& b : blobs)
      if (b.name == "language_model.model.norm.weight") {
        b.dtype = DType::I32;  // same byte count as F32
      }
  });
  const std::string m = load_error(dir_ / "m.safetensors", config_);
  EXPECT_NE(m.find("'language_model.model.norm.weight' has dtype I32, expected a floating-point weight"),
            std::string::npos) << m;
}

TEST(InMemoryWeights, HandOverOnceAndReportShapes) {
  std::map<std::string, torch::Tensor> tensors = {{"a", torch::ones({2, 3})}, {"b", torch::zeros({4})}};
  Weights w(std::move(tensors), ComputeOptions::from_strings("cpu", "bfloat16"));
  EXPECT_TRUE(w.has("a"));
  EXPECT_EQ(w.shape_of("b"), (std::vector<int64_t>{4}));
  EXPECT_THROW(w.get("a", {3, 2}), InferenceError);
  const torch::Tensor a = w.get("a", {2, 3});
  EXPECT_EQ(a.scalar_type(), torch::kBFloat16);
  EXPECT_THROW(w.get("a", {2, 3}), InferenceError);  // handed over already
  EXPECT_THROW(w.get("c", {1}), InferenceError);
  EXPECT_EQ(w.unused(), std::vector<std::string>{"b"});
  EXPECT_EQ(w.describe(), "in-memory weights");
}

}  // namespace
}  // namespace unibiomed::inference
