// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/qwen2.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "inference/checkpoint_layout.h"
#include "inference/cpu_matvec.h"
#include "inference/error.h"

namespace unibiomed::inference {

namespace {

// Few rows (decoding) stream the weights once for all rows (cpu_matvec.h) instead of a GEMM.
constexpr int64_t kMaxRowsForMatrixVector = kMatvecMaxRows;
// Queries per attention block: the scores of one block ((queries x group) x keys) stay in cache.
constexpr int64_t kAttentionBlock = 128;

// x [rows, in] -> [rows, out] = x W^T + b.
torch::Tensor dense(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {}) {
  if (matvec_rows_applies(x, w)) return matvec_rows(x, w, b);
  if (!x.is_cpu() || x.size(0) > kMaxRowsForMatrixVector) return torch::linear(x, w, b);
  // Other dtypes on the CPU: one matrix-vector product per row, still cheaper than GEMM packing.
  torch::Tensor out = torch::empty({x.size(0), w.size(0)}, x.options());
  for (int64_t r = 0; r < x.size(0); ++r) {
    torch::Tensor row = out[r];
    if (b.defined())
      torch::addmv_out(row, b, w, x[r]);
    else
      torch::mv_out(row, w, x[r]);
  }
  return out;
}

}  // namespace

KvCache::KvCache(const LlmConfig& config, int64_t batch, int64_t capacity, const torch::TensorOptions& options)
    : batch_(batch), capacity_(capacity) {
  if (batch <= 0 || capacity <= 0)
    throw InferenceError("KV cache: batch " + std::to_string(batch) + " and capacity " + std::to_string(capacity) +
                         " must be positive");
  const std::vector<int64_t> shape = {batch, config.num_key_value_heads, capacity, config.head_dim()};
  for (int i = 0; i < config.num_hidden_layers; ++i) {
    keys_.push_back(torch::empty(shape, options));
    values_.push_back(torch::empty(shape, options));
  }
}

void KvCache::keep_rows(const std::vector<int64_t>& rows) {
  for (int64_t r : rows)
    if (r < 0 || r >= batch_)
      throw InferenceError("KV cache: row " + std::to_string(r) + " outside the batch of " + std::to_string(batch_));
  if (rows.empty()) throw InferenceError("KV cache: cannot keep no sequences");
  torch::NoGradGuard no_grad;
  const torch::Tensor index = torch::tensor(rows, torch::TensorOptions().dtype(torch::kLong)).to(keys_[0].device());
  for (auto* tensors : {&keys_, &values_})
    for (auto& t : *tensors) t = t.index_select(0, index);
  batch_ = static_cast<int64_t>(rows.size());
}

Qwen2Model::Qwen2Model(Weights& weights, const LlmConfig& config) : config_(config) {
  const LlmConfig& c = config_;
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.num_hidden_layers <= 0 ||
      c.intermediate_size <= 0 || c.vocab_size <= 0 || c.max_position_embeddings <= 0 ||
      c.hidden_size % c.num_attention_heads != 0 || c.num_attention_heads % c.num_key_value_heads != 0 ||
      c.head_dim() % 2 != 0)
    throw InferenceError("llm_config: hidden_size " + std::to_string(c.hidden_size) + ", " +
                         std::to_string(c.num_attention_heads) + " attention heads, " +
                         std::to_string(c.num_key_value_heads) + " key/value heads, " +
                         std::to_string(c.num_hidden_layers) + " layers: heads must divide the hidden size, key/value "
                         "heads the heads, and the head size must be even");
  if (c.hidden_act != "silu") throw InferenceError("llm_config: hidden_act \"" + c.hidden_act + "\" is not silu");
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  head_dim_ = c.head_dim();
  kv_dim_ = head_dim_ * c.num_key_value_heads;

  const auto m = layout::language_model();
  const auto f = torch::TensorOptions().dtype(weights.options().dtype).device(weights.options().device);
  embed_tokens_ = weights.get(m.embed_tokens_weight, {V, H});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const auto n = layout::language_layer(i);
    Layer l;
    l.input_norm = weights.get(n.input_layernorm_weight, {H});
    l.post_attention_norm = weights.get(n.post_attention_layernorm_weight, {H});
    // q, k, v (and gate, up) are read straight into one stacked matrix: one product instead of
    // three, and no second copy of the weights while loading.
    l.qkv_weight = torch::empty({H + 2 * kv_dim_, H}, f);
    weights.get_into(n.q_proj.weight, l.qkv_weight.narrow(0, 0, H));
    weights.get_into(n.k_proj.weight, l.qkv_weight.narrow(0, H, kv_dim_));
    weights.get_into(n.v_proj.weight, l.qkv_weight.narrow(0, H + kv_dim_, kv_dim_));
    l.qkv_bias = torch::empty({H + 2 * kv_dim_}, f);
    weights.get_into(n.q_proj.bias, l.qkv_bias.narrow(0, 0, H));
    weights.get_into(n.k_proj.bias, l.qkv_bias.narrow(0, H, kv_dim_));
    weights.get_into(n.v_proj.bias, l.qkv_bias.narrow(0, H + kv_dim_, kv_dim_));
    l.o_weight = weights.get(n.o_proj_weight, {H, H});
    l.gate_up_weight = torch::empty({2 * I, H}, f);
    weights.get_into(n.gate_proj_weight, l.gate_up_weight.narrow(0, 0, I));
    weights.get_into(n.up_proj_weight, l.gate_up_weight.narrow(0, I, I));
    l.down_weight = weights.get(n.down_proj_weight, {H, I});
    layers_.push_back(std::move(l));
  }
  final_norm_ = weights.get(m.norm_weight, {H});
  lm_head_ = c.tie_word_embeddings ? embed_tokens_ : weights.get(m.lm_head_weight, {V, H});

  // RoPE, as Qwen2RotaryEmbedding: inv_freq = 1 / theta^(2i/d) and cos/sin of position x
  // inv_freq, repeated for both halves (rotate_half convention), all in float32.
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  inv_freq_ = 1.0 / torch::pow(c.rope_theta, torch::arange(0, head_dim_, 2, torch::kLong).to(torch::kFloat32) /
                                                static_cast<double>(head_dim_));
  const torch::Tensor freqs = torch::outer(torch::arange(c.max_position_embeddings, f32), inv_freq_);
  const torch::Tensor angles = torch::cat({freqs, freqs}, -1);
  cos_ = angles.cos().to(options());
  sin_ = angles.sin().to(options());
}

void Qwen2Model::set_prefill_chunk(int64_t tokens) {
  if (tokens <= 0) throw InferenceError("prefill chunk must be positive, got " + std::to_string(tokens));
  prefill_chunk_ = tokens;
}

KvCache Qwen2Model::make_cache(int64_t batch, int64_t capacity) const {
  if (capacity > config_.max_position_embeddings)
    throw InferenceError("a sequence of " + std::to_string(capacity) + " positions exceeds max_position_embeddings " +
                         std::to_string(config_.max_position_embeddings));
  return KvCache(config_, batch, capacity, options());
}

torch::Tensor Qwen2Model::embed(const torch::Tensor& ids) const {
  if (ids.dim() != 2 || ids.scalar_type() != torch::kLong)
    throw InferenceError("embed: token ids must be an int64 tensor [batch, length]");
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw InferenceError("embed: token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary of " +
                           std::to_string(config_.vocab_size));
  }
  return embed_tokens_.index_select(0, ids.reshape({-1}).to(embed_tokens_.device()))
      .view({ids.size(0), ids.size(1), config_.hidden_size});
}

torch::Tensor Qwen2Model::rms_norm(const torch::Tensor& x, const torch::Tensor& weight) const {
  // Qwen2RMSNorm: in float32, then back to the compute dtype before the weight.
  const torch::Tensor xf = x.to(torch::kFloat32);
  const torch::Tensor scale = torch::rsqrt(xf.pow(2).mean(-1, true) + config_.rms_norm_eps);
  return weight * (xf * scale).to(x.scalar_type());
}

torch::Tensor Qwen2Model::rotate(const torch::Tensor& x, int64_t first_position) const {
  // x [B,T,heads,d]: x*cos + rotate_half(x)*sin with rotate_half(x) = [-x2, x1].
  const int64_t T = x.size(1), half = head_dim_ / 2;
  const torch::Tensor cos = cos_.narrow(0, first_position, T).view({1, T, 1, head_dim_});
  const torch::Tensor sin = sin_.narrow(0, first_position, T).view({1, T, 1, head_dim_});
  const torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

torch::Tensor Qwen2Model::attention(const torch::Tensor& q, const KvCache& cache, size_t layer,
                                    int64_t first_position) const {
  // q [B,C,heads,d] for positions first_position...; keys/values 0..first_position+C-1 are in the
  // cache. Grouped-query attention: kv head h serves query heads h*g ... h*g+g-1, so the queries
  // of one kv head are laid out as rows (position, head in group) and multiplied by its keys in
  // one product. q is pre-scaled by 1/sqrt(d) (exact for d = 64; the reference divides the scores).
  const int64_t B = q.size(0), C = q.size(1), kv_heads = config_.num_key_value_heads;
  const int64_t g = config_.num_attention_heads / kv_heads;
  torch::Tensor qh = torch::empty({B, kv_heads, C, g, head_dim_}, q.options());
  qh.copy_(q.view({B, C, kv_heads, g, head_dim_}).permute({0, 2, 1, 3, 4}));
  qh.mul_(1.0 / std::sqrt(static_cast<double>(head_dim_)));
  qh = qh.view({B, kv_heads, C * g, head_dim_});
  const auto minus_inf = -std::numeric_limits<double>::infinity();
  if (!q.is_cpu()) {
    // On a GPU every sequence and kv head at once (the blocks below keep a CPU's scores in its
    // caches; on a GPU they would only multiply the kernel launches). Same arithmetic: scores
    // over the keys seen so far, the causal mask among the chunk's own positions, softmax in
    // float32.
    const int64_t seen = first_position + C;
    const torch::Tensor keys = cache.keys_[layer].narrow(2, 0, seen);
    const torch::Tensor values = cache.values_[layer].narrow(2, 0, seen);
    torch::Tensor scores = torch::matmul(qh, keys.transpose(-2, -1));  // [B, kv, C*g, seen]
    if (C > 1) {
      const auto on = torch::TensorOptions().dtype(torch::kLong).device(q.device());
      // Query t (position first_position + t) sees keys 0 .. first_position + t.
      const torch::Tensor future =
          torch::arange(seen, on).view({1, 1, seen}) > (torch::arange(C, on) + first_position).view({C, 1, 1});
      scores.view({B, kv_heads, C, g, seen}).masked_fill_(future.view({1, 1, C, 1, seen}), minus_inf);
    }
    const torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
    return torch::matmul(probs, values)
        .view({B, kv_heads, C, g, head_dim_})
        .permute({0, 2, 1, 3, 4})
        .reshape({B, C, config_.hidden_size});
  }
  torch::Tensor out = torch::empty_like(qh);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < kv_heads; ++h) {
      const torch::Tensor keys = cache.keys_[layer][b][h], values = cache.values_[layer][b][h];
      for (int64_t t0 = 0; t0 < C; t0 += kAttentionBlock) {
        const int64_t tb = std::min(kAttentionBlock, C - t0), rows = tb * g;
        const int64_t seen = first_position + t0 + tb;  // keys visible to the block's last query
        torch::Tensor scores = torch::mm(qh[b][h].narrow(0, t0 * g, rows), keys.narrow(0, 0, seen).t());
        if (tb > 1) {  // causal mask inside the block's own positions
          const torch::Tensor future = torch::ones({tb, tb}, torch::TensorOptions().dtype(torch::kBool)).triu(1).view({tb, 1, tb});
          scores.narrow(1, first_position + t0, tb).view({tb, g, tb}).masked_fill_(future.to(scores.device()), minus_inf);
        }
        if (scores.scalar_type() == torch::kFloat32) {  // softmax in place
          scores.sub_(std::get<0>(scores.max(-1, true))).exp_();
          scores.div_(scores.sum(-1, true));
        } else {  // softmax in float32, as the reference (dtype=torch.float32)
          scores.copy_(torch::softmax(scores, -1, torch::kFloat32));
        }
        torch::Tensor target = out[b][h].narrow(0, t0 * g, rows);
        torch::mm_out(target, scores, values.narrow(0, 0, seen));
      }
    }
  }
  return out.view({B, kv_heads, C, g, head_dim_}).permute({0, 2, 1, 3, 4}).reshape({B, C, config_.hidden_size});
}

torch::Tensor Qwen2Model::run_chunk(torch::Tensor x, KvCache& cache, std::vector<torch::Tensor>* layer_outputs) const {
  const int64_t B = x.size(0), C = x.size(1), H = config_.hidden_size, I = config_.intermediate_size;
  const int64_t p0 = cache.length_, q_heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  x = x.reshape({B * C, H}).clone();  // the residual stream, updated in place
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    const torch::Tensor qkv = dense(rms_norm(x, l.input_norm), l.qkv_weight, l.qkv_bias);
    const torch::Tensor q = rotate(qkv.narrow(1, 0, H).view({B, C, q_heads, head_dim_}), p0);
    const torch::Tensor k = rotate(qkv.narrow(1, H, kv_dim_).view({B, C, kv_heads, head_dim_}), p0);
    const torch::Tensor v = qkv.narrow(1, H + kv_dim_, kv_dim_).view({B, C, kv_heads, head_dim_});
    cache.keys_[i].narrow(2, p0, C).copy_(k.permute({0, 2, 1, 3}));
    cache.values_[i].narrow(2, p0, C).copy_(v.permute({0, 2, 1, 3}));
    x.add_(dense(attention(q, cache, i, p0).view({B * C, H}), l.o_weight));

    torch::Tensor gate_up = dense(rms_norm(x, l.post_attention_norm), l.gate_up_weight);
    torch::Tensor gate = gate_up.narrow(1, 0, I);
    torch::silu_(gate);
    gate.mul_(gate_up.narrow(1, I, I));
    x.add_(dense(gate, l.down_weight));
    if (layer_outputs) layer_outputs->push_back(x.view({B, C, H}).clone());
  }
  cache.length_ += C;
  return rms_norm(x, final_norm_).view({B, C, H});
}

torch::Tensor Qwen2Model::forward(const torch::Tensor& embeds, KvCache& cache,
                                  std::vector<torch::Tensor>* layer_outputs) const {
  if (embeds.dim() != 3 || embeds.size(2) != config_.hidden_size)
    throw InferenceError("forward: embeddings must be [batch, length, " + std::to_string(config_.hidden_size) + "]");
  const int64_t B = embeds.size(0), T = embeds.size(1);
  if (B != cache.batch())
    throw InferenceError("forward: " + std::to_string(B) + " sequences but the KV cache holds " +
                         std::to_string(cache.batch()));
  if (cache.length() + T > cache.capacity())
    throw InferenceError("forward: " + std::to_string(cache.length()) + " cached + " + std::to_string(T) +
                         " new positions exceed the KV cache capacity of " + std::to_string(cache.capacity()));
  if (cache.keys_.size() != layers_.size())
    throw InferenceError("forward: the KV cache was made for another model");
  c10::InferenceMode inference;
  const torch::Tensor x = embeds.to(options());
  std::vector<torch::Tensor> outputs, chunk_layers;
  std::vector<std::vector<torch::Tensor>> per_layer(layers_.size());
  for (int64_t t0 = 0; t0 < T; t0 += prefill_chunk_) {
    const int64_t n = std::min(prefill_chunk_, T - t0);
    chunk_layers.clear();
    outputs.push_back(run_chunk(x.narrow(1, t0, n), cache, layer_outputs ? &chunk_layers : nullptr));
    for (size_t i = 0; i < chunk_layers.size(); ++i) per_layer[i].push_back(chunk_layers[i]);
  }
  if (layer_outputs)
    for (auto& parts : per_layer) layer_outputs->push_back(torch::cat(parts, 1));
  return outputs.size() == 1 ? outputs[0] : torch::cat(outputs, 1);
}

torch::Tensor Qwen2Model::logits(const torch::Tensor& hidden) const {
  c10::InferenceMode inference;
  std::vector<int64_t> shape = hidden.sizes().vec();
  shape.back() = config_.vocab_size;
  return dense(hidden.reshape({-1, config_.hidden_size}).to(options()), lm_head_).to(torch::kFloat32).view(shape);
}

}  // namespace unibiomed::inference
