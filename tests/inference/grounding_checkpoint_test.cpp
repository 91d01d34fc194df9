// Random checkpoints of the real layout, the weights hash, and the commands around them
// (`model make-random`, `model info`, `ask`) run as real programs.
// Independent references: the reference checkpoint's own header (tests/reference model.safetensors,
// written by the original code), the FIPS 180-2 SHA-256 examples, the sha256sum program,
// Pillow for reading masks. The layout table itself: core_checkpoint_layout_test.cpp.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "inference/error.h"
#include "inference/grounded_model.h"
#include "inference/model_config.h"
#include "inference/random_checkpoint.h"
#include "inference/runtime.h"
#include "inference/safetensors_file.h"
#include "inference/tokenizer.h"
#include "inference/weights.h"
#include "inference/weights_hash.h"
#include "tests/inference/grounding_test_support.h"
#include "tests/inference/reference_answer_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::inference {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TEST(Sha256, Fips180Examples) {
  EXPECT_EQ(Sha256::of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256::of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256::of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // One million 'a', fed in uneven pieces.
  Sha256 h;
  const std::string a(1'000'000, 'a');
  size_t at = 0;
  for (size_t piece = 1; at < a.size(); piece = piece * 3 % 1001 + 1) {
    const size_t n = std::min(piece, a.size() - at);
    h.update(a.data() + at, n);
    at += n;
  }
  EXPECT_EQ(Sha256::hex(h.finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

std::string sha256sum_of(const fs::path& file) {
  auto r = test::run_command({"sha256sum", file.string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output.substr(0, 64);
}

TEST(WeightsHash, EqualsSha256sumAndTheManifestAndIsCached) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const auto manifest = json::parse(test::read_file(test::reference_dir() / "manifest.json"));
  const auto golden = weights_hash(test::reference_dir(), /*use_cache=*/false);
  EXPECT_EQ(golden.sha256, manifest["files"]["model.safetensors"]["sha256"].get<std::string>());
  EXPECT_FALSE(fs::exists(test::reference_dir() / "unibiomed-weights-hash.json"));

  test::TempDir dir;
  fs::copy_file(test::reference_dir() / "model.safetensors", dir / "model.safetensors");
  auto first = weights_hash(dir.path());
  EXPECT_FALSE(first.from_cache);
  EXPECT_EQ(first.sha256, sha256sum_of(dir / "model.safetensors"));
  EXPECT_EQ(first.method, "sha256 of model.safetensors");
  auto second = weights_hash(dir.path());
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.sha256, first.sha256);
  // A changed file invalidates the cache (size differs).
  {
    std::ofstream out(dir / "model.safetensors", std::ios::app | std::ios::binary);
    out << "x";
  }
  auto third = weights_hash(dir.path());
  EXPECT_FALSE(third.from_cache);
  EXPECT_EQ(third.sha256, sha256sum_of(dir / "model.safetensors"));
  EXPECT_NE(third.sha256, first.sha256);
}

TEST(WeightsHash, ShardsAreHashedConcatenatedInNameOrder) {
  test::TempDir dir;
  write_safetensors(dir / "model-00002-of-00002.safetensors", {{"b", DType::F32, {1}, std::vector<std::byte>(4)}});
  write_safetensors(dir / "model-00001-of-00002.safetensors", {{"a", DType::F32, {2}, std::vector<std::byte>(8)}});
  test::write_file(dir / "model.safetensors.index.json",
                   R"({"weight_map": {"b": "model-00002-of-00002.safetensors", "a": "model-00001-of-00002.safetensors"}})");
  const auto h = weights_hash(dir.path(), false);
  ASSERT_EQ(h.files.size(), 2u);
  EXPECT_EQ(h.files[0].filename(), "model-00001-of-00002.safetensors");
  const std::string cat = test::read_file(h.files[0]) + test::read_file(h.files[1]);
  EXPECT_EQ(h.sha256, Sha256::of(cat));
  EXPECT_EQ(h.method, "sha256 of 2 shards concatenated in name order");
  test::TempDir empty;
  EXPECT_THROW(weights_hash(empty.path()), InferenceError);
  EXPECT_THROW(weights_hash(empty / "nothing"), InferenceError);
}

TEST(RandomCheckpoint, SeededDeterministicAndLoadable) {
  test::TempDir a, b, c, d;
  RandomCheckpointOptions o;
  o.kind = "tiny";
  o.seed = 11;
  const auto s = write_random_checkpoint(a.path(), o);
  write_random_checkpoint(b.path(), o);
  o.seed = 12;
  write_random_checkpoint(c.path(), o);
  o.seed = 11;
  o.dtype = DType::BF16;
  write_random_checkpoint(d.path(), o);
  EXPECT_EQ(s.tensors, 437);
  EXPECT_EQ(weights_hash(a.path(), false).sha256, weights_hash(b.path(), false).sha256);
  EXPECT_NE(weights_hash(a.path(), false).sha256, weights_hash(c.path(), false).sha256);

  // bfloat16 holds the float32 values rounded to 8 significant bits.
  Weights f32(Checkpoint::open(a.path()), ComputeOptions{});
  Weights bf16(Checkpoint::open(d.path()), ComputeOptions{});
  for (const char* name : {"language_model.model.embed_tokens.weight",
                           "grounding_encoder.sam2_model.image_encoder.trunk.blocks.3.attn.qkv.weight",
                           "vision_model.encoder.layers.1.norm1.weight"}) {
    const auto shape = f32.shape_of(name);
    EXPECT_EQ(Checkpoint::open(d.path())->find(name)->dtype, DType::BF16);
    EXPECT_TRUE(test::close(name, bf16.get(name, shape), f32.get(name, shape), 0.0, 1.0 / 256));
  }
  // Sane initial values: norms near 1, matrices with a spread of 1/sqrt(fan_in).
  const auto norm = f32.get("language_model.model.norm.weight", {64});
  EXPECT_NEAR(norm.mean().item<double>(), 1.0, 0.02);
  const auto w = f32.get("grounding_encoder.sam2_model.sam_mask_decoder.transformer.layers.0.mlp.layers.1.weight", {32, 2048});
  EXPECT_NEAR(w.std().item<double>(), 1.0 / std::sqrt(2048.0), 0.1 / std::sqrt(2048.0));

  // The tokenizer agrees with the config's special ids, and the whole model loads and answers.
  const auto config = ModelConfig::load(a / "config.json");
  Tokenizer::load(a.path()).check_token_ids(config.special_token_ids, "tiny config");
  auto model = GroundedModel::load(a.path());
  EXPECT_TRUE(model->identity().unused.empty());
  AnswerOptions ao;
  ao.max_new_tokens = 4;
  RgbImage image(33, 20);
  for (size_t i = 0; i < image.rgb.size(); ++i) image.rgb[i] = static_cast<uint8_t>(i * 7);
  const auto answer = model->answer(image, "Please segment the liver.", ao);
  EXPECT_LE(answer.ids.size(), 4u);
  EXPECT_EQ(model->weights_hash(), weights_hash(a.path(), false).sha256);
}

TEST(RandomCheckpoint, BadOptions) {
  test::TempDir dir;
  RandomCheckpointOptions o;
  o.kind = "huge";
  EXPECT_THROW(write_random_checkpoint(dir.path(), o), InferenceError);
  o.kind = "tiny";
  o.dtype = DType::I32;
  EXPECT_THROW(write_random_checkpoint(dir.path(), o), InferenceError);
  o.dtype.reset();
  o.tokenizer_dir = dir / "no-such-tokenizer";
  try {
    write_random_checkpoint(dir / "out", o);
    FAIL();
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-tokenizer"), std::string::npos) << e.what();
  }
}

// ---- The commands, as a user runs them ----

class CommandLine : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(test::cli_path())) << test::cli_missing_reason();
  }
  test::CommandResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), test::cli_path().string());
    return test::run_command(args);
  }
};

TEST_F(CommandLine, MakeRandomThenInfo) {
  test::TempDir dir;
  auto made = cli({"model", "make-random", "--config", "tiny", "--seed", "3", (dir / "m").string()});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  EXPECT_NE(made.output.find("437 tensors"), std::string::npos) << made.output;
  auto info = cli({"model", "info", "--json", (dir / "m").string()});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  const json j = json::parse(info.output);
  int64_t total = 0;
  const auto ckpt = Checkpoint::open(dir / "m");
  for (const auto& n : ckpt->names()) total += ckpt->find(n)->numel();
  EXPECT_EQ(j["parameters"].get<int64_t>(), total);
  EXPECT_TRUE(j["layout"]["missing"].empty());
  EXPECT_TRUE(j["layout"]["unexpected"].empty());
  EXPECT_EQ(j["weights_hash"]["sha256"].get<std::string>(), sha256sum_of(dir / "m" / "model.safetensors"));
  EXPECT_EQ(j["dtypes"]["F32"]["tensors"].get<int>(), 437);
  EXPECT_GT(j["parts"]["SAM2 video/memory (not used by the 2D path)"]["tensors"].get<int>(), 0);
  // What --dtype auto computes in here: bfloat16 only on a CPU with bfloat16 dot products.
  const std::string auto_cpu = cpu_has_native_bfloat16() ? "bfloat16" : "float32";
  EXPECT_EQ(j["compute"]["auto_dtype_cpu"], auto_cpu);
  EXPECT_EQ(j["compute"]["cpu_bfloat16_dot_products"], cpu_has_native_bfloat16());
  EXPECT_EQ(ComputeOptions::from_strings("cpu").dtype, auto_cpu == "bfloat16" ? torch::kBFloat16 : torch::kFloat32);
  // Text form, second run from the cache.
  auto text = cli({"model", "info", (dir / "m").string()});
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("layout         complete"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("cached"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("compute        dtype auto: " + auto_cpu + " on this CPU"), std::string::npos)
      << text.output;

  // A tensor of another shape is reported by name.
  std::vector<TensorBlob> blobs;
  for (const auto& name : ckpt->names()) {
    const TensorView* v = ckpt->find(name);
    TensorBlob b{name, v->dtype, v->shape, std::vector<std::byte>(v->data, v->data + v->nbytes)};
    if (name == "text_hidden_fcs.2.bias") {
      b.shape = {31};
      b.bytes.resize(31 * 4);
    }
    blobs.push_back(std::move(b));
  }
  fs::create_directories(dir / "bad");
  fs::copy_file(dir / "m" / "config.json", dir / "bad" / "config.json");
  write_safetensors(dir / "bad" / "model.safetensors", blobs);
  auto bad = cli({"model", "info", "--no-hash", (dir / "bad").string()});
  EXPECT_EQ(bad.exit_code, 0) << bad.output;
  EXPECT_NE(bad.output.find("other shape: text_hidden_fcs.2.bias [31]"), std::string::npos) << bad.output;
}

TEST_F(CommandLine, InfoOnTheReferenceLeavesItsFolderAlone) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  auto info = cli({"model", "info", "--json", "--no-cache", test::reference_dir().string()});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  const auto manifest = json::parse(test::read_file(test::reference_dir() / "manifest.json"));
  const json j = json::parse(info.output);
  EXPECT_EQ(j["weights_hash"]["sha256"], manifest["files"]["model.safetensors"]["sha256"]);
  const auto config = json::parse(test::read_file(test::reference_dir() / "config.json"));
  EXPECT_EQ(j["sam2"]["image_size"].get<int>(), config["grounding_encoder_config"]["image_size"].get<int>());
  EXPECT_FALSE(fs::exists(test::reference_dir() / "unibiomed-weights-hash.json"));
}

TEST_F(CommandLine, UsageAndInputErrors) {
  test::TempDir dir;
  auto r = cli({"model", "make-random", "--config", "huge", (dir / "x").string()});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("tiny or real"), std::string::npos);
  r = cli({"model", "info", (dir / "none").string()});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  r = cli({"ask", "image.png", "question"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--model"), std::string::npos) << r.output;
  r = cli({"ask", "--model", dir.path().string(), (dir / "missing.png").string(), "question"});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("missing.png"), std::string::npos) << r.output;
  const fs::path png = dir / "grey.png";
  ASSERT_EQ(test::run_command({"/usr/bin/python3", "-c",
                               "import sys; from PIL import Image; Image.new('L', (20, 10), 90).save(sys.argv[1])",
                               png.string()})
                .exit_code,
            0);
  r = cli({"ask", "--model", (dir / "no-model").string(), png.string(), "question"});
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("no-model"), std::string::npos) << r.output;
  // A damaged DICOM file is refused before the model loads, named once with what is wrong.
  const std::string truncated = "/usr/lib/python3/dist-packages/pydicom/data/test_files/MR_truncated.dcm";
  ASSERT_TRUE(fs::exists(truncated)) << test::install_hint(truncated + " (pydicom's test files)",
                                                           "Debian's python3-pydicom");
  r = cli({"ask", "--model", (dir / "no-model").string(), truncated, "question"});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("truncated or damaged"), std::string::npos) << r.output;
  const size_t named = r.output.find(truncated);
  EXPECT_NE(named, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(truncated, named + 1), std::string::npos) << r.output;
}

TEST_F(CommandLine, AskOnDicomAndPngWithARandomModel) {
  test::TempDir dir;
  ASSERT_EQ(cli({"model", "make-random", "--config", "tiny", (dir / "m").string()}).exit_code, 0);
  const fs::path ct = "/usr/lib/python3/dist-packages/pydicom/data/test_files/CT_small.dcm";
  ASSERT_TRUE(fs::exists(ct)) << test::install_hint(ct.string() + " (pydicom's test files)", "Debian's python3-pydicom");
  auto r = cli({"ask", "--model", (dir / "m").string(), "--max-new-tokens", "3", "--json", "--mask-out",
                (dir / "masks").string(), ct.string(), "Please segment liver in CT."});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(r.output);
  EXPECT_LE(j["ids"].size(), 3u);
  EXPECT_TRUE(j.contains("text"));
  EXPECT_TRUE(j["segments"].is_array());
  r = cli({"ask", "--model", (dir / "m").string(), "--view", "5", ct.string(), "q"});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("out of range"), std::string::npos) << r.output;
}

// The reference answer through the program: same ids, and each mask PNG equal to the reference's
// boolean mask except where the reference logit is within 1e-3 of 0 (checked by Pillow/numpy).
TEST_F(CommandLine, AskReproducesTheReferenceAnswerAndMask) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  test::TempDir dir;
  test::write_reference_tokenizer(dir / "tok");
  const auto ref = test::E2eAnswer::load();
  const fs::path e2e = test::reference_dir() / "e2e.safetensors";
  // Reads one tensor of a .safetensors file with numpy.
  const std::string read_tensor =
      "import sys, json, struct, numpy as np\nfrom PIL import Image\n"
      "def t(path, name, dt):\n"
      "  f = open(path, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n))\n"
      "  e = h[name]; f.seek(8 + n + e['data_offsets'][0])\n"
      "  return np.frombuffer(f.read(e['data_offsets'][1] - e['data_offsets'][0]), dt).reshape(e['shape'])\n";
  // The e2e image (e2e.safetensors image_rgb_u8, the procedural image of e2e.json), written by Pillow.
  const std::string make_png =
      read_tensor + "Image.fromarray(t(sys.argv[2], 'image_rgb_u8', np.uint8)).save(sys.argv[1])\n";
  auto made = test::run_command({"/usr/bin/python3", "-c", make_png, (dir / "e2e.png").string(), e2e.string()});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  // float32: the reference ran in float32 ("auto" is bfloat16 on a CPU with bfloat16 dot products).
  auto r = cli({"ask", "--model", test::reference_dir().string(), "--tokenizer", (dir / "tok").string(), "--dtype",
                "float32", "--max-new-tokens", std::to_string(ref.max_new_tokens), "--json", "--mask-out",
                (dir / "masks").string(), (dir / "e2e.png").string(), ref.prompt_text});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(r.output);
  EXPECT_EQ(j["ids"], ref.record["generated_ids"]);
  EXPECT_EQ(j["stop_reason"], ref.stop_reason(Tokenizer::load(dir / "tok")));
  ASSERT_EQ(static_cast<int64_t>(j["segments"].size()), ref.masks());
  const std::string check =
      read_tensor +
      "m = np.array(Image.open(sys.argv[1]))\n"
      "ref = t(sys.argv[2], sys.argv[3] + 'final_mask_bool', np.bool_)[0]\n"
      "logit = t(sys.argv[2], sys.argv[3] + 'final_mask_logits_orig_res', np.float32)[0]\n"
      "assert m.shape == ref.shape, (m.shape, ref.shape)\n"
      "assert set(np.unique(m)) <= {0, 255}, np.unique(m)\n"
      "bad = ((m == 255) != ref) & (np.abs(logit) >= 1e-3)\n"
      "print('differing', int(((m == 255) != ref).sum()), 'away from the boundary', int(bad.sum()))\n"
      "sys.exit(1 if bad.any() else 0)\n";
  for (size_t k = 0; k < j["segments"].size(); ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "mask-%03zu.png", k);
    EXPECT_EQ(j["segments"][k]["mask"], name);
    auto c = test::run_command({"/usr/bin/python3", "-c", check, (dir / "masks" / name).string(), e2e.string(),
                                "seg" + std::to_string(k) + "."});
    EXPECT_EQ(c.exit_code, 0) << c.output;
    std::cout << "[ compare  ] ask " << name << " vs reference seg" << k << ": " << c.output;
  }
}

// The plumbing fixture of `make-random --answer`: the same answer to different questions about
// different images, through the real model code, with a mask per [SEG]; refused when the
// answer's tokens repeat (the construction cannot express that).
TEST(RandomCheckpoint, FixedAnswerFixtureAnswersEveryQuestionThatWay) {
  test::TempDir dir;
  RandomCheckpointOptions o;
  o.fixed_answer = "Sure, [SEG].";
  write_random_checkpoint(dir / "fixed", o);
  const auto model = GroundedModel::load(dir / "fixed");
  // Textured images: on a constant image these random SAM2 weights give no mask pixels at all.
  RgbImage dark(40, 30), bright(64, 64);
  for (size_t i = 0; i < dark.rgb.size(); ++i) dark.rgb[i] = static_cast<uint8_t>(i * 13 % 97);
  for (size_t i = 0; i < bright.rgb.size(); ++i) bright.rgb[i] = static_cast<uint8_t>(i * 7 % 251);
  for (const auto& [image, question] :
       std::vector<std::pair<RgbImage, std::string>>{{dark, "Please segment liver in CT."},
                                                      {bright, "Could you describe the abnormality in this image?"}}) {
    const GroundedAnswer a = model->answer(image, question);
    EXPECT_EQ(a.text, "Sure, [SEG].<|im_end|>") << question;  // the end token is kept, as the reference does
    EXPECT_EQ(a.stop_reason, "eos");
    ASSERT_EQ(a.segments.size(), 1u);
    EXPECT_EQ(a.segments[0].width, image.width);
    EXPECT_GT(a.segments[0].area(), 0) << "the random SAM2 weights gave an empty mask for " << question;
  }
  o.fixed_answer = "It is [SEG].";  // ' ' twice
  try {
    write_random_checkpoint(dir / "repeated", o);
    ADD_FAILURE() << "a repeated token was accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("occurs twice"), std::string::npos) << e.what();
  }
  // ... and leaves no loadable checkpoint: a plain random one would answer something else.
  EXPECT_FALSE(std::filesystem::exists(dir / "repeated" / "model.safetensors"));
}

}  // namespace
}  // namespace unibiomed::inference
