// The Qwen2 decoder of UniBiomed (Qwen2.5-0.5B-Instruct with LoRA merged), as transformers'
// modeling_qwen2.py (4.44) computes it: token embeddings; per layer x += o(attn(rms(x))) with
// q/k/v biases, RoPE (rotate_half, theta from config) and grouped-query attention, then
// x += down(silu(gate(rms(x))) * up(rms(x))); final RMSNorm; untied lm_head.
//
// The model reads embeddings, not ids, so that image tokens can be spliced in at <IMG_CONTEXT>
// positions (Sa2VAChatModel.generate; inference/splice.h). forward() runs any number of new positions against a
// static, preallocated KV cache (gpt-fast style): a whole prompt (prefill, processed in chunks
// of prefill_chunk() tokens so that temporaries stay small) or one token per sequence (decode).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "inference/model_config.h"
#include "inference/weights.h"

namespace unibiomed::inference {

// Keys and values of every layer for a batch of sequences that all have the same length.
class KvCache {
 public:
  KvCache(const LlmConfig& config, int64_t batch, int64_t capacity, const torch::TensorOptions& options);

  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // positions filled so far (the next position id)
  // Keeps only the sequences `rows` (indices into the current batch, in the new order), so that
  // finished sequences stop costing time.
  void keep_rows(const std::vector<int64_t>& rows);

 private:
  friend class Qwen2Model;
  std::vector<torch::Tensor> keys_, values_;  // per layer [batch, kv_heads, capacity, head_dim]
  int64_t batch_ = 0, capacity_ = 0, length_ = 0;
};

class Qwen2Model {
 public:
  // Reads the language model's tensors (checkpoint_layout.h: layout::language_model() and
  // language_layer(i)). Throws InferenceError naming the tensor when one is missing or its shape
  // disagrees with `config`, or when `config` itself is inconsistent (heads not dividing the
  // hidden size...).
  Qwen2Model(Weights& weights, const LlmConfig& config);

  const LlmConfig& config() const { return config_; }
  torch::TensorOptions options() const { return embed_tokens_.options(); }
  KvCache make_cache(int64_t batch, int64_t capacity) const;

  // ids [B,T] (int64) -> embeddings [B,T,H]. Throws InferenceError for ids outside the vocabulary.
  torch::Tensor embed(const torch::Tensor& ids) const;
  // embeds [B,T,H] at positions cache.length() ... +T-1 -> final post-norm hidden states [B,T,H];
  // the cache grows by T. With `layer_outputs`, also each decoder layer's output (before the final
  // norm; transformers' hidden_states[1..L-1]), for tests.
  torch::Tensor forward(const torch::Tensor& embeds, KvCache& cache,
                        std::vector<torch::Tensor>* layer_outputs = nullptr) const;
  // hidden [...,H] -> logits [...,V] in float32.
  torch::Tensor logits(const torch::Tensor& hidden) const;

  int64_t prefill_chunk() const { return prefill_chunk_; }
  void set_prefill_chunk(int64_t tokens);
  // RoPE tables (float32, positions 0..max_position_embeddings-1), for tests.
  const torch::Tensor& rope_inv_freq() const { return inv_freq_; }
  const torch::Tensor& rope_cos() const { return cos_; }
  const torch::Tensor& rope_sin() const { return sin_; }

 private:
  struct Layer {
    torch::Tensor input_norm, post_attention_norm;
    torch::Tensor qkv_weight, qkv_bias;  // q, k, v projections stacked: [H + 2*kv_dim, H]
    torch::Tensor o_weight;
    torch::Tensor gate_up_weight;  // gate and up projections stacked: [2*I, H]
    torch::Tensor down_weight;
  };
  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight) const;
  torch::Tensor rotate(const torch::Tensor& x, int64_t first_position) const;
  torch::Tensor attention(const torch::Tensor& q, const KvCache& cache, size_t layer, int64_t first_position) const;
  torch::Tensor run_chunk(torch::Tensor x, KvCache& cache, std::vector<torch::Tensor>* layer_outputs) const;

  LlmConfig config_;
  int64_t head_dim_ = 0, kv_dim_ = 0, prefill_chunk_ = 512;
  torch::Tensor embed_tokens_, final_norm_, lm_head_;
  std::vector<Layer> layers_;
  torch::Tensor inv_freq_, cos_, sin_;
};

}  // namespace unibiomed::inference
