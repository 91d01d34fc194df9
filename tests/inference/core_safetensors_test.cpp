// The checkpoint reader on the reference checkpoint and on every kind of damage we can make.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "inference/error.h"
#include "inference/model_config.h"
#include "inference/safetensors_file.h"
#include "tests/support/test_support.h"

namespace unibiomed::inference {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

TensorBlob f32_blob(const std::string& name, std::vector<int64_t> shape, float start) {
  TensorBlob b{name, DType::F32, shape, {}};
  int64_t n = 1;
  for (auto d : shape) n *= d;
  b.bytes.resize(static_cast<size_t>(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    float v = start + static_cast<float>(i);
    std::memcpy(b.bytes.data() + i * 4, &v, 4);
  }
  return b;
}

// Writes a file whose header is `header` (raw text) followed by `data_bytes` zero bytes.
void write_raw(const fs::path& p, const std::string& header, size_t data_bytes, uint64_t claimed_len = UINT64_MAX) {
  std::ofstream out(p, std::ios::binary);
  uint64_t len = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\0');
}

std::string error_of(const fs::path& p) {
  try {
    SafetensorsFile f(p);
  } catch (const InferenceError& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, RoundTripKeepsNamesShapesAndBytes) {
  TempDir dir;
  write_safetensors(dir / "a.safetensors", {f32_blob("b.weight", {2, 3}, 1.f), f32_blob("a.bias", {4}, 10.f)},
                    {{"format", "pt"}});
  SafetensorsFile f(dir / "a.safetensors");
  ASSERT_EQ(f.tensors().size(), 2u);
  const TensorView& w = f.tensors().at("b.weight");
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w.dtype, DType::F32);
  float v5;
  std::memcpy(&v5, w.data + 5 * 4, 4);
  EXPECT_EQ(v5, 6.f);
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(Safetensors, ReadsTheReferenceCheckpoint) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const fs::path golden = test::reference_dir();
  auto ck = Checkpoint::open(golden);
  // manifest.json lists the tensors of model.safetensors with their shapes.
  const auto manifest = nlohmann::json::parse(test::read_file(golden / "manifest.json"))["files"]["model.safetensors"];
  EXPECT_EQ(ck->size(), manifest["n_tensors"].get<size_t>());
  EXPECT_EQ(ck->size(), manifest["tensors"].size());
  const TensorView* emb = ck->find("language_model.model.embed_tokens.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape,
            manifest["tensors"]["language_model.model.embed_tokens.weight"]["shape"].get<std::vector<int64_t>>());
  EXPECT_EQ(ck->find("no.such.tensor"), nullptr);
}

TEST(Safetensors, TruncatedFileNamesFileAndTensor) {
  TempDir dir;
  write_safetensors(dir / "t.safetensors", {f32_blob("layer.weight", {64, 64}, 0.f)});
  fs::resize_file(dir / "t.safetensors", fs::file_size(dir / "t.safetensors") - 100);
  std::string err = error_of(dir / "t.safetensors");
  EXPECT_NE(err.find("t.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("layer.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("outside the data block"), std::string::npos) << err;
}

TEST(Safetensors, ShorterThanTheLengthField) {
  TempDir dir;
  test::write_file(dir / "s.safetensors", "abc");
  EXPECT_NE(error_of(dir / "s.safetensors").find("shorter than the 8-byte header length"), std::string::npos);
}

TEST(Safetensors, HeaderLengthBeyondTheFile) {
  TempDir dir;
  write_raw(dir / "h.safetensors", "{}", 0, 1000);
  EXPECT_NE(error_of(dir / "h.safetensors").find("header length 1000"), std::string::npos);
}

TEST(Safetensors, HeaderNotJson) {
  TempDir dir;
  write_raw(dir / "j.safetensors", "{not json", 0);
  EXPECT_NE(error_of(dir / "j.safetensors").find("not JSON"), std::string::npos);
}

TEST(Safetensors, UnsupportedDtype) {
  TempDir dir;
  write_raw(dir / "d.safetensors", R"({"x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2);
  std::string err = error_of(dir / "d.safetensors");
  EXPECT_NE(err.find("'x': unsupported dtype \"F8_E4M3\""), std::string::npos) << err;
}

TEST(Safetensors, SizeDisagreesWithShape) {
  TempDir dir;
  write_raw(dir / "z.safetensors", R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
  std::string err = error_of(dir / "z.safetensors");
  EXPECT_NE(err.find("8 bytes for shape [3] of F32 (expected 12)"), std::string::npos) << err;
}

TEST(Safetensors, OverlappingRanges) {
  TempDir dir;
  write_raw(dir / "o.safetensors",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            12);
  EXPECT_NE(error_of(dir / "o.safetensors").find("overlap"), std::string::npos);
}

TEST(Safetensors, OffsetsBackwards) {
  TempDir dir;
  write_raw(dir / "b.safetensors", R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4);
  EXPECT_NE(error_of(dir / "b.safetensors").find("outside the data block"), std::string::npos);
}

TEST(Safetensors, ShardedCheckpointThroughIndex) {
  TempDir dir;
  write_safetensors(dir / "model-00001-of-00002.safetensors", {f32_blob("a", {2}, 0.f)});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {f32_blob("b", {3}, 0.f)});
  test::write_file(dir / "model.safetensors.index.json",
                   R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  auto ck = Checkpoint::open(dir.path());
  EXPECT_EQ(ck->size(), 2u);
  ASSERT_NE(ck->find("b"), nullptr);
  EXPECT_EQ(ck->find("b")->shape, std::vector<int64_t>{3});
}

TEST(Safetensors, IndexListsATensorNoShardHas) {
  TempDir dir;
  write_safetensors(dir / "s1.safetensors", {f32_blob("a", {2}, 0.f)});
  test::write_file(dir / "model.safetensors.index.json", R"({"weight_map":{"a":"s1.safetensors","ghost":"s1.safetensors"}})");
  try {
    Checkpoint::open(dir.path());
    FAIL() << "expected an error";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("'ghost'"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, EmptyFolderSaysWhatIsMissing) {
  TempDir dir;
  try {
    Checkpoint::open(dir.path());
    FAIL();
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("no model.safetensors"), std::string::npos);
  }
}

TEST(ModelConfigTest, ReadsTheReferenceConfig) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const fs::path golden = test::reference_dir();
  ModelConfig c = ModelConfig::load(golden / "config.json");
  // The values as the file states them (read here with a plain JSON parser).
  const auto j = nlohmann::json::parse(test::read_file(golden / "config.json"));
  EXPECT_EQ(c.llm.hidden_size, j["llm_config"]["hidden_size"].get<int>());
  EXPECT_EQ(c.llm.num_key_value_heads, j["llm_config"]["num_key_value_heads"].get<int>());
  EXPECT_EQ(c.vision.num_hidden_layers, j["vision_config"]["num_hidden_layers"].get<int>());
  EXPECT_EQ(c.tile_size, j["tiny_test"]["internvl_tile_size"].get<int>());
  EXPECT_EQ(c.sam_image_size, j["tiny_test"]["sam_target_length"].get<int>());
  // The image tokens per tile of the reference run.
  EXPECT_EQ(c.tokens_per_tile(),
            nlohmann::json::parse(test::read_file(golden / "e2e.json"))["image_tokens_per_tile"].get<int>());
  EXPECT_TRUE(c.grounding.from_checkpoint_config);
  EXPECT_EQ(c.grounding.hiera.stages, j["grounding_encoder_config"]["hiera"]["stages"].get<std::vector<int>>());
  EXPECT_EQ(c.grounding.neck.d_model, j["grounding_encoder_config"]["neck"]["d_model"].get<int>());
  EXPECT_EQ(c.special_token_ids.at("[SEG]"), j["tiny_test"]["special_token_ids"]["[SEG]"].get<int64_t>());
  EXPECT_EQ(c.llm.eos_token_id, j["llm_config"]["eos_token_id"].get<int64_t>());
}

TEST(ModelConfigTest, RealSizeDefaultsWithoutOverrides) {
  ModelConfig c = ModelConfig::parse(R"({"model_type":"sa2va_chat","vision_config":{},"llm_config":{}})", "inline");
  EXPECT_EQ(c.tokens_per_tile(), 256);
  EXPECT_EQ(c.sam_image_size, 1024);
  EXPECT_EQ(c.grounding.hiera.embed_dim, 144);
  EXPECT_EQ(c.llm.num_hidden_layers, 24);
  EXPECT_FALSE(c.grounding.from_checkpoint_config);
}

TEST(ModelConfigTest, ClearErrors) {
  auto err = [](const std::string& text) {
    try {
      ModelConfig::parse(text, "cfg.json");
    } catch (const InferenceError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err("{").find("cfg.json: not valid JSON"), std::string::npos);
  EXPECT_NE(err(R"({"model_type":"llava"})").find("not a UniBiomed"), std::string::npos);
  EXPECT_NE(err(R"({"model_type":"sa2va_chat","llm_config":{}})").find("missing \"vision_config\""), std::string::npos);
  EXPECT_NE(err(R"({"model_type":"sa2va_chat","vision_config":{},"llm_config":{"hidden_size":"big"}})")
                .find("\"hidden_size\" has the wrong type"),
            std::string::npos);
  EXPECT_NE(err(R"({"model_type":"sa2va_chat","vision_config":{},"llm_config":{"num_attention_heads":5}})")
                .find("heads do not divide"),
            std::string::npos);
}

}  // namespace
}  // namespace unibiomed::inference
