// GroundedModel end to end on the tiny reference checkpoint (tests/reference): the generated ids,
// the answer text and the [SEG] mask of predict_forward (e2e.safetensors / e2e.json), SAM2
// features reused across questions, batches equal to single runs, cancellation and load errors.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "inference/error.h"
#include "inference/grounded_model.h"
#include "inference/random_checkpoint.h"
#include "inference/tokenizer.h"
#include "tests/inference/grounding_test_support.h"
#include "tests/inference/reference_answer_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::inference {
namespace {

namespace fs = std::filesystem;
using test::close;
using test::GoldenTensors;

RgbImage image_of(const torch::Tensor& u8) {
  RgbImage im(static_cast<int>(u8.size(1)), static_cast<int>(u8.size(0)));
  std::memcpy(im.rgb.data(), u8.contiguous().data_ptr<uint8_t>(), im.rgb.size());
  return im;
}

torch::Tensor mask_tensor(const GroundedSegment& s) {
  return torch::from_blob(const_cast<uint8_t*>(s.mask.data()), {s.height, s.width}, torch::kUInt8).clone();
}

class GroundedModelGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::have_reference()) return;  // SetUp fails each test, naming what is missing
    tokenizer_dir_ = std::make_unique<test::TempDir>("unibiomed-grounding-tok");
    test::write_reference_tokenizer(tokenizer_dir_->path());
    if (!test::test_device_usable()) return;  // SetUp fails each test with the reason
    LoadOptions o;
    o.tokenizer_dir = tokenizer_dir_->path();
    o.device = test::test_device_string();
    o.dtype = "float32";  // "auto" would be bfloat16 on a GPU; the goldens are float32
    model_ = GroundedModel::load(test::reference_dir(), o).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
    tokenizer_dir_.reset();
  }
  void SetUp() override {
    ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
    ASSERT_TRUE(test::test_device_usable());
  }
  static GroundedModel* model_;
  static std::unique_ptr<test::TempDir> tokenizer_dir_;
};
GroundedModel* GroundedModelGolden::model_ = nullptr;
std::unique_ptr<test::TempDir> GroundedModelGolden::tokenizer_dir_;

TEST_F(GroundedModelGolden, PredictForwardIdsTextAndMask) {
  GoldenTensors g("e2e.safetensors");
  const auto ref = test::E2eAnswer::load();
  const Tokenizer tokenizer = Tokenizer::load(tokenizer_dir_->path());
  const RgbImage image = image_of(g["image_rgb_u8"]);
  ASSERT_EQ(image.width, ref.width);
  ASSERT_EQ(image.height, ref.height);
  AnswerOptions o;
  o.max_new_tokens = ref.max_new_tokens;  // the reference's limit (its answer may end there)
  const GroundedAnswer a = model_->answer(image, ref.prompt_text, o);

  const auto expected_ids = g["generated_ids"];
  ASSERT_EQ(a.ids.size(), static_cast<size_t>(expected_ids.numel()));
  for (size_t i = 0; i < a.ids.size(); ++i) EXPECT_EQ(a.ids[i], expected_ids[static_cast<int64_t>(i)].item<int64_t>()) << i;
  EXPECT_EQ(a.text, ref.prediction_text);
  EXPECT_EQ(a.stop_reason, ref.stop_reason(tokenizer));
  EXPECT_EQ(a.parsed.seg_count, ref.seg_tokens_in_text());

  // One mask per [SEG] that has a hidden state: seg0.*, seg1.*, ... of the reference.
  ASSERT_EQ(static_cast<int64_t>(a.segments.size()), ref.masks());
  const double pixels = static_cast<double>(ref.width) * ref.height;
  for (size_t k = 0; k < a.segments.size(); ++k) {
    const GroundedSegment& s = a.segments[k];
    const std::string seg = "seg" + std::to_string(k) + ".";
    EXPECT_EQ(s.width, ref.width);
    EXPECT_EQ(s.height, ref.height);
    EXPECT_EQ(s.seg_index, static_cast<int>(k));
    const auto logits = g[seg + "final_mask_logits_orig_res"][0];
    EXPECT_TRUE(
        test::masks_agree("answer mask " + std::to_string(k), mask_tensor(s), g[seg + "final_mask_bool"][0], logits));
    auto prob = torch::from_blob(const_cast<float*>(s.probability.data()), {s.height, s.width}, torch::kFloat32);
    // sigmoid is 1/4-Lipschitz: the logit tolerance 1e-4 becomes 2.5e-5 on probabilities.
    EXPECT_TRUE(close("probability map " + std::to_string(k), prob, torch::sigmoid(logits), 2.5e-5, 2.5e-5));
    EXPECT_TRUE(close("IoU of the chosen mask " + std::to_string(k), torch::tensor({s.iou}),
                      g[seg + "ious"].max().view({1}), 1e-5));
    EXPECT_TRUE(close("object score " + std::to_string(k), torch::tensor({s.object_score}),
                      g[seg + "object_score_logits"].view({1}), 1e-4));
    // Fraction of foreground pixels recorded by the reference, within 10 pixels.
    EXPECT_NEAR(static_cast<double>(s.area()) / pixels, ref.record.at("mask_foreground_fraction").at(k).get<double>(),
                10.0 / pixels);
  }
}

TEST_F(GroundedModelGolden, SecondQuestionReusesTheImageFeatures) {
  GoldenTensors g("e2e.safetensors");
  const auto ref = test::E2eAnswer::load();
  auto encoded = model_->encode(image_of(g["image_rgb_u8"]));
  EXPECT_EQ(encoded->tiles(), ref.tiles);
  EXPECT_FALSE(encoded->has_grounding_features());
  AnswerOptions o;
  o.max_new_tokens = ref.max_new_tokens;
  // The question once without its "<image>" (answer() puts it in front), once as the reference asked it.
  const std::string image_tag = "<image>";
  const std::string bare =
      ref.prompt_text.rfind(image_tag, 0) == 0 ? ref.prompt_text.substr(image_tag.size()) : ref.prompt_text;
  const auto first = model_->answer(*encoded, bare, o);
  EXPECT_EQ(first.ids, ref.ids);
  ASSERT_EQ(static_cast<int64_t>(first.segments.size()), ref.masks());
  if (first.segments.empty()) {
    EXPECT_FALSE(encoded->has_grounding_features());
    GTEST_SKIP() << "the reference answer has no [SEG] with a hidden state: no SAM2 features to reuse";
  }
  EXPECT_TRUE(encoded->has_grounding_features());
  const auto second = model_->answer(*encoded, ref.prompt_text, o);
  EXPECT_EQ(second.ids, first.ids);
  ASSERT_EQ(second.segments.size(), first.segments.size());
  for (size_t k = 0; k < first.segments.size(); ++k) EXPECT_EQ(second.segments[k].mask, first.segments[k].mask) << k;
}

TEST_F(GroundedModelGolden, BatchOfSlicesEqualsSingleAnswers) {
  GoldenTensors e("e2e.safetensors");
  GoldenTensors s("sam2.safetensors");
  const auto ref = test::E2eAnswer::load();
  // Two sizes (different tile counts, where their sizes give them) mixed, batches of 3.
  const std::vector<RgbImage> images{image_of(e["image_rgb_u8"]), image_of(s["image_rgb_u8"]),
                                     image_of(e["image_rgb_u8"]), image_of(s["image_rgb_u8"])};
  AnswerOptions o;
  o.max_new_tokens = ref.max_new_tokens;
  o.batch_size = 3;
  const auto batch = model_->answer_batch(images, ref.prompt_text, o);
  ASSERT_EQ(batch.size(), images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const auto single = model_->answer(images[i], ref.prompt_text, o);
    EXPECT_EQ(batch[i].ids, single.ids) << "image " << i;
    ASSERT_EQ(batch[i].segments.size(), single.segments.size()) << "image " << i;
    for (size_t k = 0; k < single.segments.size(); ++k) {
      EXPECT_EQ(batch[i].segments[k].mask, single.segments[k].mask) << "image " << i;
      EXPECT_NEAR(batch[i].segments[k].iou, single.segments[k].iou, 1e-5);
    }
  }
  EXPECT_EQ(batch[0].ids, ref.ids);
  EXPECT_EQ(batch[0].ids, batch[2].ids);
}

TEST_F(GroundedModelGolden, CancellationStopsWithoutSegments) {
  GoldenTensors g("e2e.safetensors");
  std::atomic<bool> cancel{false};
  auto encoded = model_->encode(image_of(g["image_rgb_u8"]));
  cancel = true;
  AnswerOptions o;
  o.cancel = &cancel;
  const auto a = model_->answer(*encoded, "Please segment the liver.", o);
  EXPECT_TRUE(a.cancelled());
  EXPECT_TRUE(a.segments.empty());
  EXPECT_FALSE(encoded->has_grounding_features());
  EXPECT_THROW(model_->encode(image_of(g["image_rgb_u8"]), &cancel), InferenceError);
}

TEST_F(GroundedModelGolden, EveryTensorOutsideTheVideoPartsIsUsed) {
  const ModelIdentity& id = model_->identity();
  EXPECT_TRUE(id.unused.empty()) << id.unused.size() << " unused, first: " << (id.unused.empty() ? "" : id.unused[0]);
  ASSERT_FALSE(id.video_only.empty());
  for (const auto& name : id.video_only) {
    bool listed = false;
    for (const auto& p : video_only_prefixes()) listed |= name.rfind(p, 0) == 0;
    EXPECT_TRUE(listed) << name;
  }
  EXPECT_EQ(id.device, test::test_device_string());
  EXPECT_EQ(id.dtype, "Float");
  // 437 tensors of the golden checkpoint; parameters = sum of their sizes (from the header).
  int64_t total = 0;
  auto ckpt = Checkpoint::open(test::reference_dir());
  for (const auto& n : ckpt->names()) total += ckpt->find(n)->numel();
  EXPECT_EQ(id.parameters, total);
}

TEST_F(GroundedModelGolden, BadImagesAreNamed) {
  RgbImage empty;
  try {
    model_->encode_batch({RgbImage(4, 4), empty});
    FAIL() << "empty image accepted";
  } catch (const InferenceError& e) {
    EXPECT_NE(std::string(e.what()).find("image 2 of 2"), std::string::npos) << e.what();
  }
}

TEST(GroundedModelLoad, MissingPiecesAreNamed) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  auto expect_error = [](const fs::path& dir, const LoadOptions& o, const std::string& needle) {
    try {
      GroundedModel::load(dir, o);
      ADD_FAILURE() << "loaded " << dir;
    } catch (const InferenceError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  test::TempDir dir;
  expect_error(dir / "nothing", {}, "does not exist");
  expect_error(dir.path(), {}, "has no config.json");
  fs::copy_file(test::reference_dir() / "config.json", dir / "config.json");
  test::write_reference_tokenizer(dir.path());
  expect_error(dir.path(), {}, "model.safetensors");
  // The golden folder has no tokenizer files of its own.
  expect_error(test::reference_dir(), {}, "vocab.json");
  // A tokenizer whose [SEG] id disagrees with config.json's tiny_test.special_token_ids.
  test::TempDir wrong;
  auto specials = nlohmann::json::parse(test::read_file(test::reference_dir() / "tiny_vocab.json"))
                      .at("special_tokens")
                      .get<std::map<std::string, int64_t>>();
  specials["[SEG]"] = 300;
  write_byte_level_tokenizer(wrong.path(), specials);
  LoadOptions o;
  o.tokenizer_dir = wrong.path();
  expect_error(test::reference_dir(), o, "\"[SEG]\"");
  LoadOptions dev;
  dev.device = "tpu";
  expect_error(test::reference_dir(), dev, "tpu");
}

// Every dtype the options offer, end to end on the test device (the CPU unless
// UNIBIOMED_TEST_DEVICE says otherwise): bfloat16 (libtorch 1.13 has no bfloat16
// transposed convolution on the CPU: the mask decoder's upscaling is a matrix product there)
// follows float32; float16 either runs or is refused at load with one line saying what to use.
TEST(GroundedModelDtypes, EveryDtypeAnswersOrIsRefusedClearly) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  ASSERT_TRUE(test::test_device_usable());
  test::TempDir tok;
  test::write_reference_tokenizer(tok.path());
  GoldenTensors g("e2e.safetensors");
  const auto ref = test::E2eAnswer::load();
  const RgbImage image = image_of(g["image_rgb_u8"]);
  // The first [SEG] that has a mask in the reference answer (seg0.*): its mask is compared.
  const auto seg_at_ref = test::first_index_of(ref.ids, ref.seg_id);
  const bool has_mask = ref.masks() > 0;
  std::string skipped;
  for (const std::string dtype : {"bfloat16", "float16"}) {
    LoadOptions o;
    o.tokenizer_dir = tok.path();
    o.dtype = dtype;
    o.device = test::test_device_string();
    bool runs = true;
    try {
      const auto a = torch::ones({2, 2}, torch::TensorOptions()
                                             .dtype(dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat16)
                                             .device(test::test_device()));
      (void)torch::addmm(a, a, a);
    } catch (const c10::Error&) {
      runs = false;
    }
    if (!runs) {
      try {
        GroundedModel::load(test::reference_dir(), o);
        ADD_FAILURE() << dtype << " loaded although this libtorch has no " << dtype << " matrix product on the CPU";
      } catch (const InferenceError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("\"" + dtype + "\" cannot run on the CPU"), std::string::npos) << what;
        EXPECT_NE(what.find("use float32 or bfloat16"), std::string::npos) << what;
        EXPECT_EQ(what.find('\n'), std::string::npos) << what;
      }
      continue;
    }
    const auto model = GroundedModel::load(test::reference_dir(), o);
    EXPECT_EQ(model->identity().dtype, dtype == "bfloat16" ? "BFloat16" : "Half");
    if (!has_mask) {
      skipped = "the reference answer has no [SEG] with a hidden state: no mask to compare " + dtype + " with";
      continue;
    }
    AnswerOptions ao;
    ao.max_new_tokens = ref.max_new_tokens;
    const GroundedAnswer a = model->answer(image, ref.prompt_text, ao);
    // The ids up to the first [SEG] (those its mask depends on) are the reference's. The random
    // tiny model's later logits lie close together, so the text after it may differ.
    size_t seg_at = 0;
    while (seg_at < a.ids.size() && a.ids[seg_at] != ref.seg_id) ++seg_at;
    ASSERT_LT(seg_at, a.ids.size()) << dtype << ": no [SEG] in " << a.text;
    ASSERT_TRUE(seg_at_ref.has_value());
    EXPECT_EQ(seg_at, *seg_at_ref) << dtype;
    for (size_t i = 0; i <= std::min(seg_at, *seg_at_ref); ++i) EXPECT_EQ(a.ids[i], ref.ids[i]) << dtype << " id " << i;
    ASSERT_GE(a.segments.size(), 1u) << dtype;
    const auto logits = g["seg0.final_mask_logits_orig_res"][0];
    const auto golden = g["seg0.final_mask_bool"][0].to(torch::kBool);
    const auto mask = mask_tensor(a.segments[0]).to(torch::kBool);
    const auto differ = mask.ne(golden);
    // bfloat16 keeps 8 significant bits (relative rounding 2^-9 per value); through the few
    // layers of the tiny model the logits move by a few hundredths, so only pixels whose float32
    // logit lies within 0.25 of the threshold may change side.
    const int64_t changed = differ.sum().item<int64_t>();
    const int64_t far_changed = (differ & logits.abs().ge(0.25)).sum().item<int64_t>();
    const double inter = (mask & golden).sum().item<double>(), uni = (mask | golden).sum().item<double>();
    std::printf("[ compare  ] %s mask: %lld of %lld pixels differ from float32 (%lld where |logit| >= 0.25), IoU %.4f\n",
                dtype.c_str(), static_cast<long long>(changed), static_cast<long long>(mask.numel()),
                static_cast<long long>(far_changed), uni > 0 ? inter / uni : 1.0);
    EXPECT_EQ(far_changed, 0) << dtype;
  }
  if (!skipped.empty()) GTEST_SKIP() << skipped;
}

}  // namespace
}  // namespace unibiomed::inference
