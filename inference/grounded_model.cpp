// SPDX-License-Identifier: GPL-3.0-or-later
// predict_forward (modeling_sa2va_chat.py) split into its steps: InternVL tiles -> image tokens
// spliced into the phi3 prompt -> greedy generation collecting the [SEG] hidden states ->
// text_hidden_fcs -> SAM2 (features once per image) -> best-IoU mask at the original size.
#include "inference/grounded_model.h"

#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "inference/checkpoint_layout.h"
#include "inference/device.h"
#include "inference/error.h"
#include "inference/generation.h"
#include "inference/grounded_model_impl.h"
#include "inference/image_preprocess.h"
#include "inference/image_tiling.h"
#include "inference/prompt.h"
#include "inference/qwen2.h"
#include "inference/runtime.h"
#include "inference/sam2_image_encoder.h"
#include "inference/sam2_mask_decoder.h"
#include "inference/splice.h"
#include "inference/tokenizer.h"
#include "inference/vision_encoder.h"
#include "inference/weights.h"
#include "inference/weights_hash.h"

namespace unibiomed::inference {

namespace fs = std::filesystem;

void GroundedModel::Impl::torch_error(const std::string& step, const c10::Error& error) const {
  throw_inference_error(step, error, compute.device);
}

struct EncodedImage::State {
  const void* owner = nullptr;  // the GroundedModel::Impl that made it
  int width = 0, height = 0, tiles = 0;
  torch::Tensor image_tokens;  // [tiles, tokens_per_tile, H]
  mutable std::mutex mutex;
  RgbImage image;                // kept until the SAM2 features exist
  Sam2ImageFeatures features;    // batch of one; undefined until needed
  bool has_features() const { return features.image_embedding.defined(); }
};

EncodedImage::EncodedImage(std::unique_ptr<State> state) : state_(std::move(state)) {}
EncodedImage::~EncodedImage() = default;
int EncodedImage::width() const { return state_->width; }
int EncodedImage::height() const { return state_->height; }
int EncodedImage::tiles() const { return state_->tiles; }
bool EncodedImage::has_grounding_features() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->has_features();
}

int64_t GroundedSegment::area() const {
  int64_t n = 0;
  for (uint8_t v : mask) n += v ? 1 : 0;
  return n;
}

std::string question_with_image(const std::string& question) {
  return question.find(kImagePlaceholder) == std::string::npos ? std::string(kImagePlaceholder) + question : question;
}

std::shared_ptr<const EncodedImage> GroundedModel::Impl::make_encoded(const RgbImage& image, torch::Tensor tokens) const {
  auto s = std::make_unique<EncodedImage::State>();
  s->owner = this;
  s->width = image.width;
  s->height = image.height;
  s->tiles = static_cast<int>(tokens.size(0));
  s->image_tokens = std::move(tokens);
  s->image = image;
  return std::make_shared<const EncodedImage>(std::move(s));
}

void GroundedModel::Impl::use_cpu_threads() const {
  if (compute.device.is_cpu()) use_cpu_threads_for(compute.dtype == torch::kBFloat16);
}

void GroundedModel::Impl::check_owner(const EncodedImage& image) const {
  if (image.state().owner != this)
    throw InferenceError("an EncodedImage was made by another GroundedModel (encode it with this one)");
}

GenerationOptions GroundedModel::Impl::generation_options(int max_new_tokens, const std::atomic<bool>* cancel,
                                                          size_t prompt_length) const {
  GenerationOptions g;
  g.stop_words = stop_words;
  g.cancel = cancel;
  // The KV cache holds prompt + new tokens within max_position_embeddings (the RoPE tables'
  // length); the tiny checkpoint's 1024 would otherwise refuse the default 2048 new tokens.
  const int64_t room = config.llm.max_position_embeddings - static_cast<int64_t>(prompt_length) + 1;
  if (room < 1)
    throw InferenceError("the prompt has " + std::to_string(prompt_length) + " tokens, more than max_position_embeddings " +
                         std::to_string(config.llm.max_position_embeddings));
  g.max_new_tokens = static_cast<int>(std::min<int64_t>(max_new_tokens, room));
  return g;
}

std::vector<int64_t> GroundedModel::Impl::prompt_ids(const std::string& question, int tiles) const {
  const std::string text =
      build_prompt(question_with_image(question), tiles, static_cast<int>(vision->tokens_per_tile()), config.template_name);
  return tokenizer->encode(text);
}

namespace {

bool is_cancelled(const std::atomic<bool>* cancel) { return cancel && cancel->load(); }

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InferenceError("cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

GroundedModel::GroundedModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GroundedModel::~GroundedModel() = default;

std::unique_ptr<GroundedModel> GroundedModel::load(const fs::path& dir, const LoadOptions& options) try {
  const CpuTensorCachePause no_cache_while_loading;  // every tensor is converted once: nothing to reuse
  if (!fs::is_directory(dir)) throw InferenceError("model folder " + dir.string() + " does not exist");
  if (!fs::is_regular_file(dir / "config.json"))
    throw InferenceError("model folder " + dir.string() + " has no config.json");
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->config = ModelConfig::load(dir / "config.json");
  impl->compute = ComputeOptions::from_strings(options.device, options.dtype);
  const fs::path tok_dir = options.tokenizer_dir.value_or(dir);
  impl->tokenizer = Tokenizer::load(tok_dir);
  const Tokenizer& tok = *impl->tokenizer;
  if (!impl->config.special_token_ids.empty())
    tok.check_token_ids(impl->config.special_token_ids, (dir / "config.json").string() + " tiny_test.special_token_ids");
  if (tok.size() > impl->config.llm.vocab_size)
    throw InferenceError("tokenizer in " + tok_dir.string() + " has " + std::to_string(tok.size()) +
                         " ids but the language model's vocab_size is " + std::to_string(impl->config.llm.vocab_size));
  impl->image_context_id = tok.token_id(kImageContextToken);
  tok.token_id(kSegToken);  // a tokenizer without [SEG] cannot ground anything
  impl->stop_words = chat_template(impl->config.template_name).stop_words;
  impl->tiling = TilingOptions::from_config(impl->config);

  auto checkpoint = Checkpoint::open(dir);
  {
    Weights weights(checkpoint, impl->compute);
    impl->vision = std::make_unique<VisionEncoder>(weights, impl->config);
    impl->llm = std::make_unique<Qwen2Model>(weights, impl->config.llm);
    impl->seg_head = std::make_unique<LanguagePromptProjector>(weights, impl->config.llm.hidden_size,
                                                                impl->config.grounding.neck.d_model);
    impl->sam_encoder = std::make_unique<Sam2ImageEncoder>(weights, impl->config.grounding);
    impl->sam_decoder = std::make_unique<Sam2MaskDecoder>(weights, impl->config.grounding);
    ModelIdentity& id = impl->identity;
    id.dir = dir;
    id.device = impl->compute.device.str();
    id.dtype = std::string(c10::toString(impl->compute.dtype));
    const auto video = video_only_prefixes();
    id.unused = weights.unused(video);
    for (const auto& name : weights.unused())
      if (std::find(id.unused.begin(), id.unused.end(), name) == id.unused.end()) id.video_only.push_back(name);
    for (const auto& name : checkpoint->names()) id.parameters += checkpoint->find(name)->numel();
    // The memory parts are read after the 2D parts' bookkeeping, so `video_only` keeps listing
    // what the image path does not read.
    if (Sam2Memory::available(weights)) {
      const Sam2MemoryConfig memory = memory_config_from_json(read_text_file(dir / "config.json"),
                                                              (dir / "config.json").string());
      impl->sam_memory = std::make_unique<Sam2Memory>(weights, impl->config.grounding, memory);
    }
  }
  return std::unique_ptr<GroundedModel>(new GroundedModel(std::move(impl)));
} catch (const c10::Error& e) {
  throw_inference_error("loading the model", e, options.device, /*loading=*/true);
}

const ModelConfig& GroundedModel::config() const { return impl_->config; }
const ModelIdentity& GroundedModel::identity() const { return impl_->identity; }

std::string GroundedModel::weights_hash() const {
  std::lock_guard<std::mutex> lock(impl_->hash_mutex);
  if (impl_->hash.empty()) impl_->hash = inference::weights_hash(impl_->dir).sha256;
  return impl_->hash;
}

std::shared_ptr<const EncodedImage> GroundedModel::encode(const RgbImage& image, const std::atomic<bool>* cancel) const try {
  return encode_batch({image}, cancel).front();
} catch (const c10::Error& e) {
  impl_->torch_error("encoding an image", e);
}

std::vector<std::shared_ptr<const EncodedImage>> GroundedModel::encode_batch(const std::vector<RgbImage>& images,
                                                                             const std::atomic<bool>* cancel) const try {
  impl_->use_cpu_threads();
  std::vector<std::shared_ptr<const EncodedImage>> out;
  if (images.empty()) return out;
  c10::InferenceMode guard;
  // Groups of images whose tiles fill about one encoder batch, so that cancellation is noticed
  // between groups and the pixel tensors of a long series are not all held at once.
  const int budget = std::max(impl_->vision->max_batch_tiles(), 1);
  size_t begin = 0;
  while (begin < images.size()) {
    if (is_cancelled(cancel)) throw InferenceError("image encoding cancelled");
    std::vector<RgbImage> group;
    int tiles = 0;
    for (size_t i = begin; i < images.size(); ++i) {
      check_image_within_limit(images[i], impl_->tiling.max_pixels, "image " + std::to_string(i + 1) + " of " +
                                                                        std::to_string(images.size()));
      const int t = choose_grid(images[i].width, images[i].height, impl_->tiling).tiles();
      const int n = t + ((impl_->tiling.use_thumbnail && t > 1) ? 1 : 0);
      if (!group.empty() && tiles + n > budget) break;
      group.push_back(images[i]);
      tiles += n;
    }
    const InternVlInput input = preprocess_internvl(group, impl_->tiling);
    const torch::Tensor tokens = impl_->vision->encode(input.pixel_values);
    int64_t at = 0;
    for (size_t i = 0; i < group.size(); ++i) {
      const int64_t n = input.tiles_per_image[i];
      out.push_back(impl_->make_encoded(group[i], tokens.narrow(0, at, n).clone()));
      at += n;
    }
    begin += group.size();
  }
  return out;
} catch (const c10::Error& e) {
  impl_->torch_error("encoding images", e);
}

void GroundedModel::encode_grounding(const std::vector<std::shared_ptr<const EncodedImage>>& images,
                                     const std::atomic<bool>* cancel) const try {
  impl_->use_cpu_threads();
  c10::InferenceMode guard;
  std::vector<const EncodedImage*> todo;
  for (const auto& im : images) {
    if (!im) throw InferenceError("encode_grounding: null image");
    impl_->check_owner(*im);
    std::lock_guard<std::mutex> lock(im->state().mutex);
    if (!im->state().has_features() &&
        std::find(todo.begin(), todo.end(), im.get()) == todo.end())
      todo.push_back(im.get());
  }
  // A few images per SAM2 pass: at 1024 px one image needs about 0.6 GB of activations.
  constexpr size_t kBatch = 4;
  const int side = impl_->sam_encoder->image_size();
  for (size_t begin = 0; begin < todo.size(); begin += kBatch) {
    const size_t end = std::min(todo.size(), begin + kBatch);
    std::vector<torch::Tensor> pixels;
    for (size_t i = begin; i < end; ++i) {
      std::lock_guard<std::mutex> lock(todo[i]->state().mutex);
      pixels.push_back(sam2_pixel_values(todo[i]->state().image, side, impl_->tiling.max_pixels));
    }
    const Sam2ImageFeatures f = impl_->sam_encoder->encode(torch::stack(pixels), cancel);
    for (size_t i = begin; i < end; ++i) {
      auto& s = todo[i]->state();
      std::lock_guard<std::mutex> lock(s.mutex);
      const auto one = f.select(static_cast<int64_t>(i - begin));
      s.features = {one.image_embedding.clone(), one.high_res_s0.clone(), one.high_res_s1.clone()};
      s.image = RgbImage();  // the pixels are no longer needed
    }
  }
} catch (const c10::Error& e) {
  impl_->torch_error("encoding images for SAM2", e);
}

GroundedAnswer GroundedModel::Impl::finish(const GenerationResult& r, const EncodedImage& image,
                                           const std::string& question, const AnswerOptions& options) const {
  GroundedAnswer a;
  a.ids = r.ids;
  a.text = r.prediction();
  a.stop_reason = stop_reason_name(r.stop_reason);
  a.parsed = parse_answer(a.text, question);
  if (r.stop_reason == StopReason::kCancelled || r.seg_hidden_states.size(0) == 0) return a;

  const EncodedImage::State& s = image.state();
  Sam2ImageFeatures features;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    features = s.features;
  }
  const torch::Tensor language = (*seg_head)(r.seg_hidden_states);
  const Sam2DecoderOutput out = sam_decoder->decode(features, language);
  const torch::Tensor logits = sam_decoder->upsample(out.best_low_res, s.height, s.width).to(torch::kCPU);
  const torch::Tensor prob = torch::sigmoid(logits).contiguous();
  const torch::Tensor mask = (prob > 0.5).to(torch::kUInt8).contiguous();
  const torch::Tensor iou = out.best_iou.to(torch::kCPU, torch::kFloat32);
  const torch::Tensor obj = out.object_score_logits.to(torch::kCPU, torch::kFloat32);
  const size_t pixels = static_cast<size_t>(s.width) * static_cast<size_t>(s.height);
  for (int64_t k = 0; k < logits.size(0); ++k) {
    GroundedSegment g;
    g.seg_index = static_cast<int>(k);
    for (const auto& f : a.parsed.findings)
      if (f.seg_index == k) g.phrase = f.phrase;
    g.width = s.width;
    g.height = s.height;
    const uint8_t* m = mask[k].data_ptr<uint8_t>();
    g.mask.assign(m, m + pixels);
    if (options.probability_maps) {
      const float* p = prob[k].data_ptr<float>();
      g.probability.assign(p, p + pixels);
    }
    g.iou = iou[k].item<float>();
    g.object_score = obj[k][0].item<float>();
    a.segments.push_back(std::move(g));
  }
  return a;
}

GroundedAnswer GroundedModel::answer(const EncodedImage& image, const std::string& question,
                                     const AnswerOptions& options) const try {
  // A non-owning shared_ptr, so that the batched path serves the single one.
  std::shared_ptr<const EncodedImage> ref(&image, [](const EncodedImage*) {});
  AnswerOptions one = options;
  one.batch_size = 1;
  return answer_batch(std::vector<std::shared_ptr<const EncodedImage>>{ref}, question, one).front();
} catch (const c10::Error& e) {
  impl_->torch_error("answering", e);
}

GroundedAnswer GroundedModel::answer(const RgbImage& image, const std::string& question,
                                     const AnswerOptions& options) const try {
  const auto encoded = encode(image, options.cancel);
  return answer(*encoded, question, options);
} catch (const c10::Error& e) {
  impl_->torch_error("answering", e);
}

std::vector<GroundedAnswer> GroundedModel::answer_batch(const std::vector<RgbImage>& images,
                                                        const std::string& question,
                                                        const AnswerOptions& options) const try {
  std::vector<GroundedAnswer> out;
  const size_t step = static_cast<size_t>(std::max(options.batch_size, 1));
  // Encoded a batch at a time, so that a long series does not hold every image's tokens.
  for (size_t begin = 0; begin < images.size(); begin += step) {
    std::vector<RgbImage> part(images.begin() + static_cast<long>(begin),
                               images.begin() + static_cast<long>(std::min(images.size(), begin + step)));
    auto encoded = encode_batch(part, options.cancel);
    auto answers = answer_batch(encoded, question, options);
    for (auto& a : answers) out.push_back(std::move(a));
  }
  return out;
} catch (const c10::Error& e) {
  impl_->torch_error("answering", e);
}

std::vector<GroundedAnswer> GroundedModel::answer_batch(const std::vector<std::shared_ptr<const EncodedImage>>& images,
                                                        const std::string& question,
                                                        const AnswerOptions& options) const try {
  impl_->use_cpu_threads();
  c10::InferenceMode guard;
  for (const auto& im : images) {
    if (!im) throw InferenceError("answer_batch: null image");
    impl_->check_owner(*im);
  }
  std::vector<GroundedAnswer> answers(images.size());
  // Same tile count -> same prompt length -> one batched generation.
  std::map<int, std::vector<size_t>> by_tiles;
  for (size_t i = 0; i < images.size(); ++i) by_tiles[images[i]->tiles()].push_back(i);
  const size_t step = static_cast<size_t>(std::max(options.batch_size, 1));
  for (const auto& [tiles, members] : by_tiles) {
    const std::vector<int64_t> ids = impl_->prompt_ids(question, tiles);
    const torch::Tensor text_embeds =
        impl_->llm->embed(torch::tensor(ids, torch::TensorOptions().dtype(torch::kLong)).view({1, -1})).squeeze(0);
    for (size_t begin = 0; begin < members.size(); begin += step) {
      const size_t end = std::min(members.size(), begin + step);
      std::vector<torch::Tensor> embeds;
      for (size_t j = begin; j < end; ++j) {
        embeds.push_back(splice_image_embeddings(text_embeds, ids, impl_->image_context_id,
                                                 images[members[j]]->state().image_tokens)
                             .unsqueeze(0));
      }
      const GenerationOptions g = impl_->generation_options(options.max_new_tokens, options.cancel, ids.size());
      const auto results = generate_greedy(*impl_->llm, *impl_->tokenizer, torch::cat(embeds, 0), g);
      // SAM2 features for the images whose answers have a [SEG], computed together.
      std::vector<std::shared_ptr<const EncodedImage>> need;
      for (size_t j = begin; j < end; ++j)
        if (results[j - begin].seg_hidden_states.size(0) > 0 && results[j - begin].stop_reason != StopReason::kCancelled)
          need.push_back(images[members[j]]);
      bool cancelled = false;
      try {
        if (!need.empty()) encode_grounding(need, options.cancel);
      } catch (const InferenceError&) {
        if (!is_cancelled(options.cancel)) throw;
        cancelled = true;
      }
      for (size_t j = begin; j < end; ++j) {
        GenerationResult r = results[j - begin];
        if (cancelled) r.stop_reason = StopReason::kCancelled;
        answers[members[j]] = impl_->finish(r, *images[members[j]], question, options);
      }
    }
  }
  return answers;
} catch (const c10::Error& e) {
  impl_->torch_error("answering", e);
}

}  // namespace unibiomed::inference
